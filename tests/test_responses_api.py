"""The OpenAI Responses API (/v1/responses) through the official `openai` SDK against a real Rhetor whose
upstreams are the fakes: every provider, JSON and SSE (each event validated against the SDK's own types),
function tools and their outputs, previous_response_id backed by the context store (forks, restarts),
retrieve / delete / input_items, the usage ledger, and 400s naming what cannot be honoured."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from tests.fakes.stack import MATRIX, Stack, running_stack

TOOLS: list[Any] = [{"type": "function", "name": "get_weather", "description": "Weather for a city",
                     "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                    "required": ["city"]}}]
EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(Path(tmp_path_factory.mktemp("responses"))) as s:
        yield s


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=stack.url + "/v1", api_key="unused", max_retries=0) as c:
        yield c


def raw_events(stack: Stack, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The SSE events exactly as sent, each validated (strictly) against the SDK's event union."""
    events: list[dict[str, Any]] = []
    with httpx.stream("POST", stack.url + "/v1/responses", json={**body, "stream": True}, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                assert data["type"] == name
                EVENTS.validate_python(data)
                events.append(data)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def contexts_messages(stack: Stack, context_id: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{stack.url}/api/v1/contexts/{context_id}", timeout=10)
    assert r.status_code == 200, r.text
    messages: list[dict[str, Any]] = r.json()["messages"]
    return messages


@pytest.mark.parametrize("provider", list(MATRIX))
def test_create_every_provider(client: openai.OpenAI, stack: Stack, provider: str) -> None:
    model, text = MATRIX[provider]
    raw = client.responses.with_raw_response.create(model=model, input="hi", instructions="Be brief.",
                                                    max_output_tokens=200, metadata={"k": "v"})
    r = raw.parse()
    Response.model_validate(json.loads(raw.text))  # strict: every required field present and typed
    assert r.object == "response" and r.status == "completed" and r.id.startswith("resp_")
    assert r.output_text.startswith(text)
    assert r.model.startswith(provider + "/") and r.metadata == {"k": "v"} and r.instructions == "Be brief."
    assert r.usage is not None and r.usage.output_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert raw.headers["x-rhetor-provider"] == provider
    assert client.responses.retrieve(r.id).output_text == r.output_text


@pytest.mark.parametrize("provider", list(MATRIX))
def test_stream_event_sequence_every_provider(stack: Stack, provider: str) -> None:
    model, text = MATRIX[provider]
    events = raw_events(stack, {"model": model, "input": "hi", "max_output_tokens": 200})
    kinds = [e["type"] for e in events]
    deltas = kinds.count("response.output_text.delta")
    assert deltas >= 1
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", *["response.output_text.delta"] * deltas,
                     "response.output_text.done", "response.content_part.done", "response.output_item.done",
                     "response.completed"]
    text_out = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text_out.startswith(text)
    done = events[-1]["response"]
    assert done["status"] == "completed" and done["output"][0]["content"][0]["text"] == text_out
    assert done["usage"]["output_tokens"] > 0 and events[0]["response"]["id"] == done["id"]


@pytest.mark.parametrize("provider", list(MATRIX))
def test_sdk_stream_helper(client: openai.OpenAI, provider: str) -> None:
    model, text = MATRIX[provider]
    with client.responses.stream(model=model, input="hi", max_output_tokens=200) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text and final.output_text.startswith(text)
    assert client.responses.retrieve(final.id).output_text == final.output_text


@pytest.mark.parametrize("provider", list(MATRIX))
def test_previous_response_id_every_provider(client: openai.OpenAI, stack: Stack, provider: str) -> None:
    model, _ = MATRIX[provider]
    r1 = client.responses.create(model=model, input="My name is Ada.", instructions="Be brief.")
    r2 = client.responses.with_raw_response.create(model=model, input="What is my name?",
                                                   previous_response_id=r1.id)
    second = r2.parse()
    assert second.previous_response_id == r1.id and second.status == "completed"
    context_id = r2.headers["x-rhetor-context-id"]
    stored = contexts_messages(stack, context_id)
    assert [m["role"] for m in stored] == ["user", "assistant", "user", "assistant"]
    assert stored[0]["content"] == "My name is Ada." and stored[1]["content"] == r1.output_text
    assert stored[3]["content"] == second.output_text
    if provider == "openai":
        sent = stack.openai.requests[-1]["messages"]
        assert sent[0] == {"role": "user", "content": "My name is Ada."}  # instructions are not carried over
        assert sent[1]["role"] == "assistant" and sent[1]["content"] == r1.output_text
        assert sent[2] == {"role": "user", "content": "What is my name?"}
    if provider == "anthropic":
        sent = stack.anthropic.requests[-1]
        assert "system" not in sent and len(sent["messages"]) == 3


@pytest.mark.parametrize("provider", list(MATRIX))
def test_function_call_round_trip(client: openai.OpenAI, provider: str) -> None:
    model, _ = MATRIX[provider]
    r1 = client.responses.create(model=model, input="What is the weather in Paris? Use get_weather.", tools=TOOLS,
                                 max_output_tokens=100)
    calls = [o for o in r1.output if o.type == "function_call"]
    assert calls and calls[0].name == "get_weather" and "city" in json.loads(calls[0].arguments)
    r2 = client.responses.create(model=model, previous_response_id=r1.id, tools=TOOLS, max_output_tokens=100,
                                 input=[{"type": "function_call_output", "call_id": calls[0].call_id,
                                         "output": "18C and sunny"}])
    assert "18C and sunny" in r2.output_text


def test_function_call_items_reach_the_upstream_losslessly(client: openai.OpenAI, stack: Stack) -> None:
    r1 = client.responses.create(model=MATRIX["openai"][0], input="Use get_weather for Paris.", tools=TOOLS)
    call = next(o for o in r1.output if o.type == "function_call")
    client.responses.create(model=MATRIX["openai"][0], previous_response_id=r1.id, tools=TOOLS,
                            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18C"}])
    sent = stack.openai.requests[-1]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call.call_id
    assert sent[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": call.arguments}
    assert sent[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "18C"}
    assert stack.openai.requests[-1]["tools"][0]["function"]["name"] == "get_weather"


@pytest.mark.parametrize("provider", list(MATRIX))
def test_streamed_function_call_events(stack: Stack, provider: str) -> None:
    model, _ = MATRIX[provider]
    events = raw_events(stack, {"model": model, "input": "get_weather please", "tools": TOOLS,
                                "tool_choice": {"type": "function", "name": "get_weather"},
                                "max_output_tokens": 100})
    kinds = [e["type"] for e in events]
    assert "response.function_call_arguments.delta" in kinds
    added = next(e for e in events if e["type"] == "response.output_item.added"
                 and e["item"]["type"] == "function_call")
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    args = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    assert done["arguments"] == args and "city" in json.loads(args) and added["item"]["name"] == "get_weather"
    assert kinds.index("response.output_item.added") < kinds.index("response.function_call_arguments.delta")
    assert kinds[-3:] == ["response.function_call_arguments.done", "response.output_item.done",
                          "response.completed"]
    final = events[-1]["response"]["output"][-1]
    assert final["type"] == "function_call" and final["arguments"] == args and final["status"] == "completed"


def test_an_older_previous_response_forks(client: openai.OpenAI, stack: Stack) -> None:
    model = MATRIX["openai"][0]
    r1 = client.responses.create(model=model, input="first")
    r2 = client.responses.create(model=model, input="second", previous_response_id=r1.id)
    r3 = client.responses.with_raw_response.create(model=model, input="branch", previous_response_id=r1.id)
    sent = stack.openai.requests[-1]["messages"]
    assert [m["content"] for m in sent if m["role"] == "user"] == ["first", "branch"]
    fork = r3.headers["x-rhetor-context-id"]
    assert [m["content"] for m in contexts_messages(stack, fork) if m["role"] == "user"] == ["first", "branch"]
    r4 = client.responses.create(model=model, input="again", previous_response_id=r2.id)
    assert [m["content"] for m in stack.openai.requests[-1]["messages"] if m["role"] == "user"] == [
        "first", "second", "again"]
    assert r4.status == "completed"


def test_input_items_delete_and_store_false(client: openai.OpenAI) -> None:
    model = MATRIX["simulated"][0]
    r = client.responses.create(model=model, input=[
        {"role": "developer", "content": "Be terse."},
        {"role": "user", "content": [{"type": "input_text", "text": "hello"}]}])
    items = client.responses.input_items.list(r.id, order="asc")
    assert [(i.type, i.role) for i in items.data] == [("message", "developer"), ("message", "user")]
    assert items.data[1].content[0].text == "hello" and items.has_more is False
    assert [i.id for i in client.responses.input_items.list(r.id).data] == [i.id for i in reversed(items.data)]
    assert client.responses.input_items.list(r.id, limit=1).has_more is True
    client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    unstored = client.responses.create(model=model, input="hi", store=False)
    assert unstored.store is False
    with pytest.raises(openai.NotFoundError) as err:
        client.responses.create(model=model, input="more", previous_response_id=unstored.id)
    assert err.value.body["param"] == "previous_response_id"  # type: ignore[index]


def test_text_format_json_schema_reaches_the_upstream(client: openai.OpenAI, stack: Stack) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    r = client.responses.create(model=MATRIX["openai"][0], input="json please", temperature=0.2, top_p=0.5,
                                text={"format": {"type": "json_schema", "name": "thing", "schema": schema,
                                                 "strict": True}}, user="u-7", parallel_tool_calls=False)
    sent = stack.openai.requests[-1]
    assert sent["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "thing", "schema": schema, "strict": True}}
    assert sent["temperature"] == 0.2 and sent["top_p"] == 0.5 and sent["user"] == "u-7"
    assert r.text.format.type == "json_schema" and r.parallel_tool_calls is False


@pytest.mark.parametrize(("extra", "param"), [
    ({"background": True}, "background"),
    ({"reasoning": {"effort": "high"}}, "reasoning"),
    ({"include": ["message.output_text.logprobs"]}, "include"),
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_text", "text": "a"},
                                             {"type": "input_image", "image_url": "http://x/y.png"}]}]},
     "input[0].content[1].type"),
    ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
    ({"frequency_penalty": 1}, "frequency_penalty"),
])
def test_what_cannot_be_honoured_is_a_400_naming_it(client: openai.OpenAI, extra: dict[str, Any],
                                                     param: str) -> None:
    body = {"model": MATRIX["openai"][0], "input": "hi", **extra}
    with pytest.raises(openai.BadRequestError) as err:
        client.post("/responses", body=body, cast_to=Response)
    assert err.value.status_code == 400
    assert param in err.value.body["message"]  # type: ignore[index]
    assert err.value.body["param"] == param  # type: ignore[index]


