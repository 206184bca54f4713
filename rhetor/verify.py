"""`scripts/verify`: check a running Rhetor end to end, the way its callers use it, printing each step.

Steps: health, ready, providers (native and legacy), a chat, a native stream, the legacy `/message` and
`/stream`, a WebSocket round trip in the flat protocol (REGISTER_ACK, PONG, CHUNKs) and in the envelope
protocol (REGISTER→RESPONSE, streamed LLM_REQUEST), and Hermes (does it list Rhetor at its real endpoint?).
Chats use the simulated provider unless `--provider/--model` say otherwise, so a check never bills. Exits 1
naming each failed step. Talks to Rhetor and Hermes over the wire only; knows nothing of FastAPI.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import httpx
from websockets.sync.client import connect

from rhetor.lifecycle import Files, base_url, load_manifest, read_state


class StepFailed(Exception):
    pass


def check(cond: object, message: str) -> None:
    if not cond:
        raise StepFailed(message)


class Verifier:
    def __init__(self, url: str, provider: str, model: str, require_hermes: bool) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=30, trust_env=False)
        self.pick = {"provider_id": provider, "model_id": model}
        self.require_hermes = require_hermes
        self.health: dict[str, Any] = {}

    def _json(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        r = self.http.request(method, path, **kw)
        check(r.status_code == status, f"{method} {path} answered {r.status_code}: {r.text[:200]}")
        return r.json()

    def step_health(self) -> str:
        h = self.health = self._json("GET", "/health")
        check(h.get("status") == "healthy" and h.get("component") == "rhetor", f"unexpected body {h}")
        check(isinstance(h.get("providers"), dict), "no providers map")
        up = [p for p, ok in h["providers"].items() if ok]
        return f"version {h.get('version')}, uptime {h.get('uptime')} s, providers up: {', '.join(up)}"

    def step_ready(self) -> str:
        return str(self._json("GET", "/ready").get("status"))

    def step_providers(self) -> str:
        native = self._json("GET", "/api/v1/providers")
        legacy = self._json("GET", "/providers")
        check("current_provider" in legacy and "current_model" in legacy, "/providers lacks current_*")
        return f"{len(native['providers'])} providers, current {legacy['current_provider']}/{legacy['current_model']}"

    def step_chat(self) -> str:
        r = self._json("POST", "/api/v1/chat", json={"message": "verify: say hello", **self.pick})
        check(r.get("content"), f"empty reply {r}")
        return f"{r['provider']}/{r['model']}: {r['content'][:40]!r}"

    def step_stream(self) -> str:
        frames = []
        with self.http.stream("POST", "/api/v1/chat/stream", json={"message": "verify stream", **self.pick}) as r:
            check(r.status_code == 200, f"status {r.status_code}")
            frames = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
        check(frames and frames[-1] == "[DONE]", "stream did not end with [DONE]")
        last = json.loads(frames[-2])
        check(last.get("done") is True and not last.get("error"), f"bad final frame {last}")
        return f"{len(frames) - 2} chunks"

    def step_legacy(self) -> str:
        body = {"message": "verify legacy", "context_id": "verify", "options": {
            "provider": self.pick["provider_id"], "model": self.pick["model_id"]}}
        r = self._json("POST", "/message", json=body)
        check(r.get("message") and r.get("context") == "verify", f"bad /message reply {r}")
        with self.http.stream("POST", "/stream", json=body) as s:
            data = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: ")]
        check(data and data[-1].get("done") is True and not data[-1].get("error"), "/stream did not end done")
        return f"/message ok, /stream {len(data)} events"

    def step_ws_flat(self) -> str:
        with connect(self.url.replace("http", "ws", 1) + "/ws", open_timeout=10) as ws:
            ws.send(json.dumps({"type": "REGISTER", "component_id": "verify", "capabilities": []}))
            check(any(json.loads(ws.recv(timeout=10)).get("type") == "REGISTER_ACK" for _ in range(5)),
                  "no REGISTER_ACK")
            ws.send(json.dumps({"type": "PING", "request_id": "p"}))
            check(json.loads(ws.recv(timeout=10)).get("type") == "PONG", "no PONG")
            ws.send(json.dumps({"type": "STREAM", "request_id": "s", "prompt": "verify ws", **self.pick}))
            n = 0
            while True:
                f = json.loads(ws.recv(timeout=30))
                check(f.get("type") == "CHUNK", f"unexpected frame {f}")
                n += 1
                if f.get("done"):
                    check(not f.get("error"), f"stream error {f.get('error')}")
                    return f"REGISTER_ACK, PONG, {n} CHUNKs"

    def step_ws_envelope(self) -> str:
        with connect(self.url.replace("http", "ws", 1) + "/ws", open_timeout=10) as ws:
            ws.send(json.dumps({"type": "REGISTER", "source": "VERIFY", "payload": {"clientId": "verify"}}))
            reg = json.loads(ws.recv(timeout=10))
            check(reg.get("type") == "RESPONSE" and reg["payload"].get("status") == "registered"
                  and "message" not in reg["payload"], f"bad REGISTER reply {reg}")
            ws.send(json.dumps({"type": "LLM_REQUEST", "source": "VERIFY", "payload": {
                "message": "verify envelope", "context": "verify", "streaming": True,
                "options": {"provider": self.pick["provider_id"], "model": self.pick["model_id"]}}}))
            chunks = 0
            while True:
                f = json.loads(ws.recv(timeout=30))
                check(f.get("type") != "ERROR", f"ERROR {f.get('payload')}")
                if f.get("type") == "UPDATE" and f["payload"].get("chunk"):
                    chunks += 1
                if f.get("type") == "UPDATE" and f["payload"].get("done"):
                    return f"registered, {chunks} chunk UPDATEs"

    def step_hermes(self) -> str:
        h = self.health or self._json("GET", "/health")
        info = h.get("details", {}).get("hermes", {})
        if not info.get("url"):
            check(not self.require_hermes, "Hermes integration is disabled")
            return "skipped: Hermes integration disabled (RHETOR_HERMES=0)"
        try:
            r = httpx.get(info["url"].rstrip("/") + "/api/components", timeout=5, trust_env=False)
        except httpx.HTTPError as exc:
            check(not self.require_hermes, f"Hermes at {info['url']} unreachable")
            return f"skipped: Hermes at {info['url']} unreachable ({type(exc).__name__})"
        check(h.get("registeredWithHermes"), f"not registered with Hermes: {info.get('last_error')}")
        listed = [c for c in r.json().get("components", []) if c.get("name") == "rhetor"] if r.is_success else []
        port = str(h.get("port"))
        check(not r.is_success or any(str(c.get("endpoint", "")).endswith(f":{port}") for c in listed),
              f"Hermes does not list Rhetor at port {port}")
        return f"registered as {info.get('component_id')}"

    def run(self) -> list[str]:
        steps: list[tuple[str, Callable[[], str]]] = [
            ("health", self.step_health), ("ready", self.step_ready), ("providers", self.step_providers),
            ("chat", self.step_chat), ("stream", self.step_stream), ("legacy http", self.step_legacy),
            ("websocket flat", self.step_ws_flat), ("websocket envelope", self.step_ws_envelope),
            ("hermes", self.step_hermes)]
        failed = []
        for name, fn in steps:
            try:
                print(f"[ok]   {name}: {fn()}", flush=True)
            except Exception as exc:  # any failure of a step is reported, and the next step still runs
                failed.append(name)
                print(f"[FAIL] {name}: {type(exc).__name__ if not isinstance(exc, StepFailed) else ''} {exc}",
                      flush=True)
        return failed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/verify", description="check a running Rhetor end to end")
    p.add_argument("--url", help="Rhetor base URL (default: RHETOR_URL, the launched instance, or the manifest port)")
    p.add_argument("--provider", default="simulated")
    p.add_argument("--model", default="simulated-fast")
    p.add_argument("--require-hermes", action="store_true", help="fail if Hermes is disabled or unreachable")
    args = p.parse_args(argv)
    url = args.url or os.environ.get("RHETOR_URL")
    if not url:
        manifest = load_manifest()
        state = read_state(Files.of(manifest))
        port = state["port"] if state else int(os.environ.get(manifest["port_env"]) or manifest["port"])
        url = base_url(state["host"] if state else os.environ.get("RHETOR_HOST", "127.0.0.1"), port)
    print(f"verifying Rhetor at {url}")
    failed = Verifier(url, args.provider, args.model, args.require_hermes).run()
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
