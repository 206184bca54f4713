"""A value that validates against a JSON Schema, for the simulated provider's structured output and tool calls, so
a developer can build against Rhetor with no key (the OpenAI SDK's `.parse()`, LangChain's `with_structured_output`).

Covers what SDKs generate from Pydantic models and Zod: `$ref` into `$defs`/`definitions`, `anyOf`/`oneOf`
(the first non-null branch), `allOf`, `enum`, `const`, type lists, required and optional properties, array
`minItems`/`maxItems`, string `minLength`/`maxLength` and common formats, numeric bounds and `multipleOf`.
Deterministic, pure, bounded in depth. Knows no vendor wire, no routing, no HTTP.
"""

from __future__ import annotations

import math
from typing import Any

MAX_DEPTH = 12  # a recursive schema stops here with the smallest value its type allows
FORMATS = {"date-time": "2025-01-01T00:00:00Z", "date": "2025-01-01", "time": "00:00:00Z", "email": "sim@example.com",
           "uri": "https://example.com/simulated", "url": "https://example.com/simulated",
           "uuid": "00000000-0000-4000-8000-000000000000", "ipv4": "127.0.0.1", "hostname": "example.com",
           "duration": "P1D"}


def example(schema: Any, root: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """A value valid against `schema` (resolved against `root`, the document holding `$defs`)."""
    if not isinstance(schema, dict):
        return "simulated"
    root = root if root is not None else schema
    if "$ref" in schema:
        target = _resolve(str(schema["$ref"]), root)
        return example(target, root, depth + 1) if depth < MAX_DEPTH else None
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            real = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")]
            return example(real[0] if real else branches[0], root, depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = _resolve(part["$ref"], root) if isinstance(part, dict) and "$ref" in part else part
            if isinstance(part, dict):
                merged = _merge(merged, part)
        return example(merged, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        return _object(schema, root, depth)
    if kind == "array":
        return _array(schema, root, depth)
    if kind in ("integer", "number"):
        return _number(schema, kind == "integer")
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return _string(schema)


def _resolve(ref: str, root: dict[str, Any]) -> Any:
    node: Any = root
    for part in ref.removeprefix("#").strip("/").split("/") if ref.startswith("#") else []:
        node = node.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = {**a, **b}
    if isinstance(a.get("properties"), dict) and isinstance(b.get("properties"), dict):
        out["properties"] = {**a["properties"], **b["properties"]}
    out["required"] = [*a.get("required", []), *b.get("required", [])]
    return out


def _object(schema: dict[str, Any], root: dict[str, Any], depth: int) -> dict[str, Any]:
    raw = schema.get("properties")
    props: dict[str, Any] = raw if isinstance(raw, dict) else {}
    required = [r for r in schema.get("required", []) if isinstance(r, str)]
    if depth >= MAX_DEPTH:
        return {}
    out = {name: example(props.get(name, {}), root, depth + 1) for name in required}
    for name, sub in props.items():  # optional properties too: Pydantic models read them all
        if name not in out and len(out) < max(len(required), 64):
            out[name] = example(sub, root, depth + 1)
    return out


def _array(schema: dict[str, Any], root: dict[str, Any], depth: int) -> list[Any]:
    low, high = _int(schema.get("minItems")) or 0, _int(schema.get("maxItems"))
    count = low if high is None else min(low, high)  # the fewest items allowed
    raw = schema.get("prefixItems")
    prefix: list[Any] = raw if isinstance(raw, list) else []
    items = [example(p, root, depth + 1) for p in prefix]
    return items + [example(schema.get("items", {}), root, depth + 1) for _ in range(max(0, count - len(items)))]


def _number(schema: dict[str, Any], integer: bool) -> int | float:
    low, high = schema.get("minimum"), schema.get("maximum")
    ex_low, ex_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    value: float = 0
    if isinstance(low, (int, float)) and value < low:
        value = low
    if isinstance(ex_low, (int, float)) and value <= ex_low:
        value = ex_low + 1 if integer else ex_low + (abs(ex_low) or 1) * 1e-6
    step = schema.get("multipleOf")
    if isinstance(step, (int, float)) and step > 0:
        value = math.ceil(value / step) * step
    if isinstance(high, (int, float)) and value > high:
        value = high
    if isinstance(ex_high, (int, float)) and value >= ex_high:
        value = ex_high - 1 if integer else ex_high - (abs(ex_high) or 1) * 1e-6
    return math.ceil(value) if integer else value


def _string(schema: dict[str, Any]) -> str:
    text = FORMATS.get(str(schema.get("format")), "simulated")
    low, high = _int(schema.get("minLength")) or 0, _int(schema.get("maxLength"))
    if len(text) < low:
        text = text + "x" * (low - len(text))
    return text[:high] if high is not None else text


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


__all__ = ["example"]
