"""Legacy POST /v1/completions translated to chat on any provider (issue 11 item 5): the official SDK's
completions.create, plain and streamed, and a 400 naming each field the translation cannot honour."""

from __future__ import annotations

import openai
import pytest

from tests.fakes.stack import MATRIX, running_stack


def test_completions_on_every_provider_plain_and_streamed(tmp_path: object) -> None:
    with running_stack(tmp_path) as stack, openai.OpenAI(base_url=stack.url + "/v1", api_key="x",  # type: ignore[arg-type]
                                                         max_retries=0) as client:
        for provider, (model, text) in MATRIX.items():
            r = client.completions.create(model=model, prompt="Say hi", max_tokens=200, echo=True)
            assert r.object == "text_completion" and r.choices[0].text.startswith("Say hi" + text), provider
            assert r.choices[0].finish_reason == "stop" and r.usage is not None and r.usage.completion_tokens > 0
            pieces = list(client.completions.create(model=model, prompt="Say hi", max_tokens=200, stream=True,
                                                    stream_options={"include_usage": True}))
            assert "".join(p.choices[0].text for p in pieces if p.choices).startswith(text), provider
            assert pieces[-1].usage is not None and pieces[-1].usage.total_tokens > 0
        sent = stack.openai.requests[-1]
        assert sent["messages"] == [{"role": "user", "content": "Say hi"}] and sent["max_tokens"] == 200
        for field, value in (("suffix", "x"), ("logprobs", 2), ("best_of", 3), ("frequency_penalty", 1.0)):
            with pytest.raises(openai.BadRequestError) as err:
                client.completions.create(model="simulated/simulated-fast", prompt="hi", **{field: value})
            assert err.value.body["param"] == field, field  # type: ignore[index]
        with pytest.raises(openai.BadRequestError) as err:
            client.completions.create(model="simulated/simulated-fast", prompt=[1, 2, 3])
        assert err.value.body["param"] == "prompt"  # type: ignore[index]
