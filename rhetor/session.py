"""One chat request as the gateway sees it: `ChatInput` (normalized, from any front), `Prepared` (routed, with
its conversation assembled), `ChatOutcome` (a non-streamed answer) and `StreamSession` (a committed stream that
records its turn when it ends, however it ends, and yields the shutdown frame when the drain deadline passes).
Knows nothing of HTTP, SSE or WebSocket framing, nor of how a request is routed or run (rhetor.gateway).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rhetor.context.retrieval import Recall
from rhetor.drain import Drain, shutdown_error
from rhetor.governance.gate import Notes, Ticket
from rhetor.governance.keys import Identity
from rhetor.governance.meter import NO_METER, Metered, estimate_input, status_of
from rhetor.observability import chat_span
from rhetor.routing.fallback import RunInfo
from rhetor.routing.router import Route
from rhetor.running import this_task
from rhetor.types import (
    ChatResponse,
    Image,
    Message,
    Passthrough,
    Reasoning,
    StreamEnd,
    StreamError,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
)


def now_iso() -> str:
    """`datetime.now(UTC).isoformat()`, by `iso_utc` (the date and time of day formatted once a second: the native
    stream stamps every frame)."""
    return iso_utc(time.time())


_second: tuple[int, str] = (-1, "")  # the last whole second `iso_utc` formatted, and its text to the seconds


def iso_utc(ts: float) -> str:
    """`datetime.fromtimestamp(ts, UTC).isoformat()`, the date and time of day formatted once a second (~1 µs a
    reply): the microseconds rounded half to even as datetime rounds them, none shown when they are 0."""
    global _second
    if not 0 <= ts < 253402300799:  # (a negative, NaN or past-9999 time: datetime's own answer, or its error)
        return datetime.fromtimestamp(ts, UTC).isoformat()
    frac, whole = math.modf(ts)
    us, second = round(frac * 1e6), int(whole)
    if us >= 1000000:
        us, second = us - 1000000, second + 1
    if _second[0] != second:
        _second = (second, datetime.fromtimestamp(second, UTC).isoformat()[:19])
    return f"{_second[1]}.{us:06d}+00:00" if us else f"{_second[1]}+00:00"


@dataclass(slots=True)
class ChatInput:
    """A chat request from any front, normalized. Exactly one of `message` / `messages` is set."""

    message: str | None = None
    messages: list[Message] | None = None
    images: list[Image] | None = None  # the images of `message` (a compat front's single-message context form)
    context_id: str | None = None
    task_type: str | None = None
    component: str | None = None
    provider_id: str | None = None
    model_id: str | None = None
    system_prompt: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # a named prompt template (rhetor.prompts): rendered with `variables`; with one, message/messages may be absent
    template_id: str | None = None
    template_version: int | None = None
    variables: dict[str, Any] | None = None
    # compat fronts (OpenAI/Anthropic): tools and rare knobs pass through to the provider; `pinned` = the caller
    # named one model, so no fallback chain and no task-entry defaults (rhetor.routing.models.pinned)
    tools: list[ToolSpec] | None = None
    tool_choice: ToolChoice | None = None
    response_format: dict[str, Any] | None = None
    seed: int | None = None
    user: str | None = None
    reasoning: Reasoning | None = None
    service_tier: str | None = None
    # the caller's own body, for same-vendor pass-through and the never-silent check (rhetor.providers.fidelity)
    passthrough: Passthrough | None = None
    pinned: bool = False
    # False: the front records the turn itself (the Responses API stores its items losslessly, rhetor.api.openai)
    record: bool = True
    # who asked, through which front: for the usage ledger (rhetor.governance); set by the web layer
    front: str = "internal"
    request_id: str | None = None
    key_id: str | None = None
    identity: Identity | None = None  # the caller key (rhetor.governance.keys): allowed providers/models, budget
    notes: Notes | None = None  # governance's word on the request (rhetor.governance.gate): set by the web layer
    started: float = field(default_factory=time.perf_counter)


@dataclass(slots=True)
class ChatOutcome:
    response: ChatResponse
    info: RunInfo
    context_id: str | None
    finished: float  # time.time() when the answer was complete; `timestamp` formats it for the fronts that show it
    recall: Recall | None = None
    notes: Notes | None = None  # cached, budget_warnings, downgraded (rhetor.governance.gate)

    @property
    def timestamp(self) -> str:
        """`finished` as now_iso() would have said it then (formatted only by the fronts that send it)."""
        return iso_utc(self.finished)


@dataclass(slots=True)
class Prepared:
    route: Route
    system: str | None
    history: list[Message]
    new_turn: list[Message]
    context_id: str | None
    inp: ChatInput
    recall: Recall | None = None  # older turns brought back by retrieval (rhetor.context.retrieval)
    ticket: Ticket | None = None  # its budget reservation and cache slot (rhetor.governance.gate)

    def input_estimate(self) -> int:
        """Rhetor's estimate of the input tokens, for a usage record whose upstream gave no usage."""
        return estimate_input(self.system, [*self.history, *self.new_turn])


