"""`python -m rhetor --workers N` (RHETOR_WORKERS): one supervisor process and N serving processes on one port.

The supervisor (`supervise`) reserves the port with SO_REUSEPORT (bound, never listening: port 0 becomes a real
port and no other program can take it while workers restart), makes a private run directory (the metrics
files of prometheus_client's multiprocess mode unless PROMETHEUS_MULTIPROC_DIR is set, the workers' ready
marks, Hermes' state), and starts N `python -m rhetor serve` children. Each child binds its own SO_REUSEPORT
listener on that port, and the kernel spreads new connections across them. Then the supervisor:
- registers with Hermes once (its own pid, the shared port), heartbeats, unregisters at the end;
- on SIGTERM/SIGINT sends every worker SIGTERM (each drains as a single Rhetor does: rhetor.drain), waits for
  them for the drain budget, SIGKILLs what is left, removes its run directory and exits 0;
- on SIGHUP forwards SIGHUP to every worker (each reloads its configuration files);
- restarts a worker that dies (backoff from 0.5 s, doubling up to 30 s); a worker that exits before it ever
  became ready ends the whole group with its exit code (a bad config exits 2 once, not N times).
Workers know they are workers from RHETOR_WORKER_* variables (`WorkerInfo.from_env`): they skip Hermes, report
the supervisor's Hermes state in /health, stop when the supervisor is gone, and ask the supervisor to stop
(SIGTERM) or reload (SIGHUP) the whole group. Knows nothing of FastAPI, uvicorn or the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rhetor.errors import ConfigError
from rhetor.settings import Settings

log = logging.getLogger("rhetor.workers")

ENV_INDEX, ENV_COUNT, ENV_SUPERVISOR, ENV_DIR = ("RHETOR_WORKER_INDEX", "RHETOR_WORKER_COUNT",
                                                 "RHETOR_WORKER_SUPERVISOR", "RHETOR_WORKER_DIR")
HERMES_FILE = "hermes.json"
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.5, 30.0
EXTRA_WAIT_S = 2.0 + 3.0 + 5.0  # after the drain grace: final frames (FLUSH_S), uvicorn's own grace, margin


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker process knows of its group (from the environment the supervisor gave it)."""

    index: int
    count: int
    supervisor_pid: int
    run_dir: Path

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> WorkerInfo | None:
        e = os.environ if env is None else env
        try:
            return cls(int(e[ENV_INDEX]), int(e[ENV_COUNT]), int(e[ENV_SUPERVISOR]), Path(e[ENV_DIR]))
        except (KeyError, ValueError):
            return None

    def supervisor_alive(self) -> bool:
        return os.getppid() == self.supervisor_pid

    def signal_group(self, sig: signal.Signals) -> bool:
        """Ask the supervisor to act for the whole group: SIGTERM stops every worker, SIGHUP reloads each."""
        if not self.supervisor_alive():
            return False
        os.kill(self.supervisor_pid, sig)
        return True

    def status(self) -> dict[str, Any]:
        """The worker part of /health: who we are, and the Hermes registration the supervisor holds."""
        try:
            hermes: dict[str, Any] = json.loads((self.run_dir / HERMES_FILE).read_text("utf-8"))
        except (OSError, ValueError):
            hermes = {"enabled": False}
        return {"index": self.index, "count": self.count, "pid": os.getpid(),
                "supervisor_pid": self.supervisor_pid, "hermes": hermes,
                # the SQLite files of the data dir are shared by the workers (WAL, 5 s busy timeout, migrations
                # under a write lock); what details.storage lists as per_process is kept by each worker
                "per_process": "details.storage.per_process, per worker"}