def test_unknown_previous_response_is_a_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.responses.create(model=MATRIX["simulated"][0], input="x", previous_response_id="resp_nope")
    assert "resp_nope" in err.value.message


def test_usage_is_recorded_in_the_ledger(client: openai.OpenAI, stack: Stack) -> None:
    raw = client.responses.with_raw_response.create(model=MATRIX["anthropic"][0], input="meter me")
    r = raw.parse()
    got = httpx.get(f"{stack.url}/api/v1/usage/requests", params={"front": "openai-responses"}, timeout=10).json()
    records = got.get("requests", got.get("data", got.get("records")))
    assert records, got
    mine = [x for x in records if x.get("context_id") == raw.headers["x-rhetor-context-id"]]
    assert mine and mine[0]["provider"] == "anthropic" and mine[0]["output_tokens"] == r.usage.output_tokens


def test_previous_response_id_survives_a_restart(tmp_path: Path) -> None:
    with running_stack(tmp_path) as s, openai.OpenAI(base_url=s.url + "/v1", api_key="x", max_retries=0) as c:
        r1 = c.responses.create(model=MATRIX["openai"][0], input="Remember: the code is 42.")
    with running_stack(tmp_path) as s, openai.OpenAI(base_url=s.url + "/v1", api_key="x", max_retries=0) as c:
        assert c.responses.retrieve(r1.id).output_text == r1.output_text
        r2 = c.responses.create(model=MATRIX["openai"][0], input="What is the code?", previous_response_id=r1.id)
        sent = s.openai.requests[-1]["messages"]
    assert sent[0]["content"] == "Remember: the code is 42." and sent[1]["content"] == r1.output_text
    assert r2.previous_response_id == r1.id


