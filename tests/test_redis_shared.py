"""Shared state on a real Redis, two "processes" in one test (two clients, two of each part): the change bus, the
breaker mirror, budget spend and reservations, and the response cache — each shared, and each falling back to
per-process state (then reconciling) when Redis is unreachable."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from rhetor.errors import BudgetExceededError
from rhetor.governance.budgets import GLOBAL, BudgetBook, parse_budget
from rhetor.governance.cache import CachedReply, reply_size
from rhetor.routing.breaker import CircuitBreaker
from rhetor.routing.cooldown import Cooldowns
from rhetor.types import ChatResponse, RawFrame, StreamEnd, TextDelta, ToolCallDelta, Usage
from tests.fakes.server import free_port
from tests.fakes.tcp_cut import CutRelay

pytest.importorskip("redis")


async def _until(check: Callable[[], bool], within: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "not seen in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def clients(redis_prefix: tuple[str, str]) -> AsyncIterator[tuple[Any, Any, str, str]]:
    from redis.asyncio import Redis

    url, prefix = redis_prefix
    a = Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    b = Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    yield a, b, url, prefix
    await a.aclose()
    await b.aclose()


async def test_bus_tells_the_others_not_itself_and_coalesces_refreshes(clients: tuple[Any, Any, str, str]) -> None:
    from rhetor.storage.redis_bus import RedisBus

    ca, cb, url, prefix = clients
    a, b = RedisBus(ca, prefix, url), RedisBus(cb, prefix, url)
    heard_a: list[dict[str, Any]] = []
    heard_b: list[dict[str, Any]] = []
    a.subscribe("breaker", heard_a.append)
    b.subscribe("breaker", heard_b.append)
    runs = 0
    gate = asyncio.Event()

    async def reload(data: dict[str, Any]) -> None:
        nonlocal runs
        runs += 1
        await gate.wait()

    b.subscribe("templates", reload)
    a.start()
    b.start()
    await _until(lambda: a.listening and b.listening)
    a.publish("breaker", {"op": "open", "p": "openai", "m": "gpt"})
    await _until(lambda: len(heard_b) == 1)
    assert heard_b[0]["p"] == "openai" and heard_a == []  # a process ignores its own notes
    for _ in range(5):  # five changes while B's reload runs: one more reload afterwards, not five
        a.publish("templates")
    await _until(lambda: runs == 1)
    await asyncio.sleep(0.2)
    gate.set()
    await _until(lambda: runs == 2)
    await asyncio.sleep(0.1)
    assert runs == 2 and b.status()["state"] == "listening" and b.status()["received"] >= 6
    await a.close()
    await b.close()


async def test_breaker_opened_on_one_process_is_open_on_the_other(clients: tuple[Any, Any, str, str]) -> None:
    from rhetor.storage.redis_breakers import BreakerMirror
    from rhetor.storage.redis_bus import RedisBus

    ca, cb, url, prefix = clients
    sides = []
    for client in (ca, cb):
        bus, breaker, cool = RedisBus(client, prefix, url), CircuitBreaker(2, 1.0), Cooldowns()
        mirror = BreakerMirror(client, prefix, bus, breaker, cool)
        mirror.attach()
        bus.start()
        sides.append((bus, breaker, cool, mirror))
    (bus_a, br_a, cool_a, m_a), (bus_b, br_b, cool_b, _) = sides
    await _until(lambda: bus_a.listening and bus_b.listening)
    key = ("openai", "gpt-x")
    br_a.record_failure(key)
    br_a.record_failure(key)  # opens on A
    assert br_a.state(key) == "open"
    await _until(lambda: br_b.state(key) == "open")
    assert not br_b.allow(key) and br_b.snapshot()["openai/gpt-x"]["opened_by"] == "replica"
    cool_a.note(("anthropic", "claude"), 20.0)  # a Retry-After on A: B skips that target too
    await _until(lambda: cool_b.remaining(("anthropic", "claude")) > 19)

    # A third process starting now reads what is still open from Redis (TTL on Redis's clock)
    bus_c, br_c, cool_c = RedisBus(ca, prefix, url), CircuitBreaker(2, 1.0), Cooldowns()
    m_c = BreakerMirror(ca, prefix, bus_c, br_c, cool_c)
    await m_a.drain()
    await m_c.load()
    assert br_c.state(key) == "open" and 19 < cool_c.remaining(("anthropic", "claude")) <= 20

    # After the cool-down B lets one trial through; it succeeds: closed on A too (A is half-open, not closed)
    await _until(lambda: br_b.state(key) == "half_open")
    assert br_b.allow(key) and br_a.state(key) == "half_open"
    br_b.record_success(key)
    await _until(lambda: br_a.state(key) == "closed")
    for bus, *_ in sides:
        await bus.close()


async def _book(client: Any, url: str, prefix: str, definition: dict[str, Any], lease_s: float = 600.0) -> Any:
    from rhetor.storage.redis_budgets import RedisSpend

    spend = RedisSpend(client, prefix, url, lease_s=lease_s)
    book = BudgetBook(shared=spend)
    book.put(parse_budget(definition))
    return book, spend


class _Rec:
    def __init__(self, cost: float, ts: float, tokens: int = 10) -> None:
        self.cost_usd, self.ts, self.input_tokens, self.output_tokens = cost, ts, tokens, 0
        self.component = self.key_id = self.task_type = None


async def test_one_block_budget_across_processes_overshoots_by_at_most_those_in_flight(
        clients: tuple[Any, Any, str, str]) -> None:
    import time

    ca, cb, url, prefix = clients
    definition = {"id": "g", "daily_usd": 1.0, "policy": "block"}
    (a, spend_a), (b, spend_b) = [await _book(c, url, prefix, definition) for c in (ca, cb)]
    applicable_a, applicable_b = a.applicable(None, None, None), b.applicable(None, None, None)

    async def one(book: BudgetBook, applicable: Any) -> Any:
        try:
            return await book.reserve(applicable, 0.3, 10)
        except BudgetExceededError:
            return None

    got = await asyncio.gather(*(one(*pair) for pair in [(a, applicable_a), (b, applicable_b)] * 5))
    admitted = [x for x in got if x is not None]
    assert len(admitted) == 4  # 0.3 held each: the 4th sees 0.9 < 1.0, the 5th 1.2 — on either process
    for adm in admitted:  # each request really cost 0.2: its real cost replaces its estimate
        a.record(_Rec(0.2, time.time()))
        adm.hold.release()
    await _until(lambda: spend_a.settled and spend_b.settled)
    await a.refresh()
    status = a.status(a.budgets["g"])["periods"]["daily"]
    assert status["spent_usd"] == pytest.approx(0.8) and status["in_flight_usd"] == 0
    in_flight = await a.reserve(applicable_a, 0.3, 10)  # 0.8 < 1: admitted (held while this reference lives)
    assert in_flight.hold is not None
    with pytest.raises(BudgetExceededError, match=re.escape("limit $1.0000, spent $0.8000 + $0.3000 in flight")):
        await b.reserve(applicable_b, 0.3, 10)  # 0.8 + 0.3 held by A's request >= 1: refused on B
    in_flight.hold.release()
    await spend_a.drain()
    await spend_b.drain()


async def test_a_dead_replicas_holds_expire_with_their_lease(clients: tuple[Any, Any, str, str]) -> None:
    ca, cb, url, prefix = clients
    definition = {"id": "g", "daily_usd": 1.0, "policy": "block"}
    (a, _), (b, _) = [await _book(c, url, prefix, definition, lease_s=0.3) for c in (ca, cb)]
    held = await a.reserve(a.applicable(None, None, None), 1.0, 10)  # "A" dies holding it: never released
    assert held.hold is not None
    held.hold.id = ""  # (what a kill -9 does: nobody will ever release it)
    with pytest.raises(BudgetExceededError):
        await b.reserve(b.applicable(None, None, None), 0.1, 10)
    await asyncio.sleep(0.4)
    assert (await b.reserve(b.applicable(None, None, None), 0.1, 10)).hold is not None  # the lease freed it


async def test_redis_lost_budgets_count_locally_then_reconcile_and_the_bus_resyncs(
        clients: tuple[Any, Any, str, str]) -> None:
    import time

    from redis.asyncio import Redis

    from rhetor.storage.redis_bus import RedisBus

    ca, _, url, prefix = clients
    relay = CutRelay(url)
    await relay.start()
    client = Redis.from_url(relay.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    definition = {"id": "g", "daily_usd": 1.0, "policy": "block"}
    book, spend = await _book(client, url, prefix, definition)
    bus = RedisBus(client, prefix, url)
    resynced: list[dict[str, Any]] = []
    bus.subscribe("budgets", resynced.append)
    bus.start()
    await _until(lambda: bus.listening)
    await book.refresh()  # (as Spending does at start: the budget's windows exist, so spend is tracked)
    book.record(_Rec(0.5, time.time()))
    await _until(lambda: spend.settled)
    await book.refresh()  # the mirror holds 0.5 spent
    assert book.counters.window(GLOBAL, "daily", time.time()).usd == pytest.approx(0.5)

    await relay.cut()  # Redis lost while running
    adm = await book.reserve(book.applicable(None, None, None), 0.3, 10)  # judged locally: 0.5 < 1
    assert not spend.shared and adm.hold is not None and spend.status()["state"].startswith("per-process")
    adm2 = await book.reserve(book.applicable(None, None, None), 0.3, 10)  # 0.5 + 0.3 held < 1
    with pytest.raises(BudgetExceededError):  # 0.5 (spent before, in the mirror) + 0.6 held >= 1
        await book.reserve(book.applicable(None, None, None), 0.3, 10)
    for done in (adm, adm2):
        assert done.hold is not None
        done.hold.release()
    book.record(_Rec(0.25, time.time()))  # spent while Redis is away: parked for reconciliation
    await _until(lambda: spend.status().get("unreconciled", {}).get("windows") == 3)
    await _until(lambda: not bus.listening)

    await relay.restore()  # back: the parked spend reaches the shared windows, the bus re-reads
    await _until(lambda: spend.settled and spend.shared and bus.listening, within=6)
    await _until(lambda: any(d.get("resync") for d in resynced))
    other, _ = await _book(ca, url, prefix, definition)  # another process sees 0.75 spent
    await other.refresh()
    assert other.status(other.budgets["g"])["periods"]["daily"]["spent_usd"] == pytest.approx(0.75)
    await bus.close()
    await spend.drain()
    await client.aclose()
    await relay.cut()


def _reply(text: str) -> CachedReply:
    response = ChatResponse(text, "m", "simulated", usage=Usage(3, 4), simulated=True, raw=b"\x00raw")
    events = (TextDelta(text), ToolCallDelta(0, "c1", "f", "{}"), RawFrame(b"data: x\n\n"),
              StreamEnd("stop", Usage(3, 4), "m"))
    return CachedReply(response, events, size=reply_size(response, events))


async def test_cache_is_shared_expires_and_stays_within_its_bound(clients: tuple[Any, Any, str, str]) -> None:
    from rhetor.storage.redis_cache import RedisCache

    ca, cb, url, prefix = clients
    a = RedisCache(ca, prefix, url, ttl_s=0.5, max_bytes=8000)
    b = RedisCache(cb, prefix, url, ttl_s=0.5, max_bytes=8000)
    a.put("k1", _reply("hello"))
    await a.drain()
    hit = await b.lookup("k1")  # stored by A, served by B, events and bytes intact
    assert hit is not None and hit.response.content == "hello" and hit.response.raw == b"\x00raw"
    assert hit.events is not None and isinstance(hit.events[2], RawFrame) and hit.events[2].data == b"data: x\n\n"
    assert isinstance(hit.events[3], StreamEnd) and hit.events[3].usage.output_tokens == 4
    await asyncio.sleep(0.6)
    assert await b.lookup("k1") is None  # past its TTL
    for i in range(12):  # ~1,100 bytes each against an 8,000-byte bound: the oldest go
        a.put(f"n{i}", _reply("x" * 300))
        await a.drain()
    total = int(await ca.get(f"{prefix}{{cache}}:bytes"))
    assert total <= 8000 and a.evicted > 0
    assert await b.lookup("n11") is not None and await b.lookup("n0") is None


async def test_cache_without_redis_serves_from_this_process() -> None:
    from redis.asyncio import Redis

    from rhetor.storage.redis_cache import RedisCache

    url = f"redis://:pw@127.0.0.1:{free_port()}/0"
    dead = Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    cache = RedisCache(dead, "p:", url, ttl_s=60, max_bytes=10_000)
    assert await cache.lookup("k") is None and not cache.shared
    cache.put("k", _reply("local"))
    found = await cache.lookup("k")
    assert found is not None and found.response.content == "local"
    assert cache.status()["state"].startswith("per-process")
    await dead.aclose()


async def test_the_ledgers_spend_is_seeded_into_the_shared_windows_once(clients: tuple[Any, Any, str, str],
                                                                       tmp_path: Any) -> None:
    import time

    from rhetor.governance.ledger import Ledger, UsageRecord
    from rhetor.governance.prices import load_prices
    from rhetor.governance.spending import Spending
    from rhetor.governance.sqlite_store import SqliteLedgerStore
    from rhetor.settings import Settings
    from rhetor.storage.redis_budgets import RedisSpend

    ca, cb, url, prefix = clients
    ledger = Ledger(SqliteLedgerStore(tmp_path / "usage.db"), flush_interval_s=0.05)
    await ledger.start()
    ledger.record(UsageRecord(ts=time.time() - 5, request_id=None, key_id="anonymous", component=None,
                              task_type=None, front="native", provider="openai", model="gpt-4o", cost_usd=0.4))
    await ledger.flush()
    budget = parse_budget({"id": "g", "daily_usd": 1.0, "policy": "block"})
    replicas = []
    for client in (ca, cb):  # two replicas start on the same ledger (PostgreSQL in production)
        spending = Spending(Settings(data_dir=tmp_path), load_prices(), shared=RedisSpend(client, prefix, url))
        spending.ledger = ledger
        spending.book.put(budget)
        await spending._seed([GLOBAL])
        replicas.append(spending)
    for spending in replicas:  # 0.4 once, not once per replica
        await spending.book.refresh()
        assert spending.book.status(budget)["periods"]["daily"]["spent_usd"] == pytest.approx(0.4)
    await ledger.close()
