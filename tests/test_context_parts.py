"""Stored contexts keep images (rhetor.context.parts): a conversation continued by `x-rhetor-context-id` on the
OpenAI and Anthropic fronts re-sends a kept image to the upstream (translated for another vendor), and a large one
comes back as a typed placeholder note, never as its bytes. Through the official SDKs against a real Rhetor and
fake upstreams recording what they received."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from rhetor.context.parts import MAX_KEPT_IMAGE_BYTES
from tests.fakes.stack import MATRIX, Stack, running_stack

SMALL = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(Path(tmp_path_factory.mktemp("parts"))) as s:
        yield s


def oai(stack: Stack, context_id: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.url + "/v1", api_key="unused", max_retries=0,
                         default_headers={"x-rhetor-context-id": context_id})


def picture(data: str) -> list[Any]:
    return [{"role": "user", "content": [{"type": "text", "text": "What is in this picture?"},
                                         {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}}]}]


def stored(stack: Stack, context_id: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{stack.url}/api/v1/contexts/{context_id}", timeout=10)
    assert r.status_code == 200, r.text
    messages: list[dict[str, Any]] = r.json()["messages"]
    return messages


def test_a_kept_image_is_sent_again_when_the_conversation_goes_on(stack: Stack) -> None:
    with oai(stack, "parts:small") as client:
        client.chat.completions.create(model=MATRIX["anthropic"][0], messages=picture(SMALL))
        image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": SMALL}}
        assert image in stack.anthropic.requests[-1]["messages"][-1]["content"]  # the single-message form keeps it
        client.chat.completions.create(model=MATRIX["anthropic"][0], messages=[{"role": "user", "content": "Colour?"}])
    first = stack.anthropic.requests[-1]["messages"][0]
    assert first["role"] == "user" and image in first["content"]
    assert {"type": "text", "text": "What is in this picture?"} in first["content"]
    user = stored(stack, "parts:small")[0]
    assert user["metadata"]["parts"] == [{"type": "image", "media_type": "image/png", "data": SMALL,
                                          "bytes": len(base64.b64decode(SMALL))}]


def test_a_kept_image_is_translated_for_another_vendor(stack: Stack) -> None:
    with anthropic.Anthropic(base_url=stack.url, api_key="unused", max_retries=0,
                             default_headers={"x-rhetor-context-id": "parts:url"}) as claude:
        claude.messages.create(model=MATRIX["anthropic"][0], max_tokens=50, messages=[{"role": "user", "content": [
            {"type": "text", "text": "Describe it"},
            {"type": "image", "source": {"type": "url", "url": "https://x.test/cat.png"}}]}])
    with oai(stack, "parts:url") as client:
        client.chat.completions.create(model=MATRIX["openai"][0], messages=[{"role": "user", "content": "And?"}])
    first = next(m for m in stack.openai.requests[-1]["messages"] if m["role"] != "system")
    assert first["role"] == "user"
    assert {"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}} in first["content"]


def test_a_large_image_is_a_placeholder_in_the_store_and_a_note_to_the_model(stack: Stack) -> None:
    big = base64.b64encode(os.urandom(MAX_KEPT_IMAGE_BYTES + 1024)).decode()
    with oai(stack, "parts:big") as client:
        client.chat.completions.create(model=MATRIX["anthropic"][0], messages=picture(big))
        client.chat.completions.create(model=MATRIX["anthropic"][0], messages=[{"role": "user", "content": "Again?"}])
    first = stack.anthropic.requests[-1]["messages"][0]
    text = first["content"] if isinstance(first["content"], str) else "".join(
        b.get("text", "") for b in first["content"])
    assert "What is in this picture?" in text and "[image not kept by Rhetor: image/png" in text
    assert "sha256:" in text and not any(isinstance(b, dict) and b.get("type") == "image"
                                         for b in (first["content"] if isinstance(first["content"], list) else []))
    part = stored(stack, "parts:big")[0]["metadata"]["parts"][0]
    assert part["bytes"] == MAX_KEPT_IMAGE_BYTES + 1024 and part["ref"].startswith("sha256:") and "data" not in part
