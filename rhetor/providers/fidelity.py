"""The cross-vendor field table of the OpenAI and Anthropic fronts, and its enforcement: never silent.

A field of a front's body is forwarded (the upstream speaks the front's API: same-vendor pass-through), translated
(to the normalized types, then to the upstream's wire; each provider maps them), or refused: a 400 naming the field
and the provider, unless the caller asked for lenient mode, in which case it is dropped and listed
(`x-rhetor-dropped-fields`). `TABLE` is the data; docs/fronts.md prints it and tests hold the two together.
`admit` runs once per attempt (the gateway's request builder), before any I/O. The reasoning budget mapping lives
here too, so both providers use one rule. Pure: no I/O; knows no HTTP and no provider internals.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rhetor.errors import InvalidRequestError
from rhetor.types import ChatRequest

WIRES = ("openai", "anthropic", "ollama", "simulated")  # "other": any further provider (gemini, ...)
REFUSED = "refused"
SAME = "forwarded as sent"

# effort -> Anthropic thinking budget; budget -> effort by the first bound it does not exceed
EFFORT_BUDGET: dict[str, int] = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
BUDGET_EFFORT: list[tuple[int, str]] = [(2048, "low"), (8192, "medium")]
DEFAULT_EFFORT = "high"

_T_ALL = "translated"
FAN_OUT = "fan-out: n requests (streams merged), choices numbered, usage summed; n ≤ 8"


def _row(anthropic_or_openai: str, ollama: str, simulated: str, other: str | None = None) -> dict[str, str]:
    return {"peer": anthropic_or_openai, "ollama": ollama, "simulated": simulated, "other": other or ollama}


# front -> field -> rule per target ("peer" = the other vendor). Same-vendor: every field is forwarded as sent.
TABLE: dict[str, dict[str, dict[str, str]]] = {
    "openai": {
        "model": _row("rewritten to the routed model", "rewritten", "rewritten"),
        "messages": _row("translated (system/developer → system; tool turns → tool_result blocks)", _T_ALL, _T_ALL),
        "stream": _row(_T_ALL, _T_ALL, _T_ALL),
        "stream_options": _row("include_usage honoured (Rhetor frames the usage chunk)",
                               "include_usage honoured", "include_usage honoured"),
        "temperature": _row(_T_ALL, "options.temperature", _T_ALL),
        "top_p": _row(_T_ALL, "options.top_p", _T_ALL),
        "max_tokens": _row("max_tokens", "options.num_predict", _T_ALL),
        "max_completion_tokens": _row("max_tokens", "options.num_predict", _T_ALL),
        "stop": _row("stop_sequences", "options.stop", "cuts the reply"),
        "seed": _row(REFUSED, "options.seed", "accepted (answers are deterministic)", "translated where supported"),
        "user": _row("metadata.user_id", "not sent (no end-user monitoring on a local model)",
                     "not sent (nothing to monitor)"),
        "response_format": _row("json_schema → output_config.format; json_object refused", "format",
                                "json_schema: a value valid against the schema; json_object: {\"response\": …}"),
        "tools": _row("tools (input_schema)", "tools", "a placeholder call"),
        "tool_choice": _row("tool_choice (required → any, function → tool)", "tools offered or not",
                            _T_ALL),
        "parallel_tool_calls": _row("false → disable_parallel_tool_use", "true only; false refused",
                                    "at most one call anyway"),
        "reasoning_effort": _row("thinking.budget_tokens (see the budget mapping)", REFUSED,
                                 "accepted, no effect"),
        "service_tier": _row("auto → auto, default → standard_only; others refused", "auto/default only",
                             "auto/default only"),
        "n": _row(FAN_OUT, FAN_OUT, FAN_OUT),
        "logprobs": _row(REFUSED, REFUSED, REFUSED),
        "top_logprobs": _row(REFUSED, REFUSED, REFUSED),
        "frequency_penalty": _row(REFUSED, REFUSED, REFUSED),
        "presence_penalty": _row(REFUSED, REFUSED, REFUSED),
        "logit_bias": _row(REFUSED, REFUSED, REFUSED),
        "metadata": _row(REFUSED, REFUSED, REFUSED),
        "store": _row(REFUSED, REFUSED, REFUSED),
        "image_url content parts": _row("image blocks (a data: URL as a base64 source, else a url source); detail "
                                        "not sent", "images (base64 only; a URL image refused)",
                                        "accepted (not looked at)", "image parts where the provider takes them"),
        "other content parts (input_audio, file, …)": _row(REFUSED, REFUSED, REFUSED),
        "any other field": _row(REFUSED, REFUSED, REFUSED),
    },
    "anthropic": {
        "model": _row("rewritten to the routed model", "rewritten", "rewritten"),
        "messages": _row("translated (tool_use/tool_result ↔ tool_calls/tool turns)", _T_ALL, _T_ALL),
        "system": _row("a system message (text blocks joined)", _T_ALL, _T_ALL),
        "max_tokens": _row("max_tokens (max_completion_tokens for reasoning models)", "options.num_predict",
                           _T_ALL),
        "stop_sequences": _row("stop", "options.stop", "cuts the reply"),
        "temperature": _row(_T_ALL, "options.temperature", _T_ALL),
        "top_p": _row(_T_ALL, "options.top_p", _T_ALL),
        "top_k": _row(REFUSED, "options.top_k", REFUSED, REFUSED),
        "stream": _row(_T_ALL, _T_ALL, _T_ALL),
        "metadata": _row("metadata.user_id → user", "not sent (no end-user monitoring on a local model)",
                         "not sent (nothing to monitor)"),
        "tools": _row("function tools", "tools", "a placeholder call"),
        "tool_choice": _row("auto/any/tool/none → auto/required/function/none; disable_parallel_tool_use → "
                            "parallel_tool_calls false", "tools offered or not", _T_ALL),
        "thinking": _row("reasoning_effort (see the budget mapping)", REFUSED, "accepted, no effect"),
        "output_config": _row("format → response_format json_schema", "format",
                              "a value valid against the schema"),
        "service_tier": _row("auto → auto, standard_only → default", "auto/standard_only only",
                             "auto/standard_only only"),
        "cache_control (any block)": _row("not sent: OpenAI caches prompt prefixes itself; its cached_tokens "
                                          "come back as cache_read_input_tokens", "not sent (no prompt cache)",
                                          "not sent (no prompt cache)"),
        "thinking blocks in history": _row("omitted (Chat Completions takes no prior reasoning)", "omitted",
                                           "omitted"),
        "image blocks": _row("image_url parts (a base64 source as a data: URL)",
                             "images (base64 only; a url source refused)", "accepted (not looked at)",
                             "image parts where the provider takes them"),
        "document blocks": _row(REFUSED, REFUSED, REFUSED),
        "anthropic-beta header": _row(REFUSED, REFUSED, REFUSED),
        "any other field": _row(REFUSED, REFUSED, REFUSED),
    },
}
# Values of a refused field that ask for nothing the target lacks (so they are not refused).
BENIGN: dict[str, tuple[Any, ...]] = {"n": (1,), "logprobs": (False,), "store": (False,), "frequency_penalty": (0,),
                                      "presence_penalty": (0,), "logit_bias": ({},), "metadata": ({},),
                                      "parallel_tool_calls": (True,)}
SERVICE_TIERS: dict[str, dict[str, str]] = {  # front value -> the peer vendor's value
    "openai": {"auto": "auto", "default": "standard_only"},
    "anthropic": {"auto": "auto", "standard_only": "default"},
}


def target_column(api: str, wire: str) -> str:
    if wire in ("openai", "anthropic"):
        return "peer" if wire != api else "same"
    return wire if wire in ("ollama", "simulated") else "other"


def rule(api: str, key: str, wire: str) -> str:
    column = target_column(api, wire)
    if column == "same":
        return SAME
    fields = TABLE[api]
    return (fields.get(key) or fields["any other field"])[column]


def unhonoured(request: ChatRequest, wire: str) -> list[str]:
    """The caller's fields (and blocks, headers) that an upstream speaking `wire` cannot honour."""
    pt = request.passthrough
    if pt is None or (wire == pt.api and pt.forward):
        return []
    wire = wire if wire != pt.api else "other"  # pass-through off: judged as any other provider
    column = target_column(pt.api, wire)
    out = list(pt.parts)
    for key, value in pt.body.items():
        if value is None or value in BENIGN.get(key, ()):
            continue
        if rule(pt.api, key, wire) == REFUSED:
            out.append(key)
        elif key == "service_tier":
            tiers = SERVICE_TIERS[pt.api]
            if value not in tiers:
                out.append(f"service_tier={value}")
        elif key == "response_format" and column == "peer" and isinstance(value, dict) \
                and value.get("type") == "json_object":
            out.append("response_format.type=json_object")
        elif key == "parallel_tool_calls" and column == "ollama" and value is False:
            out.append("parallel_tool_calls")
    return out


