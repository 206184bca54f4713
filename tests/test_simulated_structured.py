"""Keyless structured output (issue 11 item 6): with no keys, json_schema response formats and forced tools on
the simulated provider answer values that validate against the schema, so the OpenAI SDK's `.parse()` (Pydantic
models with nested models, enums, optionals, bounds, formats) and the Anthropic front's output_config work offline."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import anthropic
import jsonschema
import openai
import orjson
import pytest
from pydantic import BaseModel, Field

from rhetor.providers.simulated_schema import example


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Step(BaseModel):
    title: str = Field(min_length=12)
    minutes: int = Field(ge=5, le=90)


class Plan(BaseModel):
    name: str
    colour: Colour
    due: dt.date
    steps: list[Step]
    owner: Step | None
    score: float


SCHEMAS: list[dict[str, Any]] = [
    Plan.model_json_schema(),
    {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}, "minItems": 3},
                                      "n": {"type": "integer", "exclusiveMinimum": 10, "multipleOf": 7},
                                      "x": {"type": ["number", "null"], "maximum": -2.5},
                                      "k": {"const": "fixed"}, "id": {"type": "string", "format": "uuid"},
                                      "both": {"allOf": [{"type": "object", "properties": {"a": {"type": "boolean"}},
                                                          "required": ["a"]},
                                                         {"properties": {"b": {"type": "null"}}, "required": ["b"]}]}},
     "required": ["tags", "n", "x", "k", "id", "both"], "additionalProperties": False},
    {"$defs": {"Node": {"type": "object", "properties": {"next": {"anyOf": [{"$ref": "#/$defs/Node"},
                                                                             {"type": "null"}]}},
                        "required": ["next"]}}, "$ref": "#/$defs/Node"},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_examples_validate_against_their_schemas(schema: dict[str, Any]) -> None:
    jsonschema.validate(example(schema), schema)


def test_openai_sdk_parse_against_the_simulated_provider(simulated_rhetor: str) -> None:
    with openai.OpenAI(base_url=simulated_rhetor + "/v1", api_key="unused", max_retries=0) as client:
        r = client.chat.completions.parse(model="simulated/simulated-fast", response_format=Plan,
                                          messages=[{"role": "user", "content": "Plan my day"}])
    plan = r.choices[0].message.parsed
    assert isinstance(plan, Plan) and plan.colour is Colour.RED and len(plan.steps) == 0
    assert isinstance(plan.due, dt.date) and plan.owner is not None and 5 <= plan.owner.minutes <= 90
    assert len(plan.owner.title) >= 12


def test_forced_tool_arguments_validate(simulated_rhetor: str) -> None:
    schema = SCHEMAS[1]
    with openai.OpenAI(base_url=simulated_rhetor + "/v1", api_key="unused", max_retries=0) as client:
        r = client.chat.completions.create(
            model="simulated/simulated-fast", messages=[{"role": "user", "content": "go"}],
            tools=[{"type": "function", "function": {"name": "record", "parameters": schema}}],
            tool_choice={"type": "function", "function": {"name": "record"}})
    call = r.choices[0].message.tool_calls[0]  # type: ignore[index]
    jsonschema.validate(orjson.loads(call.function.arguments), schema)  # type: ignore[union-attr]


def test_anthropic_output_config_is_schema_valid_offline(simulated_rhetor: str) -> None:
    schema = Plan.model_json_schema()
    with anthropic.Anthropic(base_url=simulated_rhetor, api_key="unused", max_retries=0) as client:
        m = client.messages.create(model="simulated/simulated-fast", max_tokens=200,
                                   messages=[{"role": "user", "content": "Plan"}],
                                   extra_body={"output_config": {"format": {"type": "json_schema", "schema": schema}}})
    jsonschema.validate(orjson.loads(m.content[0].text), schema)  # type: ignore[union-attr]