def test_a_failure_after_commit_is_response_failed(client: openai.OpenAI, stack: Stack) -> None:
    stack.openai.error_event_next(1)
    events = raw_events(stack, {"model": MATRIX["openai"][0], "input": "this will break"})
    last = events[-1]
    assert last["type"] == "response.failed" and last["response"]["status"] == "failed"
    assert last["response"]["error"]["code"] == "server_error" and last["response"]["error"]["message"]
    assert "response.completed" not in [e["type"] for e in events]
    with pytest.raises(openai.NotFoundError):  # a failed response is not stored for retrieval or continuation
        client.responses.retrieve(last["response"]["id"])
    stored = contexts_messages(stack, last["response"]["id"])  # but its turn is kept for inspection, marked error
    assert stored[0]["content"] == "this will break" and stored[0]["metadata"]["status"] == "error"


def test_context_header_component_and_context_deletion(client: openai.OpenAI, stack: Stack) -> None:
    model = MATRIX["openai"][0]
    native = httpx.post(f"{stack.url}/api/v1/chat", timeout=10, json={
        "message": "My favourite colour is teal.", "context_id": "ergon:resp-test", "provider_id": "openai"})
    assert native.status_code == 200, native.text
    r = client.responses.with_raw_response.create(model=model, input="What is my favourite colour?",
                                                  extra_headers={"x-rhetor-context-id": "ergon:resp-test"})
    assert r.headers["x-rhetor-context-id"] == "ergon:resp-test"
    sent = stack.openai.requests[-1]["messages"]
    users = [m["content"] for m in sent if m["role"] == "user"]
    assert users == ["My favourite colour is teal.", "What is my favourite colour?"]
    assert sent[0]["role"] == "system" and "Ergon" in sent[0]["content"]  # the context's component prompt
    tagged = client.responses.with_raw_response.create(model=model, input="hi",
                                                       extra_headers={"x-rhetor-component": "athena"})
    assert tagged.headers["x-rhetor-context-id"] == f"athena:{tagged.parse().id}"
    listed = httpx.get(f"{stack.url}/api/v1/contexts", timeout=10).text
    assert f"athena:{tagged.parse().id}" in listed and "ergon:resp-test" in listed
    assert httpx.delete(f"{stack.url}/api/v1/contexts/ergon:resp-test", timeout=10).status_code in (200, 204)
    with pytest.raises(openai.NotFoundError):  # its responses went with the context
        client.responses.retrieve(r.parse().id)