class StreamSession:
    """A committed stream: `events()` yields the answer; when it ends, however it ends, the meter is told and the
    turn recorded (a stream with a context)."""

    def __init__(self, prepared: Prepared, info: RunInfo, events: AsyncIterator[StreamEvent], *,
                 record: Callable[[Prepared, str, str], Awaitable[None]], drain: Drain, span: Any = None,
                 metered: Metered = NO_METER) -> None:
        self._prepared, self.info, self._events = prepared, info, events
        self._metered = metered  # the usage ledger's record of this request, told how the stream ended
        self._record, self._drain = record, drain  # the gateway's turn recorder; its open-stream registry
        self._span = span  # the request's rhetor.chat span (tracing on), ended with the stream
        self.context_id = prepared.context_id
        self.recall = prepared.recall
        target = info.target
        assert target is not None
        self.provider, self.model = target.provider, target.model
        self.simulated = target.provider == "simulated"
        self.notes = prepared.inp.notes
        self._expired = False
        self._waiter: asyncio.Task[Any] | None = None  # the task awaiting the upstream's next event, if any

    async def events(self) -> AsyncIterator[StreamEvent]:
        parts: list[str] = []
        status = "cancelled"
        end: StreamEnd | None = None
        # the meter's view (rhetor.governance.meter.Metered.streamed), watched here rather than by a generator of
        # its own around `source`: the first token's time, tool-call argument characters, an error's type
        first: float | None = None
        tool_chars = 0
        failure: str | None = None
        drain, source = self._drain, self._events
        drain.streams.add(self)
        ticket = self._prepared.ticket  # a completed stream is kept for the response cache when it asks
        kept: list[StreamEvent] | None = [] if ticket is not None and ticket.caching else None
        self._expired = self._expired or drain.expired
        try:
            while True:
                if self._expired:  # shutdown grace ran out (rhetor.drain): the final error frame, stored cancelled
                    if status == "cancelled":  # (not after the stream's own last event)
                        yield shutdown_error()
                    break
                self._waiter = task = this_task()  # (asyncio.current_task() asks the OS for the pid on 3.11)
                try:
                    event = await anext(source)
                except StopAsyncIteration:
                    break
                except asyncio.CancelledError:
                    # ours (expire) unless someone else cancelled too: then the task really is being stopped
                    if not self._expired or task is None or task.uncancel() > 0:
                        raise
                    continue
                finally:
                    self._waiter = None
                if isinstance(event, TextDelta):
                    parts.append(event.text)
                    if first is None:
                        first = time.perf_counter()
                elif isinstance(event, StreamEnd):
                    status, end = "complete", event
                elif isinstance(event, ToolCallDelta):
                    tool_chars += len(event.arguments)
                    if first is None:
                        first = time.perf_counter()
                elif isinstance(event, StreamError):
                    status, failure = "error", event.type
                if kept is not None:
                    kept.append(event)
                yield event
        except BaseException as exc:
            if status == "cancelled" and not isinstance(exc, GeneratorExit | asyncio.CancelledError):
                failure = status_of(exc)  # the upstream failed after commit: the ledger says how
            raise
        finally:
            drain.streams.discard(self)
            await _aclose(source)
            reply = "".join(parts)
            self._metered.streamed("ok" if end is not None else failure or "cancelled", end.usage if end else None,
                                   len(reply) + tool_chars, first)
            if ticket is not None:  # after the meter's record: the real cost replaces the reservation
                ticket.release()
                if kept is not None and status == "complete":
                    ticket.streamed(kept, self.info, self.simulated)
            if self.context_id is not None:  # a turn to persist: kill-safe (a stateless stream has none, no task)
                with chat_span.using(self._span):
                    await asyncio.shield(self._record(self._prepared, reply, status))
            chat_span.streamed(self._span, end, reply, status, self.info)

    def expire(self) -> None:
        """End the stream at shutdown: the upstream wait is cancelled and `events()` yields shutdown_error()."""
        self._expired = True
        if self._waiter is not None:
            self._waiter.cancel("rhetor shutdown: grace period over")


async def _aclose(gen: AsyncIterator[Any]) -> None:
    close = getattr(gen, "aclose", None)
    if close is not None:
        await close()


__all__ = ["ChatInput", "ChatOutcome", "Prepared", "StreamSession", "now_iso"]
