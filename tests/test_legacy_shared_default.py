"""The legacy front's `POST /provider` default is shared by every replica on PostgreSQL: chosen on one, it routes
the next legacy request on another (each re-reads it at most once a second); /health names its backend."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from pydantic import SecretStr

from rhetor.settings import Settings
from tests.conftest import running_rhetor


def test_a_default_chosen_on_one_replica_routes_the_other(make_settings: Callable[..., Settings],
                                                          pg_url: str) -> None:
    shared = {"database_url": SecretStr(pg_url)}
    with running_rhetor(make_settings(**shared)) as a, running_rhetor(make_settings(**shared)) as b:
        before = httpx.post(b + "/message", json={"message": "hi"}, timeout=10).json()
        chose = httpx.post(a + "/provider", json={"provider_id": "simulated", "model_id": "simulated-advanced"},
                           timeout=10)
        assert chose.status_code == 200, chose.text
        deadline = time.monotonic() + 5
        while True:
            reply = httpx.post(b + "/message", json={"message": "hi"}, timeout=10).json()
            if reply.get("model") == "simulated-advanced" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert reply["model"] == "simulated-advanced", (before, reply)
        assert time.monotonic() < deadline
        status = httpx.get(b + "/providers", timeout=10).json()
        assert status["current_model"] == "simulated-advanced"
        stores = httpx.get(b + "/health", timeout=10).json()["details"]["storage"]["stores"]
        assert "postgres" in str(stores["legacy_defaults"])
