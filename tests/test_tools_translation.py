"""Pure translation of tools, tool calls and the rarer knobs to and from each vendor wire, and model-name
resolution for the compat fronts — no network."""

from __future__ import annotations

import pytest

from rhetor.errors import ConfigError, InvalidRequestError, ModelNotFoundError
from rhetor.providers import anthropic as anth
from rhetor.providers import anthropic_reply, ollama, openai, openai_reply
from rhetor.providers.simulated_tools import arguments_for
from rhetor.routing.models import ModelRoute, resolve_model_name, validate_aliases
from rhetor.settings import Settings
from rhetor.types import ChatRequest, Message, ToolCall, ToolCallDelta, ToolChoice, ToolSpec

SPEC = ToolSpec("get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}},
                                           "required": ["city"]})
CALL = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
CONVO = [Message("user", "weather?"), Message("assistant", "Checking.", tool_calls=[CALL]),
         Message("tool", "18C", tool_call_id="call_1", name="get_weather"), Message("user", "thanks")]


def _req(**kw: object) -> ChatRequest:
    return ChatRequest(model="m", messages=list(CONVO), tools=[SPEC], **kw)  # type: ignore[arg-type]


def test_openai_payload_and_parsing() -> None:
    p = openai.build_payload(_req(tool_choice=ToolChoice("tool", "get_weather", False), seed=3, user="u",
                                  response_format={"type": "json_object"}))
    assert p["messages"][1] == {"role": "assistant", "content": "Checking.", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}
    assert p["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": "18C"}
    assert p["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert p["parallel_tool_calls"] is False and p["seed"] == 3 and p["user"] == "u"
    calls = [{"id": "c9", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    r = openai_reply.parse_response({"choices": [{"message": {"content": None, "tool_calls": calls},
                                            "finish_reason": "tool_calls"}]})
    assert r.tool_calls == [ToolCall("c9", "f", "{}")] and r.finish_reason == "tool_calls" and r.content == ""
    state = openai_reply.StreamState("m")
    state.feed('data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","type":"function",'
               '"function":{"name":"f","arguments":""}}]}}]}')
    state.feed('data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}')
    assert state.pending == [ToolCallDelta(0, "c1", "f", ""), ToolCallDelta(0, None, None, "{}")]


def test_anthropic_turns_blocks_and_stream() -> None:
    p = anth.build_payload(_req(tool_choice=ToolChoice("required", parallel=False)))
    assert p["messages"][1] == {"role": "assistant", "content": [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}]}
    assert p["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"}, {"type": "text", "text": "thanks"}]}
    assert p["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert p["tools"] == [{"name": "get_weather", "description": "Weather", "input_schema": SPEC.parameters}]
    plain = anth.build_payload(ChatRequest(model="m", messages=[Message("user", "a"), Message("user", "b")]))
    assert plain["messages"] == [{"role": "user", "content": "a\n\nb"}]  # plain text stays a string
    with pytest.raises(InvalidRequestError):
        anth.build_payload(ChatRequest(model="m", messages=[Message("assistant", "", tool_calls=[
            ToolCall("x", "f", "not json")])]))
    s = anthropic_reply.StreamState("m")
    start = s.handle("content_block_start", '{"type":"content_block_start","index":1,'
                     '"content_block":{"type":"tool_use","id":"toolu_1","name":"f","input":{}}}')
    part = s.handle("content_block_delta", '{"type":"content_block_delta","index":1,'
                    '"delta":{"type":"input_json_delta","partial_json":"{\\"a\\":"}}')
    assert start == ToolCallDelta(0, "toolu_1", "f") and part == ToolCallDelta(0, arguments='{"a":')


def test_ollama_payload_and_parsing() -> None:
    p = ollama.build_payload(_req(seed=5, response_format={"type": "json_object"}))
    assert p["messages"][1]["tool_calls"] == [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
    assert p["messages"][2] == {"role": "tool", "content": "18C", "tool_name": "get_weather"}
    assert p["format"] == "json" and p["options"]["seed"] == 5 and p["tools"][0]["function"]["name"] == "get_weather"
    assert "tools" not in ollama.build_payload(_req(tool_choice=ToolChoice("none")))
    r = ollama.parse_response({"message": {"content": "", "tool_calls": [
        {"function": {"name": "f", "arguments": {"x": 1}}}]}, "done_reason": "stop"})
    assert r.finish_reason == "tool_calls" and r.tool_calls[0].name == "f" and r.tool_calls[0].arguments == '{"x":1}'


def test_simulated_arguments_follow_the_schema() -> None:
    schema = {"type": "object", "required": ["a", "b", "c", "d"], "properties": {
        "a": {"type": "string"}, "b": {"type": "integer"}, "c": {"enum": ["x", "y"]},
        "d": {"type": "object", "properties": {"e": {"type": "boolean"}}, "required": ["e"]}}}
    assert arguments_for(schema) == {"a": "simulated", "b": 0, "c": "x", "d": {"e": False}}


def test_model_names_resolve() -> None:
    assert resolve_model_name("anthropic/claude-x") == ModelRoute("anthropic", "claude-x", None, pinned=True)
    assert resolve_model_name("claude/claude-x").provider_id == "anthropic"
    assert resolve_model_name("ollama/library/llama3:8b") == ModelRoute("ollama", "library/llama3:8b", None, True)
    assert resolve_model_name("gpt-4o").provider_id == "openai"
    assert resolve_model_name("claude-sonnet-4-5").provider_id == "anthropic"
    assert resolve_model_name("rhetor/Code") == ModelRoute(task_type="code")
    assert resolve_model_name("rhetor") == ModelRoute(task_type="default")
    assert resolve_model_name("gpt-4o", task_header="code") == ModelRoute("openai", "gpt-4o", "code", pinned=False)
    assert resolve_model_name("fast", aliases={"fast": "rhetor/chat"}) == ModelRoute(task_type="chat")
    for bad in ("llama3", "nope/x", "anthropic/"):
        with pytest.raises(ModelNotFoundError):
            resolve_model_name(bad)


def test_aliases_are_validated_at_start() -> None:
    s = Settings.from_env({"RHETOR_MODEL_ALIASES": '{"fast": "openai/gpt-4o-mini"}'})
    assert s.model_aliases == {"fast": "openai/gpt-4o-mini"}
    validate_aliases(s.model_aliases)
    with pytest.raises(ConfigError, match="'bad'"):
        validate_aliases({"bad": "unknown-model"})
    with pytest.raises(ConfigError, match="alias=provider/model"):
        Settings.from_env({"RHETOR_MODEL_ALIASES": "fast"})
