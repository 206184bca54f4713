"""The native reply shapes, shared by HTTP, SSE and WebSocket: a finished answer, a stream chunk, the final
stream frame and a stream error. Pure functions of gateway results; no I/O.
"""

from __future__ import annotations

from typing import Any

from rhetor.context.retrieval import Recall
from rhetor.gateway import ChatOutcome, StreamSession, now_iso
from rhetor.types import StreamEnd, StreamError, StreamEvent, TextDelta


def result(outcome: ChatOutcome) -> dict[str, Any]:
    r = outcome.response
    out = {
        "content": r.content,
        "message": r.content,
        "response": r.content,  # what Tekton's 2025 rhetor_client reads (contracts §8)
        "model": r.model,
        "provider": r.provider,
        "context_id": outcome.context_id,
        "finish_reason": r.finish_reason,
        "usage": r.usage.as_dict(),
        "fallback": outcome.info.fallback,
        "simulated": r.simulated,
        "attempts": outcome.info.attempts_dicts(),
        "finished": True,
        "timestamp": outcome.timestamp,
    }
    if outcome.notes is not None and outcome.notes.fields:  # cached, budget_warnings, downgraded
        out.update(outcome.notes.fields)
    return _with_recall(out, outcome.recall)


def _with_recall(out: dict[str, Any], recall: Recall | None) -> dict[str, Any]:
    """`retrieval` ("semantic" | "lexical") and `retrieved` [{id, role, score}] when older turns came back."""
    if recall is not None:
        out["retrieval"] = recall.mode
        out["retrieved"] = recall.retrieved
    return out


def stream_frame(session: StreamSession, event: StreamEvent) -> dict[str, Any]:
    base: dict[str, Any] = {"context_id": session.context_id, "model": session.model,
                            "provider": session.provider, "timestamp": now_iso()}
    if isinstance(event, TextDelta):
        return {"chunk": event.text, **base, "done": False}
    if isinstance(event, StreamEnd):
        return _with_recall({"chunk": "", **base, "done": True, "finish_reason": event.finish_reason,
                             "usage": event.usage.as_dict(), "fallback": session.info.fallback,
                             "simulated": session.simulated, "attempts": session.info.attempts_dicts(),
                             **(session.notes.fields or {} if session.notes else {})}, session.recall)
    assert isinstance(event, StreamError)
    return {"chunk": "", **base, "done": True, "finish_reason": "error", "error": event.error,
            "error_type": event.type, "attempts": session.info.attempts_dicts()}


__all__ = ["result", "stream_frame"]