def admit(request: ChatRequest, wire: str, provider: str, modalities: tuple[str, ...] | None = None) -> None:
    """Refuse (400 naming the first field and the provider) what `provider` cannot honour; lenient, drop it and
    list it in `request.passthrough.dropped`. Also translates service_tier to the target's vocabulary. Images to a
    model the catalogue lists without the image modality are refused too (dropped when lenient and translated)."""
    pt = request.passthrough
    if pt is None:
        return
    pt.dropped.clear()  # per attempt: a fallback to another target judges afresh
    if modalities is not None and "image" not in modalities:
        _no_images(request, provider, modalities, lenient=pt.lenient and not (wire == pt.api and pt.forward))
    missing = unhonoured(request, wire)
    if missing and not pt.lenient:
        more = f" (also: {', '.join(missing[1:])})" if len(missing) > 1 else ""
        raise InvalidRequestError(f"{missing[0]} is not supported by provider {provider}{more}; send "
                                  "x-rhetor-lenient: 1 to drop it instead", param=missing[0].split("=")[0])
    pt.dropped.extend(missing)
    if request.service_tier is not None and wire != pt.api:
        mapped = SERVICE_TIERS[pt.api].get(request.service_tier)
        request.service_tier = mapped if wire in ("openai", "anthropic") else None


