"""Template routes and templated chat over real HTTP against a real, keyless Rhetor."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest

from rhetor.settings import Settings

T = "/api/v1/templates"
GREETING = {"id": "team.greeting", "text": "Hello {{ who }}, you have {{ n }} task{{ 's' if n != 1 }}.",
            "variables": {"who": "string", "n": {"type": "integer", "default": 1}},
            "metadata": {"component": "metis", "task": "greet", "description": "a greeting", "use_as": "user"}}


def ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err: dict[str, Any] = r.json()["error"]
    return err


def test_version_history_and_active_version(simulated_rhetor: str) -> None:
    with httpx.Client(base_url=simulated_rhetor) as c:
        created = ok(c.post(T, json=GREETING), 201)
        assert created["active_version"] == 1 and created["versions"] == [1] and created["builtin"] is False
        assert error(c.post(T, json=GREETING), 409)["type"] == "conflict"

        v2 = ok(c.put(f"{T}/team.greeting", json={"text": "Hi {{ who }} ({{ n }})"}))
        assert v2["active_version"] == 2 and v2["version_written"] == 2
        assert v2["variables"]["n"] == {"type": "integer", "required": False, "default": 1}  # carried over
        v3 = ok(c.put(f"{T}/team.greeting", json={"text": "Yo {{ who }}", "activate": False}))
        assert v3["active_version"] == 2 and v3["version_written"] == 3

        history = ok(c.get(f"{T}/team.greeting/versions"))
        assert [(v["version"], v["active"]) for v in history["versions"]] == [(1, False), (2, True), (3, False)]
        assert history["versions"][0]["text"] == GREETING["text"]  # versions are immutable

        def rendered(**body: Any) -> str:
            text: str = ok(c.post(f"{T}/team.greeting/render", json=body))["text"]
            return text

        assert rendered(variables={"who": "Ada"}) == "Hi Ada (1)"
        assert rendered(variables={"who": "Ada", "n": 2}, version=1) == "Hello Ada, you have 2 tasks."
        assert rendered(variables={"who": "Ada"}, version=3) == "Yo Ada"

        ok(c.put(f"{T}/team.greeting", json={"active_version": 1}))
        assert rendered(variables={"who": "Bo"}) == "Hello Bo, you have 1 task."
        assert ok(c.get(f"{T}/team.greeting", params={"version": 3}))["active"] is False
        assert error(c.get(f"{T}/team.greeting", params={"version": 9}), 404)["type"] == "not_found"
        assert error(c.put(f"{T}/team.greeting", json={"active_version": 9}), 404)["type"] == "not_found"

        listed = ok(c.get(T, params={"component": "metis", "task": "greet"}))
        assert [t["id"] for t in listed["templates"]] == ["team.greeting"]

        gone = ok(c.delete(f"{T}/team.greeting"))
        assert gone["deleted"] is True and gone["removed_versions"] == [1, 2, 3]
        assert error(c.get(f"{T}/team.greeting"), 404)["type"] == "not_found"
        assert error(c.post(f"{T}/team.greeting/render", json={}), 404)["type"] == "not_found"


def test_user_templates_persist_across_restarts(make_settings: Callable[..., Settings],
                                                 rhetor: Callable[..., AbstractContextManager[str]]) -> None:
    settings = make_settings()
    with rhetor(settings) as url:
        ok(httpx.post(f"{url}{T}", json=GREETING), 201)
        ok(httpx.put(f"{url}{T}/team.greeting", json={"text": "v2 {{ who }}"}))
        ok(httpx.put(f"{url}{T}/team.greeting", json={"active_version": 1}))
        ok(httpx.put(f"{url}{T}/system.ergon", json={"text": "You are Ergon, overridden."}))
    with rhetor(settings) as url:
        t = ok(httpx.get(f"{url}{T}/team.greeting"))
        assert t["versions"] == [1, 2] and t["active_version"] == 1 and t["text"] == GREETING["text"]
        e = ok(httpx.get(f"{url}{T}/system.ergon"))
        assert e["overridden"] is True and e["active_version"] == 1 and e["text"] == "You are Ergon, overridden."
    assert (settings.data_dir / "templates.db").exists()


@pytest.mark.parametrize(("body", "status", "field"), [
    ({**GREETING, "id": "../../etc/passwd"}, 400, "id"),
    ({**GREETING, "id": "Upper"}, 400, "id"),
    ({**GREETING, "text": "{% if %}"}, 400, "text"),
    ({**GREETING, "text": "{% include '/etc/passwd' %}"}, 400, "text"),
    ({**GREETING, "text": "{{ who }} {{ whom }}"}, 400, "variables.whom"),
    ({**GREETING, "variables": {"who": "str"}}, 400, "variables.who.type"),
    ({**GREETING, "metadata": {"use_as": "tool"}}, 400, "metadata.use_as"),
    ({**GREETING, "text": 42}, 422, "text"),
    ({**GREETING, "surprise": 1}, 422, "surprise"),
])
def test_bad_templates_are_refused_naming_the_field(simulated_rhetor: str, body: dict[str, Any], status: int,
                                                    field: str) -> None:
    err = error(httpx.post(f"{simulated_rhetor}{T}", json=body), status)
    assert err["param"] == field
    assert httpx.get(f"{simulated_rhetor}{T}/{body['id']}").status_code in (400, 404)  # nothing was stored


def test_render_errors_are_400_never_500(simulated_rhetor: str) -> None:
    with httpx.Client(base_url=simulated_rhetor) as c:
        ok(c.post(T, json={"id": "calc", "text": "{{ a / b }} {{ items[5] }}",
                           "variables": {"a": "number", "b": "number", "items": {"type": "list", "default": []}}}),
           201)
        ok(c.post(T, json={"id": "escape", "text": "{{ x.__class__.__mro__ }}", "variables": {"x": "string"}}), 201)
        cases = [
            ("calc", {}, "variables.a", "missing variable 'a'"),
            ("calc", {"a": 1, "b": "2"}, "variables.b", "must be of type number, got string"),
            ("calc", {"a": 1, "b": 2, "c": 3}, "variables.c", "unknown variable 'c'"),
            ("calc", {"a": 1, "b": 0}, "variables", "ZeroDivisionError"),
            ("calc", {"a": 1, "b": 2}, "variables", "no element 5"),
        ]
        for tid, variables, param, needle in cases:
            err = error(c.post(f"{T}/{tid}/render", json={"variables": variables}), 400)
            assert err["param"] == param and needle in err["message"], err
        err = error(c.post(f"{T}/escape/render", json={"variables": {"x": "s"}}), 400)
        assert err["type"] == "template_sandbox_violation" and "unsafe" in err["message"]
        assert error(c.post(f"{T}/calc/render", content=b"{nope"), 422)["param"] == "body"
        assert error(c.get(f"{T}/Not_Valid"), 400)["param"] == "id"


def test_builtins_can_be_overridden_but_not_destroyed(simulated_rhetor: str) -> None:
    with httpx.Client(base_url=simulated_rhetor) as c:
        builtin = ok(c.get(f"{T}/task.summarize"))
        assert builtin["builtin"] is True and builtin["active_version"] == 0 and builtin["source"] == "builtin"
        assert error(c.post(T, json={"id": "task.summarize", "text": "x"}), 409)["message"].endswith(
            "(a built-in: PUT adds a version that overrides it)")
        not_overridden = ok(c.delete(f"{T}/task.summarize"))
        assert not_overridden["deleted"] is False and not_overridden["removed_versions"] == []

        ok(c.put(f"{T}/task.summarize", json={"text": "TL;DR {{ text }} in {{ max_words }}"}))
        assert ok(c.post(f"{T}/task.summarize/render",
                         json={"variables": {"text": "abc"}}))["text"] == "TL;DR abc in 100"
        reset = ok(c.delete(f"{T}/task.summarize"))
        assert reset["deleted"] is False and reset["builtin"] is True and reset["removed_versions"] == [1]
        assert reset["active_version"] == 0 and "cannot be deleted" in reset["message"]
        again = ok(c.get(f"{T}/task.summarize"))
        assert again["text"] == builtin["text"] and again["overridden"] is False


def _sse_text(body: str) -> str:
    frames = [json.loads(line[6:]) for line in body.splitlines()
              if line.startswith("data: ") and line != "data: [DONE]"]
    return "".join(f["chunk"] for f in frames)


def test_chat_with_a_user_template(simulated_rhetor: str) -> None:
    body = {"template_id": "task.summarize", "variables": {"text": "the minutes", "max_words": 20},
            "provider_id": "simulated", "model_id": "simulated-fast", "context_id": "tpl-user"}
    reply = ok(httpx.post(f"{simulated_rhetor}/api/v1/chat", json=body))
    assert reply["content"].startswith('I received your message: "Summarize the following in at most 20 words.')
    stored = ok(httpx.get(f"{simulated_rhetor}/api/v1/contexts/tpl-user"))
    assert stored["messages"][0]["content"].endswith("the minutes")  # the rendered text is the user turn
    streamed = httpx.post(f"{simulated_rhetor}/api/v1/chat/stream", json=body)
    assert _sse_text(streamed.text).startswith('I received your message: "Summarize the following')
    with_message = {**body, "message": "also this"}
    assert error(httpx.post(f"{simulated_rhetor}/api/v1/chat", json=with_message), 400)["param"] == "message"


def test_chat_with_a_system_template_and_errors(simulated_rhetor: str) -> None:
    with httpx.Client(base_url=simulated_rhetor, timeout=30) as c:
        ok(c.post(T, json={"id": "persona", "text": "Speak like {{ style }}.", "variables": {"style": "string"}}),
           201)
        base = {"message": "hi", "provider_id": "simulated", "model_id": "simulated-fast", "template_id": "persona"}
        reply = ok(c.post("/api/v1/chat", json={**base, "variables": {"style": "a pirate"},
                                                "system_prompt": "Be brief"}))
        assert 'The system prompt was: "Speak like a pirate.\n\nBe brief"' in reply["content"]
        for body, param in [({**base}, "variables.style"),
                            ({**base, "variables": {"style": 3}}, "variables.style"),
                            ({**base, "template_id": "nope"}, "template_id"),
                            ({**base, "template_id": "../x"}, "template_id"),
                            ({**base, "template_version": 7, "variables": {"style": "x"}}, "template_version"),
                            ({"template_id": "persona", "variables": {"style": "x"}}, "message")]:
            assert error(c.post("/api/v1/chat", json=body), 400)["param"] == param
        assert error(c.post("/api/v1/chat/stream", json=base), 400)["param"] == "variables.style"
        assert error(c.post("/api/v1/chat", json={"provider_id": "simulated"}), 422)


def test_templates_over_the_websocket(simulated_rhetor: str) -> None:
    from websockets.sync.client import connect

    with connect(simulated_rhetor.replace("http://", "ws://") + "/ws") as ws:
        ws.send(json.dumps({"type": "GENERATE", "request_id": "t1", "template_id": "task.summarize",
                            "variables": {"text": "over the socket"}, "provider_id": "simulated"}))
        reply = json.loads(ws.recv(timeout=10))
        assert reply["type"] == "RESPONSE" and reply["request_id"] == "t1"
        assert reply["content"].startswith('I received your message: "Summarize the following in at most 100')
        ws.send(json.dumps({"type": "GENERATE", "request_id": "t2", "template_id": "task.summarize",
                            "provider_id": "simulated"}))
        err = json.loads(ws.recv(timeout=10))
        assert err["type"] == "ERROR" and err["request_id"] == "t2" and "missing variable 'text'" in err["error"]
