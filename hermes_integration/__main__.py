"""`python -m hermes_integration register|unregister|status` — one-shot Hermes calls for scripts.

`register` registers Rhetor's endpoint (RHETOR_PORT / --port, RHETOR_ADVERTISE_HOST or RHETOR_HOST) and keeps
the component id and token in `$RHETOR_RUN_DIR/hermes.json` so that `unregister` can remove it; a running
Rhetor registers (and heartbeats) by itself, so scripts need this only for out-of-band bookkeeping.
`status` prints what Hermes lists for Rhetor. Exit codes: 0 ok / listed, 1 not listed or refused,
2 Hermes unreachable or disabled. Knows nothing of FastAPI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from hermes_integration.client import HermesClient, HermesError, HermesUnreachableError
from hermes_integration.registration import NAME, endpoint_url, registration_payload
from rhetor import __version__
from rhetor.errors import ConfigError
from rhetor.settings import Settings


def _state_file(settings: Settings) -> Path:
    return settings.run_dir / "hermes.json"


async def _register(settings: Settings, client: HermesClient) -> int:
    host = settings.advertise_host or settings.host
    endpoint = endpoint_url(host, settings.port)
    payload = {**registration_payload(endpoint, __version__, settings.port),
               "component_id": settings.hermes_component_id}  # the running Rhetor's id: updates, never duplicates
    cid, token = await client.register(payload)
    path = _state_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"hermes_url": client.base_url, "component_id": cid, "token": token,
                               "endpoint": endpoint}))
    os.chmod(tmp, 0o600)  # the token authenticates as Rhetor
    tmp.replace(path)
    print(json.dumps({"registered": True, "component_id": cid, "endpoint": endpoint}))
    return 0


async def _unregister(settings: Settings, client: HermesClient) -> int:
    path = _state_file(settings)
    if not path.exists():
        print(f"nothing to unregister: no {path}", file=sys.stderr)
        return 1
    state = json.loads(path.read_text())
    await client.unregister(state["component_id"], state["token"])
    path.unlink()
    print(json.dumps({"unregistered": True, "component_id": state["component_id"]}))
    return 0


async def _status(settings: Settings, client: HermesClient) -> int:
    components = await client.components()
    mine = [c for c in components if c.get("name") == NAME or str(c.get("component_id", "")).startswith(NAME)]
    out: dict[str, Any] = {"hermes_url": client.base_url, "reachable": True, "registered": bool(mine),
                           "components": mine}
    print(json.dumps(out, indent=2))
    return 0 if mine else 1


async def _main(command: str, settings: Settings) -> int:
    assert settings.hermes_url is not None
    client = HermesClient(settings.hermes_url)
    try:
        return await {"register": _register, "unregister": _unregister, "status": _status}[command](settings, client)
    except HermesUnreachableError as exc:
        print(json.dumps({"hermes_url": settings.hermes_url, "reachable": False, "error": exc.message}))
        return 2
    except HermesError as exc:
        print(f"hermes: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await client.aclose()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hermes_integration", description="Rhetor's Hermes bookkeeping")
    p.add_argument("command", choices=["register", "unregister", "status"])
    p.add_argument("--port", type=int, help="Rhetor's port (default RHETOR_PORT or 8003)")
    p.add_argument("--hermes-url", help="Hermes base URL (default HERMES_URL or http://localhost:$HERMES_PORT)")
    args = p.parse_args(argv)
    try:
        settings = Settings.from_env(port=args.port, hermes_url=args.hermes_url)
    except ConfigError as exc:
        print(f"hermes: {exc.message}", file=sys.stderr)
        return 2
    if not settings.hermes_enabled or not settings.hermes_url:
        print(json.dumps({"hermes": "disabled (RHETOR_HERMES=0)"}))
        return 2
    return asyncio.run(_main(args.command, settings))


if __name__ == "__main__":
    sys.exit(main())
