"""The native reply shapes, shared by HTTP, SSE and WebSocket: a finished answer, a stream chunk, the final
stream frame and a stream error. Pure functions of gateway results; no I/O.
"""

from __future__ import annotations

from typing import Any

from rhetor.gateway import ChatOutcome, StreamSession, now_iso
from rhetor.types import StreamEnd, StreamError, StreamEvent, TextDelta


def result(outcome: ChatOutcome) -> dict[str, Any]:
    r = outcome.response
    return {
        "content": r.content,
        "message": r.content,
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


def stream_frame(session: StreamSession, event: StreamEvent) -> dict[str, Any]:
    base: dict[str, Any] = {"context_id": session.context_id, "model": session.model,
                            "provider": session.provider, "timestamp": now_iso()}
    if isinstance(event, TextDelta):
        return {"chunk": event.text, **base, "done": False}
    if isinstance(event, StreamEnd):
        return {"chunk": "", **base, "done": True, "finish_reason": event.finish_reason,
                "usage": event.usage.as_dict(), "fallback": session.info.fallback,
                "simulated": session.simulated, "attempts": session.info.attempts_dicts()}
    assert isinstance(event, StreamError)
    return {"chunk": "", **base, "done": True, "finish_reason": "error", "error": event.error,
            "error_type": event.type, "attempts": session.info.attempts_dicts()}


__all__ = ["result", "stream_frame"]
