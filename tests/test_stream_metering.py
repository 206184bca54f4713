"""The meter's view of a stream, kept by StreamSession.events (rhetor.session) and recorded once by
Metered.streamed (rhetor.governance.meter): status, tokens (given or estimated), time to the first token; and a
stateless stream ends without a record task. No network: the stream's events come from a local generator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from rhetor.drain import Drain
from rhetor.errors import UpstreamProtocolError
from rhetor.governance.ledger import UsageRecord
from rhetor.governance.meter import Meter
from rhetor.governance.prices import PriceTable
from rhetor.routing.fallback import RunInfo
from rhetor.routing.router import Route, Target
from rhetor.session import ChatInput, Prepared, StreamSession
from rhetor.types import Message, StreamEnd, StreamError, StreamEvent, TextDelta, ToolCallDelta, Usage


class _Sink:
    def __init__(self) -> None:
        self.records: list[UsageRecord] = []

    def record(self, rec: UsageRecord) -> None:
        self.records.append(rec)


async def _run(events: Sequence[StreamEvent | BaseException], *, context_id: str | None = None,
               stop_after: int | None = None) -> tuple[list[UsageRecord], list[str]]:
    sink, recorded = _Sink(), []
    target = Target("openai", "gpt-x")
    info = RunInfo([], target)
    inp = ChatInput(message="hi", context_id=context_id)
    prepared = Prepared(Route("default", None, "chat", (target,), {}), None, [], [Message("user", "hi")],
                        context_id, inp)
    metered = Meter(sink, PriceTable({})).start("openai", "r-1", None, None, "chat", context_id, info,
                                                inp.started, lambda: 7, "openai", "gpt-x")

    async def source() -> AsyncIterator[StreamEvent]:
        for event in events:
            if isinstance(event, BaseException):
                raise event
            yield event

    async def record(_: Prepared, reply: str, status: str) -> None:
        recorded.append(f"{status}:{reply}")

    session = StreamSession(prepared, info, source(), record=record, drain=Drain(), metered=metered)
    gen = session.events()
    seen = 0
    try:
        async for _ in gen:
            seen += 1
            if stop_after is not None and seen >= stop_after:
                break
    except UpstreamProtocolError:
        pass
    finally:
        await gen.aclose()  # type: ignore[attr-defined]
    return sink.records, recorded


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_complete_stream_is_recorded_once_with_its_usage_and_first_token() -> None:
    records, recorded = run(_run([TextDelta("Hel"), TextDelta("lo"), StreamEnd("stop", Usage(3, 2), "gpt-x")]))
    (rec,) = records
    assert (rec.status, rec.input_tokens, rec.output_tokens, rec.estimated) == ("ok", 3, 2, False)
    assert rec.ttft_ms is not None and rec.ttft_ms <= rec.latency_ms
    assert recorded == []  # stateless: no turn to record


def test_a_failure_after_commit_is_recorded_with_its_type_and_estimated_tokens() -> None:
    failure = UpstreamProtocolError("cut", provider="openai", model="gpt-x")
    records, _ = run(_run([ToolCallDelta(0, "c", "f", "x" * 8), failure]))
    (rec,) = records
    assert (rec.status, rec.input_tokens, rec.output_tokens, rec.estimated) == (failure.type, 7, 2, True)
    assert rec.ttft_ms is not None


@pytest.mark.parametrize(("events", "stop_after", "status"), [
    ([TextDelta("a"), StreamError("boom", "upstream_error")], None, "upstream_error"),
    ([TextDelta("abcd"), TextDelta("more")], 1, "cancelled"),
])
def test_an_error_event_or_a_cut_stream_says_so(events: list[StreamEvent], stop_after: int | None,
                                               status: str) -> None:
    records, _ = run(_run(events, stop_after=stop_after))
    (rec,) = records
    assert (rec.status, rec.output_tokens, rec.estimated) == (status, 1, True)


def test_a_stream_with_a_context_records_its_turn() -> None:
    _, recorded = run(_run([TextDelta("ok"), StreamEnd("stop", Usage(1, 1), "gpt-x")], context_id="c-1"))
    assert recorded == ["complete:ok"]


def test_records_of_one_attempt_share_its_list_and_latency_keeps_three_decimals() -> None:
    """The meter hands records of the same single attempt one shared `attempts` list (never changed after),
    and rounds latencies to the microsecond without round()."""
    import time as _time

    from rhetor.governance.meter import Meter, _ms
    from rhetor.governance.prices import load_prices
    from rhetor.routing.fallback import Attempt, RunInfo
    from rhetor.routing.router import Target
    from rhetor.types import ChatResponse, Usage

    got: list = []

    class Sink:
        def record(self, rec: object) -> None:
            got.append(rec)

    meter = Meter(Sink(), load_prices())
    for outcome in ("ok", "ok", "error"):
        info = RunInfo(attempts=[Attempt("openai", "gpt-4o-mini", outcome, error_type="x" if outcome != "ok"
                                         else None)], target=Target("openai", "gpt-4o-mini"))
        meter.start("openai", None, None, None, None, "ctx-1", info, _time.perf_counter(), lambda: 1).answered(
            ChatResponse(content="hi", model="gpt-4o-mini", provider="openai", usage=Usage(10, 5)))
    assert got[0].attempts == [{"provider": "openai", "model": "gpt-4o-mini", "outcome": "ok"}]
    assert got[0].attempts is got[1].attempts and got[2].attempts is not got[0].attempts
    assert got[2].attempts == [{"provider": "openai", "model": "gpt-4o-mini", "outcome": "error", "error_type": "x"}]
    assert got[0].context_id == "ctx-1" and got[0].cost_usd > 0 and not got[0].unpriced
    assert _ms(0.0123456) == 12.346 and _ms(0.0) == 0.0 and _ms(1.5) == 1500.0
