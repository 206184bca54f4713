"""`/v1/models` and `/api/v1/models` list what the configured deployments actually serve (issue 12): live from
each upstream's own listing (rhetor.providers.listing), cached, one fetch for concurrent listings, nothing
fetched at start-up, and the catalogue when an upstream fails or times out — said in `x-rhetor-models-source`,
`x-rhetor-models-fallback` and a log line. Real fakes on loopback, the official `openai` and `anthropic` SDKs.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from rhetor.providers.listing import anthropic_ids, gemini_ids, ollama_ids, openai_ids
from tests.conftest import running_rhetor
from tests.conftest import test_settings as settings_for
from tests.fakes.anthropic import FakeAnthropic, running_fake_anthropic
from tests.fakes.gemini import FakeGemini, running_fake_gemini
from tests.fakes.ollama import FakeOllama, running_fake_ollama
from tests.fakes.openai import FakeOpenAI, running_fake_openai

OPENAI_KEY = "sk-listing-secret-0123456789"


@contextmanager
def rhetor_on(tmp_path: Path, **fakes_and_settings: Any) -> Iterator[str]:
    """A Rhetor whose providers are the given fakes (openai=, anthropic=, gemini=, ollama=) plus settings."""
    kw: dict[str, Any] = {}
    fo: FakeOpenAI | None = fakes_and_settings.pop("openai", None)
    fa: FakeAnthropic | None = fakes_and_settings.pop("anthropic", None)
    fg: FakeGemini | None = fakes_and_settings.pop("gemini", None)
    fl: FakeOllama | None = fakes_and_settings.pop("ollama", None)
    if fo is not None:
        kw.update(openai_api_key=OPENAI_KEY, openai_base_url=fo.base_url)
    if fa is not None:
        kw.update(anthropic_api_key="test-key", anthropic_base_url=fa.base_url)
    if fg is not None:
        kw.update(gemini_api_key="g-key", gemini_base_url=fg.base_url)
    if fl is not None:
        kw.update(ollama_host=fl.base_url)
    with running_rhetor(settings_for(tmp_path, **kw, **fakes_and_settings)) as url:
        yield url


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def sources(headers: httpx.Headers | Any) -> dict[str, str]:
    return dict(part.split("=") for part in headers["x-rhetor-models-source"].split(", "))


def test_openai_lists_live_cached_and_says_so(tmp_path: Path) -> None:
    with running_fake_openai() as fake:
        fake.models = ["gpt-4o", "gpt-7-preview", "gpt-5.1-codex", "text-embedding-3-small"]
        with rhetor_on(tmp_path, openai=fake) as url:
            assert fake.listing.requests == 0  # nothing fetched at start-up
            client = sdk(url)
            raw = client.models.with_raw_response.list()
            ids = {m.id: m.owned_by for m in raw.parse()}
            # served live: listed even though the catalogue does not know it
            assert ids["openai/gpt-7-preview"] == "openai" and "openai/gpt-4o" in ids
            assert "openai/gpt-5.4" not in ids  # the catalogue's, but this upstream does not serve it
            assert "openai/gpt-5.1-codex" not in ids  # listed upstream, but retired in the catalogue: refused
            assert sources(raw.headers)["openai"] == "live" and sources(raw.headers)["simulated"] == "catalogue"
            assert "openai" not in raw.headers.get("x-rhetor-models-fallback", "")
            assert fake.listing.requests == 1
            # cached: the SDK's second listing, /api/v1/models and a retrieve do not touch the upstream
            assert "openai/gpt-7-preview" in [m.id for m in client.models.list()]
            native = httpx.get(f"{url}/api/v1/models")
            assert {"id": "openai/gpt-7-preview", "provider": "openai", "model": "gpt-7-preview",
                    "available": True} in native.json()["models"]
            assert sources(native.headers)["openai"] == "live"
            assert client.models.retrieve("openai/gpt-7-preview").id == "openai/gpt-7-preview"
            assert fake.listing.requests == 1
            assert OPENAI_KEY not in raw.http_response.text and OPENAI_KEY not in native.text


def test_no_listing_at_start_or_for_requests(tmp_path: Path) -> None:
    """Start-up, /health, /api/v1/providers and a chat request never fetch a listing: validation is offline."""
    with running_fake_openai() as fo, running_fake_anthropic() as fa:
        with rhetor_on(tmp_path, openai=fo, anthropic=fa) as url:
            httpx.get(f"{url}/health")
            httpx.get(f"{url}/api/v1/providers")
            reply = sdk(url).chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user",
                                                                                      "content": "Hi"}])
            assert reply.choices[0].message.content
            assert fo.listing.requests == 0 and fa.listing.requests == 0


def test_anthropic_pages_through_after_id(tmp_path: Path) -> None:
    with running_fake_anthropic() as fake:
        fake.models = ["claude-sonnet-5-5", "claude-haiku-5-5", "claude-next-1", "claude-opus-4-1",
                       "claude-sonnet-4-5"]
        fake.listing.page_cap = 2  # five models in three pages
        with rhetor_on(tmp_path, anthropic=fake) as url, \
                anthropic.Anthropic(base_url=url, api_key="x", max_retries=0) as client:
            raw = client.models.with_raw_response.list()
            ids = [m.id for m in raw.parse().data]
            assert [i for i in ids if i.startswith("anthropic/")] == [
                "anthropic/claude-sonnet-5-5", "anthropic/claude-haiku-5-5", "anthropic/claude-next-1",
                "anthropic/claude-sonnet-4-5"]  # claude-opus-4-1 is retired in the catalogue
            assert sources(raw.headers)["anthropic"] == "live"
            assert fake.listing.requests == 3
            assert [q for q in fake.listing.queries if "after_id" in q] == [
                "limit=1000&after_id=claude-haiku-5-5", "limit=1000&after_id=claude-opus-4-1"]
            assert client.models.retrieve("anthropic/claude-next-1").type == "model"
            assert fake.listing.requests == 3


def test_gemini_pages_through_next_page_token(tmp_path: Path) -> None:
    with running_fake_gemini() as fake:
        fake.models = ["gemini-3.8-flash", "gemini-9-experimental", "text-embedding-004", "gemini-2.0-flash",
                       "gemini-2.5-pro"]
        fake.listing.page_cap = 2
        with rhetor_on(tmp_path, gemini=fake) as url:
            r = httpx.get(f"{url}/v1/models")
            ids = {m["id"] for m in r.json()["data"]}
            assert {"gemini/gemini-3.8-flash", "gemini/gemini-9-experimental", "gemini/gemini-2.5-pro"} <= ids
            assert "gemini/text-embedding-004" not in ids  # it cannot generateContent
            assert "gemini/gemini-2.0-flash" not in ids  # retired in the catalogue
            assert "gemini/gemini-3.7-flash" not in ids  # the catalogue's, not served here
            assert sources(r.headers)["gemini"] == "live" and fake.listing.requests == 3


def test_ollama_lists_its_tags(tmp_path: Path) -> None:
    with running_fake_ollama() as fake:
        fake.models = ["llama3:latest", "qwen3:8b"]
        with rhetor_on(tmp_path, ollama=fake) as url:
            r = httpx.get(f"{url}/api/v1/models")
            ollama = [m["model"] for m in r.json()["models"] if m["provider"] == "ollama"]
            assert ollama == ["llama3:latest", "qwen3:8b"] and sources(r.headers)["ollama"] == "live"


def test_failure_falls_back_to_the_catalogue_and_is_not_hammered(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    with running_fake_openai() as fake:
        fake.models = ["gpt-7-preview"]
        fake.listing.fail = 500
        with caplog.at_level(logging.WARNING, "rhetor.providers.listing"), rhetor_on(tmp_path, openai=fake) as url:
            client = sdk(url)
            raw = client.models.with_raw_response.list()
            ids = [m.id for m in raw.parse()]
            assert "openai/gpt-5.4" in ids and "openai/gpt-7-preview" not in ids  # the catalogue's list
            assert "openai/gpt-5.1-codex" not in ids  # retired catalogue models are never listed
            assert sources(raw.headers)["openai"] == "fallback"
            assert "openai" in raw.headers["x-rhetor-models-fallback"].split(", ")
            assert [m.id for m in client.models.list()] == ids  # the failure is cached too: not hammered
            assert fake.listing.requests == 1
            logged = [r.getMessage() for r in caplog.records if r.name == "rhetor.providers.listing" and
                      "openai" in r.getMessage()]
            assert len(logged) == 1 and "answered 500" in logged[0] and "catalogue" in logged[0]
            assert OPENAI_KEY not in logged[0]


def test_timeout_falls_back_within_the_bound(tmp_path: Path) -> None:
    with running_fake_anthropic() as fake:
        fake.listing.delay = 5.0
        with rhetor_on(tmp_path, anthropic=fake, models_discovery_timeout_s=0.3) as url:
            started = time.monotonic()
            r = httpx.get(f"{url}/v1/models", headers={"anthropic-version": "2023-06-01"}, timeout=10)
            assert time.monotonic() - started < 3.0
            assert r.status_code == 200 and sources(r.headers)["anthropic"] == "fallback"
            assert "anthropic/claude-sonnet-5-5" in [m["id"] for m in r.json()["data"]]  # the catalogue's


def test_concurrent_listings_share_one_fetch(tmp_path: Path) -> None:
    with running_fake_openai() as fake:
        fake.models = ["gpt-7-preview"]
        fake.listing.delay = 0.5
        with rhetor_on(tmp_path, openai=fake) as url:
            client = sdk(url)
            with ThreadPoolExecutor(8) as pool:
                lists = list(pool.map(lambda _: [m.id for m in client.models.list()], range(8)))
            assert all("openai/gpt-7-preview" in ids for ids in lists)
            assert fake.listing.requests == 1


def test_ttl_expires(tmp_path: Path) -> None:
    with running_fake_openai() as fake:
        with rhetor_on(tmp_path, openai=fake, models_cache_s=0.3) as url:
            client = sdk(url)
            client.models.list()
            client.models.list()
            assert fake.listing.requests == 1
            time.sleep(0.4)
            fake.models = [*fake.models, "gpt-7-preview"]
            assert "openai/gpt-7-preview" in [m.id for m in client.models.list()]
            assert fake.listing.requests == 2


def test_keyless_lists_the_catalogue_without_network(tmp_path: Path) -> None:
    with running_fake_openai() as fake, running_fake_ollama() as fl:
        fl.models = ["llama3:latest"]
        # the fake OpenAI's URL but no key: nothing is fetched from it
        with rhetor_on(tmp_path, ollama=fl, openai_base_url=fake.base_url) as url:
            r = httpx.get(f"{url}/v1/models")
            assert sources(r.headers)["openai"] == "catalogue" and sources(r.headers)["anthropic"] == "catalogue"
            assert "openai/gpt-5.4" in [m["id"] for m in r.json()["data"]]
            assert "x-rhetor-models-fallback" not in r.headers
            assert fake.listing.requests == 0


def test_deployments_list_live_or_as_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with running_fake_openai() as fake:
        fake.quirk = "vllm"
        fake.models = ["Qwen/Qwen3-8B"]
        path = tmp_path / "providers.yaml"
        path.write_text(f"""
