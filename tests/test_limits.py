"""Rate limits, without a server: the sliding window of the in-process limiter (RPM and TPM with reservations),
OpenAI's x-ratelimit-* headers and Retry-After, and the key definitions' validation (400 naming the field)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from rhetor.errors import ConfigError, InvalidRequestError
from rhetor.governance.keys import Identity, KeyRing, parse_spec
from rhetor.governance.limits import InProcessLimiter, duration
from rhetor.routing.router import Target
from rhetor.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def headers(v: object) -> dict[str, str]:
    return {k.decode(): val.decode() for k, val in v.headers}  # type: ignore[attr-defined]


def test_rpm_is_a_sliding_minute_with_openai_headers() -> None:
    clock = Clock()
    lim = InProcessLimiter(clock)
    seen = [lim.check("k", 3, None, 0) for _ in range(3)]
    assert all(v.allowed for v in seen)
    assert [headers(v)["x-ratelimit-remaining-requests"] for v in seen] == ["2", "1", "0"]
    assert headers(seen[0])["x-ratelimit-limit-requests"] == "3"
    clock.now += 20.5
    refused = lim.check("k", 3, None, 0)
    assert not refused.allowed and refused.exceeded == "requests" and refused.limit == 3
    h = headers(refused)
    assert h["retry-after"] == "40" and h["retry-after-ms"] == "39500"  # the first request leaves at 1060
    assert h["x-ratelimit-reset-requests"] == "40s" and h["x-ratelimit-remaining-requests"] == "0"
    assert "3 requests per minute" in refused.message("key 'ci'")
    clock.now += 39.6  # 1060.1: the three requests of second 1000 have left the window
    assert lim.check("k", 3, None, 0).allowed
    assert lim.check("other", 3, None, 0).allowed  # subjects are apart


def test_tpm_counts_reservations_then_real_usage() -> None:
    clock = Clock()
    lim = InProcessLimiter(clock)
    first = lim.check("k", None, 100, 30)
    assert first.allowed and first.reserved == 30
    assert headers(first)["x-ratelimit-remaining-tokens"] == "70"
    second = lim.check("k", None, 100, 60)  # 30 + 60 <= 100
    assert second.allowed
    third = lim.check("k", None, 100, 20)  # 90 reserved: 110 > 100
    assert not third.allowed and third.exceeded == "tokens"
    assert headers(third)["retry-after"] == "1"  # only reservations in the way: they end soon
    lim.release("k", 30)
    lim.consume("k", 45)  # the first request really used 45
    lim.release("k", 60)
    lim.consume("k", 50)
    refused = lim.check("k", None, 100, 10)  # 95 used + 10 > 100
    assert not refused.allowed and headers(refused)["x-ratelimit-remaining-tokens"] == "5"
    clock.now += 61
    assert lim.check("k", None, 100, 10).allowed
    lone = InProcessLimiter(clock).check("big", None, 100, 500)  # an empty window admits one big request
    assert lone.allowed


def test_reset_durations_in_openais_format() -> None:
    assert [duration(x) for x in (0, 0.02, 1, 6.2, 60, 360)] == ["0s", "20ms", "1s", "7s", "1m0s", "6m0s"]


def test_window_memory_is_constant() -> None:
    clock = Clock()
    lim = InProcessLimiter(clock)
    for _ in range(5000):
        clock.now += 0.05
        lim.check("k", 10**6, 10**9, 3)
        lim.release("k", 3)
        lim.consume("k", 3)
    window = lim._subjects["k"].requests
    assert len(window.counts) == 60 and window.total == 1200  # 60 s * 20 requests/s


@pytest.mark.parametrize(("body", "param"), [
    ({"name": "ok", "rpm": 0}, "rpm"),
    ({"name": "ok", "tpm": "many"}, "tpm"),
    ({"name": "ok", "colour": "red"}, "colour"),
    ({"name": "ok", "allowed_routes": ["v1/*"]}, "allowed_routes"),
    ({"name": "ok", "component": "Ergon!"}, "component"),
    ({"name": "ok", "expires_at": "next tuesday"}, "expires_at"),
    ({"name": "ok", "expires_at": time.time() - 5}, "expires_at"),
    ({"name": "ok", "cache": "always"}, "cache"),
    ({"name": "ok", "allowed_models": "gpt-4o"}, "allowed_models"),
    ({"rpm": 5}, "name"),
    ({"name": ""}, "name"),
])
def test_bad_key_definitions_name_the_field(body: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequestError) as exc:
        parse_spec(body, creating=True)
    assert exc.value.param == param and exc.value.status == 400
    assert exc.value.message.startswith(param)


def test_identity_allows_models_and_routes() -> None:
    who = Identity("key_1", "ci", allowed_models=("anthropic/*", "gpt-4o-mini"), allowed_routes=("/v1/*",))
    assert who.allows("anthropic", "claude-haiku-4-5") and who.allows("openai", "gpt-4o-mini")
    assert not who.allows("openai", "gpt-4o")
    assert who.permitted([Target("openai", "gpt-4o"), Target("anthropic", "x")]) == (Target("anthropic", "x"),)
    with pytest.raises(Exception, match="may not use openai/gpt-4o") as exc:
        who.permitted([Target("openai", "gpt-4o")])
    assert getattr(exc.value, "status", None) == 403
    assert who.allows_path("/v1/chat/completions") and not who.allows_path("/api/v1/chat")


def test_ring_resolves_static_admin_and_expired() -> None:
    ring = KeyRing(("static-one",), admin="the-admin")
    assert ring.required
    found = ring.resolve(b"static-one")
    assert found is not None and found[0].key_id.startswith("static-")
    admin = ring.resolve(b"the-admin")
    assert admin is not None and admin[0].key_id == "admin"
    assert ring.resolve(b"nope") is None
    assert not KeyRing((), admin="the-admin").required  # an admin key alone leaves callers open


def test_component_limits_setting() -> None:
    s = Settings.from_env({"RHETOR_COMPONENT_LIMITS": '{"Ergon": {"rpm": 60, "tpm": 1000}}'})
    assert s.component_limits == {"ergon": {"rpm": 60, "tpm": 1000}}
    with pytest.raises(ConfigError, match=r"ergon\.rps"):
        Settings.from_env({"RHETOR_COMPONENT_LIMITS": '{"ergon": {"rps": 1}}'})


async def test_key_store_polls_read_the_database_only_after_its_files_changed(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from rhetor.governance import keystore
    from rhetor.governance.keys import KeyRecord, digest

    monkeypatch.setattr(keystore, "RACY_NS", 0)  # timestamps trusted at once (the default waits 2 s)
    mine, theirs = keystore.SqliteKeyStore(tmp_path / "keys.db"), keystore.SqliteKeyStore(tmp_path / "keys.db")
    await mine.open()
    await theirs.open()
    try:
        first = await mine.generation()
        reads = 0
        run = mine._db.run

        async def counted(fn: Any) -> Any:
            nonlocal reads
            reads += 1
            return await run(fn)

        monkeypatch.setattr(mine._db, "run", counted)
        assert await mine.generation() == first and reads == 0  # nothing changed: no trip to the SQLite thread
        await theirs.create(KeyRecord(id="key_x", name="x", digest=digest(b"x"), hint="x", created_at=time.time()))
        assert await mine.generation() == first + 1 and reads == 1  # another process's write is read at once
        assert await mine.generation() == first + 1 and reads == 1
        monkeypatch.setattr(keystore, "RACY_NS", 10**18)  # a recently modified file is never trusted
        assert await mine.generation() == first + 1 and reads == 2
    finally:
        await mine.close()
        await theirs.close()


def test_ring_memo_of_resolved_secrets_never_outlives_a_key() -> None:
    from rhetor.governance.keys import KeyRecord, digest

    ring = KeyRing()
    rec = KeyRecord(id="key_m", name="m", digest=digest(b"secret-m"), hint="m", created_at=0.0)
    ring.load([rec])
    assert ring.resolve(b"secret-m") is not None and ring.resolve(b"secret-m") is not None  # the second: the memo
    ring.load([KeyRecord(id="key_m", name="m", digest=rec.digest, hint="m", created_at=0.0, revoked_at=1.0)])
    assert ring.resolve(b"secret-m") is None  # revoked: refused although its digest is remembered
    ring.load([KeyRecord(id="key_m", name="m", digest=rec.digest, hint="m", created_at=0.0,
                         spec={"expires_at": time.time() - 1})])
    assert ring.resolve(b"secret-m") is None  # expired
    assert ring.resolve(b"never-a-key") is None and b"never-a-key" not in ring._resolved  # unknown: not remembered
