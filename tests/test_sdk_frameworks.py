"""Frameworks built on the OpenAI SDK, pointed at Rhetor (issue 11): LangChain's `ChatOpenAI` on the Responses API
(`use_responses_api=True`, invoke, stream, a conversation continued by `previous_response_id`, tools), its
`with_structured_output` and `OpenAIEmbeddings`; the OpenAI Agents SDK's `Runner` over `OpenAIResponsesModel`
(a turn, a continued conversation, a function tool round trip). The upstreams are the fakes (tests/fakes/),
keyless runs answer from the simulated provider. Skipped only when the package is not installed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from tests.fakes.stack import MATRIX, Stack, running_stack

langchain_openai = pytest.importorskip("langchain_openai", reason="langchain-openai is not installed (test extra)")
agents = pytest.importorskip("agents", reason="openai-agents is not installed (test extra)")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(Path(tmp_path_factory.mktemp("frameworks"))) as s:
        yield s


def chat(stack: Stack, model: str, **kw: object) -> langchain_openai.ChatOpenAI:
    return langchain_openai.ChatOpenAI(model=model, base_url=stack.url + "/v1", api_key="unused", max_retries=0,
                                       use_responses_api=True, **kw)


@pytest.mark.parametrize("provider", list(MATRIX))
def test_langchain_responses_invoke_and_stream(stack: Stack, provider: str) -> None:
    model, expected = MATRIX[provider]
    llm = chat(stack, model)
    answer = llm.invoke("Say hello")
    assert expected in answer.text
    assert answer.response_metadata["id"].startswith("resp_")
    assert answer.usage_metadata is not None and answer.usage_metadata["total_tokens"] > 0
    streamed = "".join(chunk.text for chunk in llm.stream("Say hello"))
    assert expected in streamed


def test_langchain_continues_by_previous_response_id(stack: Stack) -> None:
    llm = chat(stack, "simulated/simulated-fast", use_previous_response_id=True)
    first = llm.invoke("My name is Ada.")
    second = llm.invoke([("human", "My name is Ada."), first, ("human", "What is my name?")])
    assert second.response_metadata["id"] != first.response_metadata["id"]
    assert "What is my name?" in second.text  # the simulated provider echoes the last message


class City(BaseModel):
    name: str = Field(min_length=2)
    population: int = Field(ge=0)


def test_langchain_structured_output_keyless(stack: Stack) -> None:
    for method in ("json_schema", "function_calling"):
        city = chat(stack, "simulated/simulated-fast").with_structured_output(City, method=method).invoke("A city")
        assert isinstance(city, City) and len(city.name) >= 2 and city.population >= 0


def test_langchain_tool_call_round_trip(stack: Stack) -> None:
    def get_weather(city: str) -> str:
        """Weather for a city."""
        return f"sunny in {city}"

    llm = chat(stack, "openai/gpt-4o-mini").bind_tools([get_weather], tool_choice="get_weather")
    answer = llm.invoke("Weather in Paris?")
    assert answer.tool_calls and answer.tool_calls[0]["name"] == "get_weather"


def test_langchain_embeddings(stack: Stack) -> None:
    emb = langchain_openai.OpenAIEmbeddings(model="simulated/simulated-embedding", base_url=stack.url + "/v1",
                                            api_key="unused", max_retries=0, check_embedding_ctx_length=False)
    vectors = emb.embed_documents(["first text", "second text"])
    assert len(vectors) == 2 and len(vectors[0]) == len(vectors[1]) > 0 and vectors[0] != vectors[1]
    assert emb.embed_query("first text") == pytest.approx(vectors[0])


def _agent_model(stack: Stack, model: str) -> agents.OpenAIResponsesModel:
    import openai

    client = openai.AsyncOpenAI(base_url=stack.url + "/v1", api_key="unused", max_retries=0)
    return agents.OpenAIResponsesModel(model=model, openai_client=client)


@pytest.fixture(autouse=True)
def _no_agent_tracing() -> None:
    agents.set_tracing_disabled(True)  # the SDK would export its traces to OpenAI


@pytest.mark.parametrize("provider", list(MATRIX))
def test_agents_sdk_run_and_continue(stack: Stack, provider: str) -> None:
    model, expected = MATRIX[provider]
    agent = agents.Agent(name="helper", instructions="Answer briefly.", model=_agent_model(stack, model))

    async def run() -> None:
        first = await agents.Runner.run(agent, "Say hello")
        assert expected in str(first.final_output)
        assert first.last_response_id is not None and first.last_response_id.startswith("resp_")
        second = await agents.Runner.run(agent, "And again", previous_response_id=first.last_response_id)
        assert second.last_response_id != first.last_response_id and second.final_output

    asyncio.run(run())


def test_agents_sdk_function_tool(stack: Stack) -> None:
    calls: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """Weather for a city."""
        calls.append(city)
        return f"sunny in {city}"

    agent = agents.Agent(name="weather", instructions="Use the tool.", tools=[get_weather],
                         model=_agent_model(stack, "simulated/simulated-fast"),
                         model_settings=agents.ModelSettings(tool_choice="get_weather"),
                         tool_use_behavior="stop_on_first_tool")

    async def run() -> None:
        result = await agents.Runner.run(agent, "Weather in Paris?")
        assert calls and isinstance(calls[0], str)  # the simulated model's forced call reached the tool
        assert "sunny in" in str(result.final_output)

    asyncio.run(run())
