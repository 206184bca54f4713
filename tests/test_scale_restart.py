"""Restarts under load, with two real Rhetor replicas (`python -m rhetor` on two fixed ports) sharing one PostgreSQL
schema and one Redis prefix, behind a tiny in-test round-robin balancer that, like a load balancer, sends a request
to the other replica when a connection is refused.

- A rolling restart (stop A gracefully, start A, stop B, start B) under continuous load: no request fails, and
  every acknowledged turn is in the shared contexts and in the shared usage ledger.
- `kill -9` of one replica under load: the other keeps serving; no acknowledged turn is lost. The ledger is written
  in batches every RHETOR_USAGE_FLUSH_S (rhetor.governance.ledger: "a kill -9 at most the last interval"), so it
  holds every request acknowledged by the survivor and every one the killed replica acknowledged before its last
  flush interval; the test checks exactly that bound.
Each request is its own context (`<phase>-<n>`), so a turn is found by id. Bounded: well under a minute."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.server import free_port

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "admin-secret-for-restart-tests"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
FLUSH_S = 0.2
PACE_S = 0.01  # between one client thread's requests


@dataclass
class Replica:
    name: str
    port: int
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "rhetor"], env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, cwd=ROOT)

    def wait_ready(self, timeout: float = 40.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None and self.proc.poll() is None, f"{self.name} exited at start"
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"{self.name} did not start"
            time.sleep(0.1)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)


@dataclass
class Balancer:
    """Round robin; a refused connection goes to the next replica (what any HTTP load balancer does). With
    `retry_reset`, so does a connection closed or reset before any byte of the answer: at a graceful stop a replica
    resets the connections still queued in its accept backlog and closes those it accepted whose request it has
    not read yet — requests it never started (HAProxy's `retry-on conn-failure empty-response`). Never after a
    kill -9, where a request cut that way may have been served."""

    replicas: list[Replica]
    retry_reset: bool = False
    turn: itertools.count[int] = field(default_factory=itertools.count)
    lock: threading.Lock = field(default_factory=threading.Lock)
    retried: int = 0
    resets: int = 0
    local: threading.local = field(default_factory=threading.local)

    def post(self, path: str, body: dict[str, Any]) -> tuple[Replica, httpx.Response]:
        with self.lock:
            first = next(self.turn)
        client = getattr(self.local, "client", None)
        if client is None:  # one client per thread, a new connection per request (as a balancer's upstream)
            client = self.local.client = httpx.Client(timeout=20, headers={"connection": "close"})
        for i in range(4 * len(self.replicas)):
            replica = self.replicas[(first + i) % len(self.replicas)]
            try:
                return replica, client.post(replica.url + path, json=body)
            except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
                empty = "reset" in str(exc).lower() or "without sending a response" in str(exc)
                if not (self.retry_reset and empty):
                    raise
                with self.lock:
                    self.resets += 1
            except httpx.ConnectError:
                with self.lock:
                    self.retried += 1
                if i % len(self.replicas) == len(self.replicas) - 1:
                    time.sleep(0.05)  # every replica refused: both restarting at once never happens here
        raise AssertionError("no replica accepted the connection")


@dataclass
class Load:
    """Client threads sending chats through the balancer until stopped; what was acknowledged, what failed."""

    lb: Balancer
    phase: str
    threads: int = 3
    acked: list[tuple[str, str, float]] = field(default_factory=list)  # (context id, replica, ack time)
    failed: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _n: itertools.count[int] = field(default_factory=itertools.count)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _run(self) -> None:
        while not self._stop.is_set():
            ctx = f"{self.phase}-{next(self._n)}"
            try:
                replica, r = self.lb.post("/api/v1/chat", {"message": f"turn {ctx}", "context_id": ctx})
            except Exception as exc:  # a connection cut mid-request: not acknowledged
                self.failed.append(f"{ctx}: {type(exc).__name__}: {exc}")
                continue
            if r.status_code == 200:
                self.acked.append((ctx, replica.name, time.monotonic()))
            else:
                self.failed.append(f"{ctx}: {r.status_code} {r.text[:200]}")
            time.sleep(PACE_S)  # steady load, not a CPU hog: the replicas restart on the same two cores

    def __enter__(self) -> Load:
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for t in self._workers:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(30)

    def wait_acks(self, n: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        target = len(self.acked) + n
        while len(self.acked) < target:
            assert time.monotonic() < deadline, f"load stalled at {len(self.acked)} acks ({self.failed[-3:]})"
            time.sleep(0.02)


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str, redis_prefix: tuple[str, str]) -> Iterator[list[Replica]]:
    redis_url, prefix = redis_prefix
    replicas = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "PROMETHEUS_MULTIPROC_DIR"}
        env.update(RHETOR_DATA_DIR=str(tmp_path / name), RHETOR_PORT=str(free_port()), RHETOR_ADMIN_KEY=ADMIN,
                   RHETOR_DATABASE_URL=pg_url, RHETOR_REDIS_URL=redis_url, RHETOR_REDIS_PREFIX=prefix,
                   RHETOR_SIMULATED_DELAY_SCALE="0", RHETOR_USAGE_FLUSH_S=str(FLUSH_S), RHETOR_HERMES="0",
                   RHETOR_SHUTDOWN_GRACE_S="5", OLLAMA_HOST="http://127.0.0.1:9", RHETOR_LOG_FORMAT="text",
                   RHETOR_ACCESS_LOG="0")
        replicas.append(Replica(name, int(env["RHETOR_PORT"]), env, tmp_path / f"{name}.log"))
    for r in replicas:
        r.start()
    try:
        for r in replicas:
            r.wait_ready()
        yield replicas
    finally:
        for r in replicas:
            if r.proc is not None and r.proc.poll() is None:
                r.proc.kill()
                r.proc.wait()


def stored_turns(url: str, contexts: list[str]) -> set[str]:
    """The contexts (of those asked) whose user turn and reply are both stored."""
    found = set()
    with httpx.Client(timeout=10, headers=AUTH) as c:
        for ctx in contexts:
            r = c.get(f"{url}/api/v1/contexts/{ctx}")
            if r.status_code == 200 and [m["role"] for m in r.json()["messages"]] == ["user", "assistant"]:
                found.add(ctx)
    return found


def ledger_contexts(url: str, phase: str) -> set[str]:
    found: set[str] = set()
    with httpx.Client(timeout=20, headers=AUTH) as c:
        for offset in itertools.count(0, 1000):
            page = c.get(f"{url}/api/v1/usage/requests", params={"limit": 1000, "offset": offset,
                                                                  "from": "1h"}).json()
            found |= {r["context_id"] for r in page["records"] if str(r.get("context_id", "")).startswith(phase)}
            if len(page["records"]) < 1000:
                return found
    return found


@pytest.mark.timeout(120)
def test_rolling_restart_under_load_fails_no_request(cluster: list[Replica]) -> None:
    a, b = cluster
    lb = Balancer([a, b], retry_reset=True)
    with Load(lb, "roll") as load:
        load.wait_acks(20)
        for replica in (a, b):
            assert replica.stop() == 0  # graceful: in-flight requests finish, new connections go to the other
            load.wait_acks(10)  # the other replica alone carries the load meanwhile
            replica.start()
            replica.wait_ready()
            load.wait_acks(10)
    assert load.failed == [], load.failed[:5]
    assert lb.retried > 0  # the balancer did see refused connections while a replica was down
    acked = [ctx for ctx, _, _ in load.acked]
    assert stored_turns(b.url, acked) == set(acked)  # every acknowledged turn, readable on either replica
    assert ledger_contexts(a.url, "roll") >= set(acked)  # a graceful stop flushes the ledger: nothing missing


@pytest.mark.timeout(120)
def test_kill_9_under_load_loses_no_acknowledged_turn(cluster: list[Replica]) -> None:
    a, b = cluster
    lb = Balancer([a, b])
    with Load(lb, "kill") as load:
        load.wait_acks(40)
        a.stop(signal.SIGKILL)
        killed_at = time.monotonic()
        load.wait_acks(40)  # B alone serves: refused connections to A go to B
        # On a quiet machine those 40 can all land within half a second of the kill: keep going past it, so the
        # check below has acknowledgements from after the kill to look at.
        time.sleep(max(0.0, killed_at + 1.0 - time.monotonic()))
        load.wait_acks(10)
    assert not any("500" in f for f in load.failed), load.failed[:5]
    # Only requests in flight on A at the kill can fail (never acknowledged, so nothing to lose); a handful at most.
    assert len(load.failed) <= load.threads, load.failed
    acked = [ctx for ctx, _, _ in load.acked]
    assert {name for _, name, t in load.acked if t > killed_at + 0.5} == {"b"}
    assert stored_turns(b.url, acked) == set(acked)  # no acknowledged turn lost

    ledger = ledger_contexts(b.url, "kill")
    missing = {ctx for ctx, _, _ in load.acked} - ledger
    by_b = {ctx for ctx, name, _ in load.acked if name == "b"}
    assert not (missing & by_b), sorted(missing & by_b)[:5]  # the survivor's records are all there
    recent_a = {ctx for ctx, name, t in load.acked if name == "a" and t > killed_at - 2 * FLUSH_S - 0.5}
    assert missing <= recent_a, sorted(missing - recent_a)[:5]  # A lost at most its last flush interval
