"""Same-vendor pass-through against the translated path: the CPU Rhetor spends per request on each, same run.

End to end (benchmarks/run.py --paths compat --off-env RHETOR_PASSTHROUGH=0) the difference drowns in a loaded
machine's noise, so this measures the part that differs, in process, with CPU time: for the OpenAI front to an
OpenAI upstream and the Anthropic front to Anthropic, building and encoding the upstream body from the caller's, then
reading the upstream's answer and producing the caller's bytes — JSON, and a 40-event stream. Pass-through: the
caller's body with the model rewritten (`rhetor.providers.*_passthrough.payload`), the answer read once for Rhetor
and relayed as received. Translated: the normalized request built into the vendor body, the answer parsed into the
normalized types and framed again by the front.

    .venv/bin/python benchmarks/passthrough.py [--n 20000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rhetor.api.anthropic import messages as anthropic_messages
from rhetor.api.openai import chat as openai_chat
from rhetor.gateway import ChatOutcome
from rhetor.providers import anthropic, anthropic_passthrough, anthropic_reply, openai, openai_passthrough, openai_reply
from rhetor.routing.fallback import RunInfo
from rhetor.types import ChatRequest, Message, Passthrough

OA_BODY = {"model": "openai/gpt-5.4-mini", "messages": [{"role": "system", "content": "Be brief."},
                                                         {"role": "user", "content": "hi " * 50}],
           "temperature": 0.2, "max_completion_tokens": 200}
OA_REPLY = orjson.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "gpt-5.4-mini",
                         "system_fingerprint": "fp_1", "service_tier": "default",
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello " * 40,
                                                              "refusal": None}, "logprobs": None,
                                      "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 60, "completion_tokens": 40, "total_tokens": 100,
                                   "prompt_tokens_details": {"cached_tokens": 0},
                                   "completion_tokens_details": {"reasoning_tokens": 0}}})
OA_LINES = [b"data: " + orjson.dumps({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                                      "choices": [{"index": 0, "delta": {"content": "Hello "}, "finish_reason": None}]})
            for _ in range(40)]
OA_LINES += [b"data: " + orjson.dumps({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                                       "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
             b"data: [DONE]"]
AN_BODY = {"model": "anthropic/claude-sonnet-5-5", "max_tokens": 200, "system": "Be brief.",
           "messages": [{"role": "user", "content": "hi " * 50}]}
AN_REPLY = orjson.dumps({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-5-5",
                         "content": [{"type": "text", "text": "Hello " * 40}], "stop_reason": "end_turn",
                         "stop_sequence": None, "usage": {"input_tokens": 60, "output_tokens": 40,
                                                          "cache_read_input_tokens": 0,
                                                          "cache_creation_input_tokens": 0}})


def cpu_us(fn: Callable[[], Any], n: int) -> float:
    fn()
    start = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - start) / n * 1e6


def request_of(api: str, body: dict[str, Any], forward: bool) -> ChatRequest:
    pt = Passthrough(api, body, system="Be brief.", forward=forward)  # type: ignore[arg-type]
    turn = [Message("user", "hi " * 50, raw_index=1 if api == "openai" else 0)]
    model = "gpt-5.4-mini" if api == "openai" else "claude-sonnet-5-5"
    return ChatRequest(model, turn, system="Be brief.", temperature=0.2 if api == "openai" else None, max_tokens=200,
                       passthrough=pt)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    n = ap.parse_args().n
    oa, an = request_of("openai", OA_BODY, True), request_of("anthropic", AN_BODY, True)
    info = RunInfo()

    def oa_pass() -> bytes:
        orjson.dumps(openai_passthrough.payload(oa, oa.passthrough, stream=False))  # type: ignore[arg-type]
        r = openai_reply.parse_response(orjson.loads(OA_REPLY), "gpt-5.4-mini")
        r.raw = OA_REPLY
        return r.raw

    def oa_translated() -> bytes:
        orjson.dumps(openai.build_payload(oa))
        r = openai_reply.parse_response(orjson.loads(OA_REPLY), "gpt-5.4-mini")
        return orjson.dumps(openai_chat.completion(ChatOutcome(r, info, None, ""), "chatcmpl-x"))

    def an_pass() -> bytes:
        orjson.dumps(anthropic_passthrough.payload(an, an.passthrough, stream=False))  # type: ignore[arg-type]
        anthropic_reply.parse_response(orjson.loads(AN_REPLY), "claude-sonnet-5-5")
        return AN_REPLY

    def an_translated() -> bytes:
        orjson.dumps(anthropic.build_payload(an))
        r = anthropic_reply.parse_response(orjson.loads(AN_REPLY), "claude-sonnet-5-5")
        return orjson.dumps(anthropic_messages.message(ChatOutcome(r, info, None, ""), "msg_x"))

    def oa_stream_pass() -> None:  # each line: read for Rhetor, relayed as received
        state = openai_reply.StreamState("m")
        for line in OA_LINES:
            state.feed(line.decode())
            _ = line + b"\n\n"
        state.end()

    def oa_stream_translated() -> None:  # each line: read, then framed again as a chunk (rhetor.api.openai.chat_stream)
        state = openai_reply.StreamState("m")
        head = b'data: {"id":"chatcmpl-x","object":"chat.completion.chunk","created":0,"model":"openai/m","choices":'
        for line in OA_LINES:
            delta = state.feed(line.decode())
            if delta is not None:
                _ = head + orjson.dumps([{"index": 0, "delta": {"content": delta.text}, "logprobs": None,
                                          "finish_reason": None}]) + b"}\n\n"
        state.end()

    print(f"{'path':28} {'pass-through':>13} {'translated':>11}  ratio   (CPU µs per request, n={n})")
    for label, fast, slow in (("openai front -> openai json", oa_pass, oa_translated),
                              ("anthropic front -> anthropic", an_pass, an_translated),
                              ("openai stream (42 events)", oa_stream_pass, oa_stream_translated)):
        p, t = cpu_us(fast, n), cpu_us(slow, n)
        print(f"{label:28} {p:>11.1f}µs {t:>9.1f}µs  {p / t:5.2f}", flush=True)


if __name__ == "__main__":
    main()
