"""Process lifecycle for Tekton launchers: `launch`, `stop`, `status` (behind scripts/launch, stop, status).

The manifest (`tekton_component.json`) is the single source of truth for the port, its env var, the serve
command, the health/ready/shutdown paths, the grace period and the run files. Rhetor runs in the background
with a pidfile, a state file (pid, port, process start time) and a log under `$RHETOR_RUN_DIR`
(default `~/.tekton/run`). A process is stopped only by its pidfile — and only if its start time matches the
state file, so a recycled pid is never signalled — never by name: `POST /shutdown`, then SIGTERM, then
SIGKILL after the grace period. With `--workers N` (RHETOR_WORKERS) the pid is the supervisor's (rhetor.workers):
`POST /shutdown` on any worker and SIGTERM to the supervisor both stop the whole group; `status` lists the
workers' pids. `status` exits 0 running and healthy, 1 dead with a pidfile, 2 running but unhealthy, 3 not running.
Knows nothing of FastAPI or the gateway; talks to Rhetor over HTTP only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(os.environ.get("RHETOR_ROOT") or Path(__file__).resolve().parents[1])


def load_manifest(path: Path | None = None) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((path or ROOT / "tekton_component.json").read_text("utf-8"))
    return data


@dataclass(frozen=True)
class Files:
    run_dir: Path
    pid: Path
    state: Path
    log: Path

    @classmethod
    def of(cls, manifest: dict[str, Any]) -> Files:
        rt = manifest["runtime"]
        run_dir = Path(os.environ.get(rt["run_dir_env"]) or rt["run_dir_default"]).expanduser()
        return cls(run_dir, run_dir / rt["pid_file"], run_dir / rt["state_file"], run_dir / rt["log_file"])


def _host(manifest: dict[str, Any]) -> str:
    return os.environ.get(manifest.get("host_env", "RHETOR_HOST")) or manifest.get("host", "127.0.0.1")


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def base_url(host: str, port: int) -> str:
    return f"http://{_client_host(host)}:{port}"


def probe(url: str, timeout_s: float = 2.0) -> tuple[int | None, Any]:
    """(status, JSON body) of a GET, or (None, error text) when nothing answers."""
    try:
        r = httpx.get(url, timeout=timeout_s, trust_env=False)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, r.text[:200]


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((_client_host(host), port))
        except OSError:
            return False
    return True


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((_client_host(host), 0))
        port: int = s.getsockname()[1]
        return port


def read_state(files: Files) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(files.state.read_text("utf-8"))
        data["pid"] = int(files.pid.read_text().strip())
        return data
    except (OSError, ValueError):
        return None


def our_process(state: dict[str, Any]) -> psutil.Process | None:
    """The recorded process if it is still the one we started (same pid *and* start time), else None."""
    try:
        proc = psutil.Process(state["pid"])
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if abs(proc.create_time() - float(state.get("create_time", 0))) > 1.0:
            return None  # the pid was recycled by another program
        return proc
    except (psutil.Error, KeyError, ValueError, TypeError):
        return None


def _wait_gone(proc: psutil.Process, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.Error:
            return True
        time.sleep(0.1)
    return False


def _clear(files: Files) -> None:
    for path in (files.pid, files.state):
        path.unlink(missing_ok=True)


def _is_rhetor(status: int | None, body: Any) -> bool:
    return status == 200 and isinstance(body, dict) and body.get("component") == "rhetor"


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text("utf-8", "replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def launch(manifest: dict[str, Any], port_arg: str | None, timeout_s: float | None, workers: int | None = None) -> int:
    files, host, hc = Files.of(manifest), _host(manifest), manifest["health_check"]
    state = read_state(files)
    if state is not None and our_process(state) is not None:
        status, _ = probe(base_url(state["host"], state["port"]) + hc["path"])
        if status == 200:
            print(f"rhetor already running: pid {state['pid']}, {base_url(state['host'], state['port'])}")
            return 0
    env_port = os.environ.get(manifest["port_env"])
    requested = port_arg or env_port or str(manifest["port"])
    auto = requested == "auto"
    try:
        port = int(env_port if env_port and env_port != "auto" else manifest["port"]) if auto else int(requested)
    except ValueError:
        print(f"rhetor: bad port {requested!r}: a number or 'auto'", file=sys.stderr)
        return 2
    status, body = probe(base_url(host, port) + hc["path"])
    if _is_rhetor(status, body):
        print(f"a healthy Rhetor already holds port {port} ({base_url(host, port)}); not starting another")
        return 0
    if not port_free(host, port):
        if not auto:
            print(f"rhetor: port {port} is in use by something that is not a healthy Rhetor; stop it, set "
                  f"{manifest['port_env']}, or use --port auto", file=sys.stderr)
            return 1
        port = free_port(host)
    files.run_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable if part == "{python}" else part for part in manifest["commands"]["serve"]]
    env = {**os.environ, manifest["port_env"]: str(port), manifest.get("host_env", "RHETOR_HOST"): host}
    if workers is not None:  # the pidfile holds the supervisor's pid; it stops and reloads the whole group
        env["RHETOR_WORKERS"] = str(workers)
    with files.log.open("ab") as log:
        log.write(f"--- launch {time.strftime('%Y-%m-%dT%H:%M:%S')} port {port}: {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = base_url(host, port)
    files.state.write_text(json.dumps({"pid": proc.pid, "port": port, "host": host, "url": url,
                                       "create_time": psutil.Process(proc.pid).create_time(),
                                       "started_at": time.time(), "log": str(files.log)}))
    files.pid.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + (timeout_s or hc["startup_timeout_s"])
    ready_path = hc.get("ready_path", hc["path"])
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _clear(files)
            print(f"rhetor exited during start-up (code {proc.returncode}); log {files.log}:\n{_tail(files.log)}",
                  file=sys.stderr)
            return 1
        if probe(url + ready_path, hc["timeout_s"])[0] == 200:
            print(f"rhetor started: pid {proc.pid}, {url} (log: {files.log})")
            return 0
        time.sleep(hc["interval_s"])
    print(f"rhetor did not become ready within {timeout_s or hc['startup_timeout_s']} s; stopping it. "
          f"log {files.log}:\n{_tail(files.log)}", file=sys.stderr)
    stop(manifest, grace_s=2)
    return 1


def stop(manifest: dict[str, Any], grace_s: float | None = None) -> int:
    files, sd = Files.of(manifest), manifest["shutdown"]
    grace = sd["grace_period_s"] if grace_s is None else grace_s
    state = read_state(files)
    if state is None:
        print("rhetor is not running (no pidfile)")
        return 0
    proc = our_process(state)
    if proc is None:
        _clear(files)
        print(f"rhetor is not running (stale pidfile for pid {state['pid']} removed)")
        return 0
    token = os.environ.get(sd.get("token_env", "RHETOR_SHUTDOWN_TOKEN"))
    headers = {sd.get("token_header", "X-Shutdown-Token"): token} if token else {}
    try:
        r = httpx.post(base_url(state["host"], state["port"]) + sd["path"], headers=headers, timeout=2.0,
                       trust_env=False)
        accepted = r.status_code == sd["expected_status"]
        print(f"POST {sd['path']}: {r.status_code}")
    except httpx.HTTPError as exc:
        accepted = False
        print(f"POST {sd['path']}: no answer ({type(exc).__name__})")
    # Accepted: the server drains (up to its own grace) and exits; give it that and a little more.
    gone = accepted and _wait_gone(proc, grace + 5)
    for sig, wait in ((signal.SIGTERM, grace + 2), (signal.SIGKILL, 5.0)):
        if gone:
            break
        print(f"sending {sig.name} to pid {proc.pid}")
        try:
            proc.send_signal(sig)
        except psutil.Error:
            break
        gone = _wait_gone(proc, wait)
    _clear(files)
    if not gone and proc.is_running():
        print(f"rhetor (pid {proc.pid}) is still running", file=sys.stderr)
        return 1
    print(f"rhetor stopped (pid {proc.pid})")
    return 0


def status(manifest: dict[str, Any]) -> int:
    files, hc = Files.of(manifest), manifest["health_check"]
    state = read_state(files)
    if state is None:
        port = int(os.environ.get(manifest["port_env"]) or manifest["port"])
        code, body = probe(base_url(_host(manifest), port) + hc["path"])
        if _is_rhetor(code, body):
            print(f"rhetor running on port {port} (not started by these scripts; no pidfile)")
            print(json.dumps(body, indent=2))
            return 0
        print("rhetor is not running")
        return 3
    proc = our_process(state)
    if proc is None:
        print(f"rhetor is not running (stale pidfile: pid {state['pid']})")
        return 1
    url = base_url(state["host"], state["port"])
    code, body = probe(url + hc["path"])
    uptime = time.time() - proc.create_time()
    print(f"pid {proc.pid}\nport {state['port']}\nurl {url}\nuptime {uptime:.1f}s\nlog {state.get('log')}")
    with contextlib.suppress(psutil.Error):
        workers = [c.pid for c in proc.children() if "serve" in c.cmdline()]  # `--workers N`: the serving processes
        if workers:
            print(f"workers {' '.join(map(str, workers))}")
    print(json.dumps(body, indent=2) if isinstance(body, dict) else f"health: {code} {body}")
    return 0 if code == hc["expected_status"] else 2


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rhetor.lifecycle", description="launch, stop, status of Rhetor")
    sub = p.add_subparsers(dest="command", required=True)
    la = sub.add_parser("launch", help="start in the background; wait until ready")
    la.add_argument("--port", help="a port number, or 'auto' for a free one if the default is taken")
    la.add_argument("--timeout", type=float, help="seconds to wait for readiness (manifest default)")
    la.add_argument("--workers", type=int, help="serving processes on the one port (RHETOR_WORKERS)")
    st = sub.add_parser("stop", help="POST /shutdown, then SIGTERM, then SIGKILL")
    st.add_argument("--grace", type=float, help="seconds per step (manifest default)")
    sub.add_parser("status", help="pid, port, uptime and health; exit 0 healthy, 1 dead, 2 unhealthy, 3 stopped")
    args = p.parse_args(argv)
    manifest = load_manifest()
    if args.command == "launch":
        return launch(manifest, args.port, args.timeout, args.workers)
    if args.command == "stop":
        return stop(manifest, args.grace)
    return status(manifest)


if __name__ == "__main__":
    sys.exit(main())
