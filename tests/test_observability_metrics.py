"""GET /metrics in the Prometheus format (prometheus_client's own parser reads it), moving as traffic flows on
every front, with bounded labels; guarded like other routes when keys are on, opened by RHETOR_METRICS_TOKEN;
the Tekton JSON view at /api/v1/metrics; and multi-process aggregation through PROMETHEUS_MULTIPROC_DIR."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rhetor.settings import Settings

HI = [{"role": "user", "content": "hi"}]


def scrape(c: httpx.Client, **headers: str) -> dict[str, float]:
    """Every sample as 'name{k=v,...}' -> value (labels sorted), parsed by prometheus_client."""
    r = c.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out[s.name + "{" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) + "}"] = s.value
    return out


def total(samples: dict[str, float], name: str, **labels: str) -> float:
    want = [f"{k}={v}" for k, v in labels.items()]
    return sum(v for k, v in samples.items() if k.startswith(name + "{") and all(w in k for w in want))


def test_prometheus_parses_and_histograms_move_on_every_front(simulated_rhetor: str) -> None:
    with httpx.Client(base_url=simulated_rhetor, timeout=10) as c:
        before = scrape(c)
        assert c.post("/api/v1/chat", json={"message": "hi", "provider_id": "simulated",
                                            "component": "ergon"}).status_code == 200
        with c.stream("POST", "/api/v1/chat/stream", json={"message": "hi", "provider_id": "simulated"}) as r:
            assert r.status_code == 200 and "".join(r.iter_text())
        assert c.post("/v1/chat/completions", json={"model": "simulated/simulated-fast", "messages": HI}).is_success
        assert c.post("/v1/messages", json={"model": "simulated/simulated-fast", "max_tokens": 16,
                                            "messages": HI}).is_success
        assert c.post("/message", json={"message": "hi", "context_id": "ergon:x"}).status_code == 200
        assert c.post("/api/v1/chat", json={"message": 3}).status_code in (400, 422)  # refused before routing
        # a caller-chosen component and context id never become label values
        assert c.post("/api/v1/chat", json={"message": "hi", "provider_id": "simulated",
                                            "component": "zz-unknown-9", "context_id": "secret-ctx-42"}).is_success
        after = scrape(c)
        text = c.get("/metrics").text
    req = "rhetor_requests_total"
    for front in ("native", "openai", "anthropic", "legacy"):
        assert total(after, req, front=front) > total(before, req, front=front), front
    assert total(after, req, front="native", component="ergon", status="ok") == 1
    assert total(after, req, front="native", status="invalid_request_error") == 1
    assert total(after, req, component="other") == 1
    assert "zz-unknown-9" not in text and "secret-ctx-42" not in text
    dur = "gen_ai_server_request_duration_seconds_count"
    assert total(after, dur) - total(before, dur) >= 6
    assert total(after, "gen_ai_server_time_to_first_token_seconds_count", front="native") == 1
    assert total(after, "gen_ai_client_token_usage_sum", gen_ai_token_type="output") > 0
    assert total(after, "rhetor_tokens_total", direction="input") > 0
    assert total(after, "gen_ai_client_operation_duration_seconds_count", gen_ai_system="simulated") >= 6
    # sub-millisecond overhead buckets exist and fill
    assert "rhetor_overhead_seconds_bucket{front=native,le=0.0005}" in after
    assert total(after, "rhetor_overhead_seconds_count", front="native") >= 3
    assert after["rhetor_requests_in_flight{}"] == 1  # this scrape
    assert total(after, "rhetor_http_requests_total", route="/api/v1/chat", code="200") >= 2
    assert total(after, "rhetor_build_info") == 1 and "rhetor_usage_ledger_queue{}" in after


def test_fallbacks_retries_breakers_and_cost(make_settings: Callable[..., Settings], rhetor: Any) -> None:
    with rhetor(make_settings(breaker_threshold=1)) as url, httpx.Client(base_url=url, timeout=10) as c:
        r = c.post("/api/v1/chat", json={"message": "x", "provider_id": "simulated", "model_id": "simulated-fail-500",
                                         "options": {"fallback_provider": "simulated",
                                                     "fallback_model": "simulated-fast"}})
        assert r.status_code == 200 and r.json()["fallback"] is True
        s = scrape(c)
    assert total(s, "rhetor_fallbacks_total", model="simulated-fast") == 1
    # the scenario model is outside the catalogue: its label is "other", its breaker open
    assert s["rhetor_breaker_state{model=other,provider=simulated}"] == 2
    assert total(s, "gen_ai_client_operation_duration_seconds_count", outcome="error") >= 1


def test_openmetrics_on_accept(simulated_rhetor: str) -> None:
    r = httpx.get(simulated_rhetor + "/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"})
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.rstrip().endswith("# EOF")


def test_tekton_json_view_stays(simulated_rhetor: str) -> None:
    with httpx.Client(base_url=simulated_rhetor) as c:
        c.post("/api/v1/chat", json={"message": "hi", "provider_id": "simulated"})
        for path in ("/api/v1/metrics", "/api/metrics"):
            body = c.get(path).json()
            assert body["component"] == "rhetor" and body["requests_total"] >= 1 and "simulated" in body["providers"]


def test_metrics_are_guarded_by_keys_and_opened_by_the_token(make_settings: Callable[..., Settings],
                                                             rhetor: Any) -> None:
    from pydantic import SecretStr

    keyed = make_settings(api_keys=(SecretStr("rk-key-1234567890"),), metrics_token=SecretStr("scrape-me"))
    with rhetor(keyed) as url, httpx.Client(base_url=url) as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"authorization": "Bearer wrong"}).status_code == 401
        assert "rhetor_requests_total" in c.get("/metrics", headers={"x-api-key": "rk-key-1234567890"}).text
        scrape(c, authorization="Bearer scrape-me")
        # the token opens /metrics only
        assert c.get("/api/v1/metrics", headers={"authorization": "Bearer scrape-me"}).status_code == 401
    with rhetor(make_settings(metrics_token=SecretStr("scrape-me"))) as url, httpx.Client(base_url=url) as c:
        r = c.get("/metrics")
        assert r.status_code == 401 and "RHETOR_METRICS_TOKEN" in r.text
        scrape(c, authorization="Bearer scrape-me")
        assert c.post("/api/v1/chat", json={"message": "hi"}).status_code == 200  # the rest stays open


def test_metrics_off(make_settings: Callable[..., Settings], rhetor: Any) -> None:
    assert Settings.from_env({"RHETOR_METRICS": "0"}).metrics is False
    with rhetor(make_settings(metrics=False)) as url:
        assert httpx.get(url + "/metrics").status_code == 404
        assert httpx.get(url + "/api/v1/metrics").json()["requests_total"] >= 1


CHILD = """
import sys
from rhetor.governance.ledger import UsageRecord
from rhetor.observability.metrics import PromMetrics
m = PromMetrics()
m.in_flight.inc()
for _ in range(int(sys.argv[1])):
    m.record(UsageRecord(ts=0, request_id=None, key_id="anonymous", component=None, task_type=None, front="native",
                         provider="simulated", model="simulated-fast", latency_ms=2.0, input_tokens=3,
                         output_tokens=5))
if sys.argv[2] == "dead":
    m.in_flight.dec()
    m.close()
else:
    body, _ = m.exposition(None)
    sys.stdout.write(body.decode())
"""


@pytest.mark.timeout(60)
def test_multiprocess_mode_aggregates_every_worker(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for n in (2, 3):
        subprocess.run([sys.executable, "-c", CHILD, str(n), "dead"], env=env, check=True, cwd=Path.cwd())
    out = subprocess.run([sys.executable, "-c", CHILD, "4", "live"], env=env, check=True, capture_output=True,
                         text=True).stdout
    samples = {s.name + json.dumps(s.labels, sort_keys=True): s.value
               for fam in text_string_to_metric_families(out) for s in fam.samples}
    assert total(samples, "rhetor_requests_total") == 9  # 2 + 3 + 4 requests, from three processes
    assert total(samples, "gen_ai_server_request_duration_seconds_count") == 9
    assert samples["rhetor_requests_in_flight{}"] == 1  # livesum: the dead workers' gauges are gone