def listen_socket(host: str, port: int, *, listen: bool = True) -> socket.socket:
    """A TCP socket bound to (host, port) with SO_REUSEPORT: listening (a worker) or only reserving (the
    supervisor). Raises OSError when the port cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(2048)
            sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


class _Serving(Protocol):
    started: bool

    def handle_exit(self, sig: int, frame: Any) -> None: ...


def watch(info: WorkerInfo, server: _Serving, poll_s: float = 0.25) -> threading.Thread:
    """A worker's watcher thread: writes its ready mark once the server serves, then stops the server
    (as SIGTERM would) if the supervisor disappears (killed with -9: no worker outlives it)."""

    def run() -> None:
        marked = False
        while True:
            if not marked and server.started:
                mark = info.run_dir / f"ready-{info.index}"
                mark.write_text(str(os.getpid()))
                marked = True
            if not info.supervisor_alive():
                log.warning("the supervisor (pid %d) is gone: worker %d stops", info.supervisor_pid, info.index)
                server.handle_exit(signal.SIGTERM, None)
                return
            time.sleep(poll_s)

    thread = threading.Thread(target=run, name="rhetor-worker-watch", daemon=True)
    thread.start()
    return thread


class Supervisor:
    def __init__(self, settings: Settings, argv: list[str] | None = None) -> None:
        self.settings = settings
        self.count = settings.workers
        self.argv = argv or [sys.executable, "-m", "rhetor", "serve"]
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.ready: set[int] = set()
        self.stopping = False
        self.exit_code = 0
        self.port = settings.port
        self.run_dir = Path(tempfile.mkdtemp(prefix="rhetor-workers-"))
        own = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self.metrics_dir = Path(own) if own else self.run_dir / "metrics"
        self.metrics_dir.mkdir(parents=True, exist_ok=True)
        self._stop = asyncio.Event()
        self._hermes: Any = None

    # -- processes -----------------------------------------------------------------------------------------
    def _env(self, index: int) -> dict[str, str]:
        s = self.settings
        return {**os.environ, "RHETOR_HOST": s.host, "RHETOR_PORT": str(self.port), "RHETOR_LOG_LEVEL": s.log_level,
                "RHETOR_WORKERS": "1", "RHETOR_HERMES": "0", "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
                ENV_INDEX: str(index), ENV_COUNT: str(self.count), ENV_SUPERVISOR: str(os.getpid()),
                ENV_DIR: str(self.run_dir)}

    async def _spawn(self, index: int) -> asyncio.subprocess.Process:
        (self.run_dir / f"ready-{index}").unlink(missing_ok=True)
        proc = await asyncio.create_subprocess_exec(*self.argv, env=self._env(index), stdin=asyncio.subprocess.DEVNULL)
        self.procs[index] = proc
        log.info("worker %d started (pid %d)", index, proc.pid)
        if self.stopping:  # the stop began while it was being started: it drains with the others
            proc.send_signal(signal.SIGTERM)
        return proc

    def _is_ready(self, index: int) -> bool:
        return (self.run_dir / f"ready-{index}").exists()

    async def _keep(self, index: int) -> None:
        """Run worker `index` until the group stops, restarting it when it dies."""
        backoff = BACKOFF_MIN_S
        while True:
            proc = await self._spawn(index)
            code = await proc.wait()
            self._forget(proc.pid)
            served = self._is_ready(index)
            if served:
                self.ready.add(index)
            if self.stopping:
                return
            if index not in self.ready:  # never served: a bad config or a taken port ends the group, once
                log.error("worker %d exited during start-up (code %d): stopping", index, code)
                self.exit_code = code or 1
                self._stop.set()
                return
            backoff = BACKOFF_MIN_S if served else min(backoff * 2, BACKOFF_MAX_S)
            log.warning("worker %d (pid %d) exited with code %d; restarting in %.1f s", index, proc.pid, code,
                        backoff)
            await asyncio.sleep(backoff)
            if self.stopping:
                return

    def ready_all(self) -> bool:
        return len(self.ready) == self.count

    def _forget(self, pid: int) -> None:
        """A dead worker's live gauges leave the sum (its counters stay, as Prometheus expects)."""
        from prometheus_client import multiprocess

        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]

    def _signal_all(self, sig: signal.Signals) -> None:
        for proc in list(self.procs.values()):
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)

    # -- the group ---------------------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        keepers = [asyncio.create_task(self._keep(i), name=f"rhetor-worker-{i}") for i in range(self.count)]
        watcher = asyncio.create_task(self._watch_ready())
        log.info("Rhetor supervisor (pid %d): %d workers on %s:%d", os.getpid(), self.count, self.settings.host,
                 self.port)
        try:
            await self._stop.wait()
        finally:
            watcher.cancel()
            await self._shutdown(keepers)
        return self.exit_code

    def _reload(self) -> None:
        log.info("SIGHUP: every worker reloads its configuration")
        self._signal_all(signal.SIGHUP)

    async def _watch_ready(self) -> None:
        while True:
            for i in range(self.count):
                if i not in self.ready and self._is_ready(i):
                    self.ready.add(i)
                    if self.ready_all():
                        log.info("all %d workers serving", self.count)
                        self._start_hermes()
            if self._hermes is not None:
                self._write_hermes()
            await asyncio.sleep(0.1 if not self.ready_all() else 1.0)

    async def _shutdown(self, keepers: list[asyncio.Task[None]]) -> None:
        self.stopping = True
        if self._hermes is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._hermes.announce("shutting_down", self.port), 2.0)
        self._signal_all(signal.SIGTERM)
        budget = self.settings.shutdown_grace_s + EXTRA_WAIT_S
        _, pending = await asyncio.wait(keepers, timeout=budget)
        if pending:
            log.warning("workers still running %.1f s after SIGTERM: killing them", budget)
            self._signal_all(signal.SIGKILL)
            await asyncio.wait(pending, timeout=5.0)
        if self._hermes is not None:
            self._hermes_state("shutting_down")
            await self._hermes.aclose()  # unregister once, for the whole group
        shutil.rmtree(self.run_dir, ignore_errors=True)  # with the metrics files, unless they were given
        log.info("Rhetor supervisor stopped")

    # -- Hermes, once for the group ------------------------------------------------------------------------
    def _start_hermes(self) -> None:
        s = self.settings
        if not (s.hermes_enabled and s.hermes_url) or self._hermes is not None:
            return
        from hermes_integration import HermesClient, Registration, endpoint_url, registration_payload
        from rhetor import __version__

        def payload() -> dict[str, Any]:
            body = registration_payload(endpoint_url(s.advertise_host or s.host, self.port), __version__, self.port)
            body["metadata"]["workers"] = self.count
            return body

        self._hermes = Registration(HermesClient(s.hermes_url), payload, heartbeat_s=s.hermes_heartbeat_s,
                                    retry_max_s=s.hermes_retry_max_s, check_s=s.hermes_check_s,
                                    component_id=s.hermes_component_id,
                                    status=lambda: {"status": "shutting_down" if self.stopping else "healthy"})
        self._hermes.start()

    def _write_hermes(self) -> None:
        self._hermes_state(None)

    def _hermes_state(self, status: str | None) -> None:
        state = {"enabled": True, "by": "supervisor", **self._hermes.describe()}
        if status is not None:
            state["status"] = status
        tmp = self.run_dir / f".{HERMES_FILE}.tmp"
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(state))
            tmp.replace(self.run_dir / HERMES_FILE)


def supervise(settings: Settings) -> int:
    """Serve with `settings.workers` processes; returns the exit code."""
    from rhetor.config.reload import load

    load(settings)  # a bad tasks.json / providers file / catalogue / prices: exit 2 once, before any worker starts
    host, port = settings.host, settings.port
    try:  # a plain bind first: SO_REUSEPORT alone would silently join another program's listeners
        probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        with probe:  # (SO_REUSEADDR: a listener's TIME_WAIT connections do not count, a listener does)
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            port = probe.getsockname()[1]
        reserve = listen_socket(host, port, listen=False)
    except OSError as exc:
        raise ConfigError(f"cannot bind {host}:{port} for {settings.workers} workers: {exc.strerror or exc}") from None
    supervisor = Supervisor(settings.model_copy(update={"port": port}))
    try:
        return asyncio.run(supervisor.run())
    finally:
        reserve.close()
        shutil.rmtree(supervisor.run_dir, ignore_errors=True)


__all__ = ["Supervisor", "WorkerInfo", "listen_socket", "supervise", "watch"]
