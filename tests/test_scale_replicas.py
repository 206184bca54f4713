"""Two real Rhetor replicas (`python -m rhetor` on two ports, two data dirs) sharing one PostgreSQL schema and one
Redis prefix: a conversation continued across replicas, a key created and revoked on one honoured by the other
within a second, one global rate limit, one global budget, a breaker opened on one skipping the target on the
other, a template made on one used by the other's next request; and an unreachable engine at start exits 2
naming its URL without the password. Time-bounded: the whole file runs in well under 60 s (marked `scale`)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.fakes.openai import running_fake_openai
from tests.fakes.server import free_port

pytestmark = pytest.mark.scale  # real replicas on real PostgreSQL and Redis: CI runs them (.ci/run has both)

ADMIN = "admin-secret-for-scale-tests"
FAKES: dict[str, Any] = {}  # the module's fake upstreams, for the tests to script


def _start(tmp: Path, name: str, extra: dict[str, str]) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    data = tmp / name
    data.mkdir()
    env = {**os.environ, "RHETOR_DATA_DIR": str(data), "RHETOR_PORT": str(port), "RHETOR_ADMIN_KEY": ADMIN,
           "RHETOR_SIMULATED_DELAY_SCALE": "0", "RHETOR_KEYS_POLL_S": "0.2", "RHETOR_USAGE_LEDGER": "0", **extra}
    log = (tmp / f"{name}.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "rhetor"], env=env, stdout=log, stderr=subprocess.STDOUT)
    return f"http://127.0.0.1:{port}", proc


def _wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, "rhetor exited at start"
        try:
            if httpx.get(f"{url}/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "rhetor did not start"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, postgres_server: str,
             redis_server: str) -> Iterator[list[str]]:
    """One pair for the whole module (starting two replicas is most of this file's time): its own schema and key
    prefix, both dropped afterwards; a fake OpenAI behind the `flaky` task (openai first, then the simulated
    provider), breakers opening at the first failure."""
    pytest.importorskip("asyncpg")
    pytest.importorskip("redis")
    import redis

    from tests.engines import _drop_schema

    tmp = tmp_path_factory.mktemp("replicas")
    schema, prefix = "rhetor_t_" + secrets.token_hex(6), "rhetor-t-" + secrets.token_hex(6) + ":"
    pg_url = f"{postgres_server}{'&' if '?' in postgres_server else '?'}schema={schema}"
    tasks = tmp / "tasks.json"
    tasks.write_bytes(orjson.dumps({
        "default": {"targets": [{"provider": "simulated", "model": "simulated-fast"}]},
        "flaky": {"targets": [{"provider": "openai", "model": "gpt-4o", "retries": 0}], "simulated_fallback": True},
    }))
    with running_fake_openai() as fake:
        extra = {"RHETOR_DATABASE_URL": pg_url, "RHETOR_REDIS_URL": redis_server, "RHETOR_REDIS_PREFIX": prefix,
                 "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": fake.base_url, "RHETOR_TASK_CONFIG": str(tasks),
                 "RHETOR_BREAKER_THRESHOLD": "1", "RHETOR_BREAKER_COOLDOWN_S": "30"}
        started = [_start(tmp, n, extra) for n in ("a", "b")]
        try:
            for url, proc in started:
                _wait(url, proc)
            FAKES["openai"] = fake
            yield [url for url, _ in started]
        finally:
            for _, proc in started:
                proc.terminate()
            for _, proc in started:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
            _drop_schema(postgres_server, schema)
            client = redis.Redis.from_url(redis_server)
            keys = list(client.scan_iter(match=prefix + "*", count=500))
            if keys:
                client.delete(*keys)
            client.close()


def _chat(url: str, key: str, **body: object) -> httpx.Response:
    return httpx.post(url + "/api/v1/chat", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=15)


def _admin(url: str, method: str, path: str, body: dict[str, object] | None = None) -> httpx.Response:
    return httpx.request(method, url + path, json=body, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)


def test_replicas_share_contexts_keys_and_one_rate_limit(replicas: list[str]) -> None:
    a, b = replicas
    health = httpx.get(b + "/health", headers={"Authorization": f"Bearer {ADMIN}"}).json()["details"]["storage"]
    assert health["database"]["backend"] == "postgres" and "rate limits" in health["shared"]

    # A key created on A works on B (B's poller reads the shared generation). Until B has read it, B is still
    # the open Rhetor it was (no key existed anywhere): it answers without knowing the caller, so without limits.
    made = _admin(a, "POST", "/api/v1/keys", {"name": "ergon", "rpm": 5}).json()
    secret, key_id = made["secret"], made["key"]["id"]
    deadline = time.monotonic() + 1.5
    while "x-ratelimit-limit-requests" not in (r := _chat(b, secret, message="first", context_id="ergon:s")).headers:
        assert time.monotonic() < deadline, "B did not see the key created on A within a second"
        time.sleep(0.05)
    assert r.status_code == 200, r.text

    # The conversation continues on the other replica: B wrote the first turn, A adds the second, B reads both.
    assert _chat(a, secret, message="second", context_id="ergon:s").status_code == 200
    stored = _admin(b, "GET", "/api/v1/contexts/ergon:s").json()
    contents = [m["content"] for m in stored["messages"] if m["role"] == "user"]
    assert contents[-2:] == ["first", "second"]  # (open-door tries before B knew the key are turns too)

    # One global limit: 5 requests per minute across both replicas (2 used above).
    codes = [_chat(url, secret, message="x").status_code for url in (a, b, a, b)]
    assert codes == [200, 200, 200, 429], codes

    # A key revoked on A is refused by B within a second.
    assert _admin(a, "DELETE", f"/api/v1/keys/{key_id}").status_code == 200
    revoked_at = time.monotonic()
    while _chat(b, secret, message="after").status_code != 401:
        assert time.monotonic() - revoked_at < 1.0, "B still accepted a key revoked on A after a second"
        time.sleep(0.05)


def _within(seconds: float, check: object, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_one_global_budget_across_replicas(replicas: list[str]) -> None:
    a, b = replicas
    # A block budget of tokens made on A: B hears of it on the change bus and reads it from PostgreSQL.
    made = _admin(a, "POST", "/api/v1/budgets", {"id": "team", "scope": "component", "target": "budgeted",
                                                  "daily_tokens": 1500, "policy": "block"})
    assert made.status_code == 201, made.text
    _within(1.0, lambda: _admin(b, "GET", "/api/v1/budgets/team").status_code == 200,
            "B did not learn the budget made on A within a second")
    # Alternate replicas until one refuses: each replica alone would admit up to the whole budget (2x in total)
    codes: list[int] = []
    while len(codes) < 200 and (not codes or codes[-1] == 200):
        codes.append(_chat((a, b)[len(codes) % 2], ADMIN, message="spend some tokens " * 20,
                           component="budgeted").status_code)
    assert codes[-1] == 429, codes
    admitted = len(codes) - 1
    status = _admin(a, "GET", "/api/v1/budgets/team").json()["periods"]["daily"]
    per_request = status["tokens"] / admitted
    assert 1500 <= status["tokens"] <= 1500 + 2 * per_request, status  # crossed once, by at most one in flight
    for url in (a, b):  # refused on both replicas now, naming the budget
        refused = _chat(url, ADMIN, message="more", component="budgeted")
        assert refused.status_code == 429 and "team" in refused.text
    assert _chat(b, ADMIN, message="another component").status_code == 200  # the budget caps only its own


def test_breaker_opened_on_one_replica_is_skipped_on_the_other(replicas: list[str]) -> None:
    a, b = replicas
    fake = FAKES["openai"]
    fake.fail_next(503, n=50)
    before = len(fake.requests)
    first = _chat(a, ADMIN, message="hello", task_type="flaky")  # openai answers 503: A opens its breaker
    assert first.status_code == 200 and first.json()["provider"] == "simulated", first.text
    assert len(fake.requests) == before + 1

    def open_on_b() -> bool:
        listed = _admin(b, "GET", "/api/v1/providers").json()["providers"]["openai"]["breakers"]
        return bool(listed.get("openai/gpt-4o", {}).get("state") == "open")

    _within(1.0, open_on_b, "B did not see the breaker A opened within a second")
    second = _chat(b, ADMIN, message="hello again", task_type="flaky")  # B skips openai without calling it
    assert second.status_code == 200 and second.json()["provider"] == "simulated", second.text
    assert len(fake.requests) == before + 1, "B called the upstream whose breaker A opened"


def test_template_made_on_one_replica_is_used_by_the_other(replicas: list[str]) -> None:
    a, b = replicas
    made = _admin(a, "POST", "/api/v1/templates", {"id": "greet", "text": "Hello {{ name }}, from A",
                                                   "variables": {"name": "string"}})
    assert made.status_code in (200, 201), made.text
    rendered = _admin(b, "POST", "/api/v1/templates/greet/render", {"variables": {"name": "B"}})
    assert rendered.status_code == 200 and "Hello B, from A" in rendered.text, rendered.text
    changed = _admin(a, "PUT", "/api/v1/templates/greet", {"text": "Bye {{ name }}"})
    assert changed.status_code == 200, changed.text
    _within(1.0, lambda: "Bye B" in _admin(b, "POST", "/api/v1/templates/greet/render",
                                           {"variables": {"name": "B"}}).text,
            "B did not serve A's new template version within a second")
    health = httpx.get(b + "/health", headers={"Authorization": f"Bearer {ADMIN}"}).json()["details"]["storage"]
    assert "budget spend counters" in health["shared"] and "breakers and cool-downs" in health["shared"]
    assert health["redis_shared"]["change_bus"]["state"] == "listening"


def test_config_reload_on_one_replica_reaches_the_other(replicas: list[str]) -> None:
    a, b = replicas
    before = _admin(b, "GET", "/api/v1/admin/reload").json()["generation"]
    done = _admin(a, "POST", "/api/v1/admin/reload")
    assert done.status_code == 200, done.text
    _within(1.0, lambda: _admin(b, "GET", "/api/v1/admin/reload").json()["generation"] > before,
            "B did not reload when A announced its reload on the change bus")


def test_unreachable_postgres_at_start_exits_2_naming_the_url_without_password(tmp_path: Path) -> None:
    pytest.importorskip("asyncpg")
    env = {**os.environ, "RHETOR_DATA_DIR": str(tmp_path), "RHETOR_PORT": str(free_port()),
           "RHETOR_DATABASE_URL": f"postgresql://rhetor:hunter2@127.0.0.1:{free_port()}/rhetor"}
    done = subprocess.run([sys.executable, "-m", "rhetor"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "cannot connect to PostgreSQL at postgresql://rhetor:***@127.0.0.1:" in done.stderr
    assert "hunter2" not in done.stderr and "RHETOR_DEGRADED_START=1" in done.stderr