def _no_images(request: ChatRequest, provider: str, modalities: tuple[str, ...], *, lenient: bool) -> None:
    assert request.passthrough is not None
    for i, m in enumerate(request.messages):
        for image in m.images or []:
            if not lenient:
                raise InvalidRequestError(f"{image.where} (image) is not supported by model {request.model!r} of "
                                          f"provider {provider}: it takes {', '.join(modalities)}", param=image.where)
            request.passthrough.dropped.append(f"{image.where} (image)")
        if m.images:
            request.messages[i] = replace(m, images=None)  # a copy: the gateway's turn is shared across attempts


def effort_budget(effort: str) -> int:
    return EFFORT_BUDGET.get(effort, EFFORT_BUDGET["medium"])


def budget_effort(budget: int) -> str:
    return next((effort for bound, effort in BUDGET_EFFORT if budget <= bound), DEFAULT_EFFORT)


def markdown_table(api: str) -> str:
    """TABLE[api] as the markdown table docs/fronts.md prints (`python -m rhetor.providers.fidelity` rewrites it)."""
    peer = "anthropic" if api == "openai" else "openai"
    lines = [f"| field | → {peer} | → ollama | → simulated | → other providers (gemini, …) |", "|---|---|---|---|---|"]
    for name in TABLE[api]:
        cells = [rule(api, name, wire).replace("|", "\\|") for wire in (peer, "ollama", "simulated", "other")]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def rewrite_doc(text: str) -> str:
    """`text` (docs/fronts.md) with each `<!-- table:API -->` … `<!-- /table -->` section printed afresh."""
    for api in TABLE:
        head, rest = text.split(f"<!-- table:{api} -->\n", 1)
        tail = rest.split("<!-- /table -->", 1)[1]
        text = f"{head}<!-- table:{api} -->\n{markdown_table(api)}<!-- /table -->{tail}"
    return text


if __name__ == "__main__":  # python -m rhetor.providers.fidelity docs/fronts.md
    import sys
    from pathlib import Path

    doc = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/fronts.md")
    doc.write_text(rewrite_doc(doc.read_text()))


__all__ = ["BENIGN", "EFFORT_BUDGET", "REFUSED", "TABLE", "WIRES", "admit", "budget_effort", "effort_budget",
           "markdown_table", "rewrite_doc", "rule", "target_column", "unhonoured"]