deployments:
  - {{name: box, kind: openai, preset: vllm, base_url: {fake.base_url}, models: discover}}
  - {{name: fixed, kind: openai, base_url: {fake.base_url}, api_key: k-1, models: [gpt-4o]}}
  - {{name: down, kind: openai, preset: vllm, base_url: "http://127.0.0.1:9/v1", models: discover}}
""")
        with rhetor_on(tmp_path, providers_file=path) as url:
            r = httpx.get(f"{url}/v1/models")
            ids = {m["id"] for m in r.json()["data"]}
            assert {"box/Qwen/Qwen3-8B", "fixed/gpt-4o"} <= ids
            got = sources(r.headers)
            assert (got["box"], got["fixed"], got["down"]) == ("live", "configured", "fallback")
            assert "down" in r.headers["x-rhetor-models-fallback"]
            assert fake.listing.requests == 1
            # /api/v1/models (and models() inside it) read the same cached listing; its one extra GET /models is
            # the local server's availability probe (RHETOR_AVAILABILITY_TTL_S), not a second listing
            native = httpx.get(f"{url}/api/v1/models").json()["models"]
            assert {"id": "box/Qwen/Qwen3-8B", "provider": "box", "model": "Qwen/Qwen3-8B", "available": True} in native
            assert fake.listing.requests == 2


def test_providers_command_says_where_models_come_from(tmp_path: Path) -> None:
    with running_fake_openai() as fake:
        fake.models = ["gpt-4o", "gpt-7-preview"]
        env = {**os.environ, "RHETOR_DATA_DIR": str(tmp_path), "OPENAI_API_KEY": OPENAI_KEY,
               "OPENAI_BASE_URL": fake.base_url, "OLLAMA_HOST": "http://127.0.0.1:9"}
        r = subprocess.run([sys.executable, "-m", "rhetor", "providers"], capture_output=True, text=True,
                           timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    lines = {line.split()[0]: line for line in r.stdout.splitlines()}
    assert "models=2 live" in lines["openai"] and "catalogue" in lines["anthropic"]
    assert "fallback" in lines["ollama"] and "could not reach" in lines["ollama"]
    assert OPENAI_KEY not in r.stdout + r.stderr and fake.listing.requests == 1


def test_parsers_read_the_vendor_shapes() -> None:
    assert openai_ids({"object": "list", "data": [{"id": "a"}, {"id": ""}, "x"]}) == ["a"]
    assert anthropic_ids({"data": [{"type": "model", "id": "c"}], "has_more": False}) == ["c"]
    assert ollama_ids({"models": [{"name": "llama3:latest", "model": "llama3:latest"}, {"model": "m"}]}) == [
        "llama3:latest", "m"]
    assert gemini_ids({"models": [{"name": "models/g", "supportedGenerationMethods": ["generateContent"]},
                                  {"name": "models/e", "supportedGenerationMethods": ["embedContent"]}]}) == ["g"]
    assert gemini_ids({}) == []  # an empty page has no `models`
