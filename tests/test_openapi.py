"""The OpenAPI document: it describes every HTTP route of the app (and nothing it does not serve), is a valid
OpenAPI 3.1 document (openapi-spec-validator), renders at /docs, and a bounded schemathesis run against a real
Rhetor (simulated provider, no delay) finds no 5xx and no response outside its documented statuses, media types
and schemas. Bounded for CI: a few examples per operation and a total time budget; /shutdown is left out.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.openapi.utils import get_openapi

from rhetor.api.app import create_app
from rhetor.api.openapi.builder import undescribed, unserved
from rhetor.api.openapi.governance import BudgetPut, KeyBody
from tests.conftest import running_rhetor
from tests.conftest import test_settings as settings_for

NOT_RUN = ("/shutdown", "/api/shutdown")  # would stop the server under test (tests/test_lifecycle.py covers it)
# Per operation and generation mode, and for the whole run; a deeper run: RHETOR_SCHEMATHESIS_EXAMPLES=50 and
# RHETOR_SCHEMATHESIS_BUDGET_S=900.
EXAMPLES = int(os.environ.get("RHETOR_SCHEMATHESIS_EXAMPLES", "6"))
BUDGET_S = float(os.environ.get("RHETOR_SCHEMATHESIS_BUDGET_S", "80"))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_rhetor(settings_for(tmp_path_factory.mktemp("openapi"))) as url:
        yield url


def test_every_route_is_described_and_every_description_served(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path))
    doc = app.openapi()
    assert undescribed(app, doc) == []
    assert unserved(app) == []
    # Before: FastAPI alone saw none of the plain Starlette routes, so /openapi.json listed no paths.
    assert get_openapi(title="Rhetor", version="0", routes=app.routes)["paths"] == {}
    operations = sum(len(item) for item in doc["paths"].values())
    assert operations >= 70, operations
    for front in ("/api/v1/chat", "/message", "/v1/chat/completions", "/v1/messages", "/v1/responses",
                  "/api/v1/templates", "/api/v1/contexts/{context_id}", "/api/v1/memory/search", "/api/v1/usage",
                  "/health", "/metrics"):
        assert front in doc["paths"], front


def test_the_document_is_valid_openapi(tmp_path: Path) -> None:
    validate = pytest.importorskip("openapi_spec_validator", reason="openapi-spec-validator is in the test extra "
                                                                    "(pip install 'rhetor[test]')").validate
    doc = create_app(settings_for(tmp_path)).openapi()
    validate(doc)  # raises on any violation of the OpenAPI 3.1 schema (duplicate operation ids included)
    assert doc["openapi"] == "3.1.0"
    chat = doc["paths"]["/api/v1/chat"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"]["$ref"].startswith("#/components/schemas/")
    assert {"200", "400", "401", "422", "502"} <= set(chat["responses"])
    # each front's errors are in its own callers' shape
    refs = {path: doc["paths"][path]["post"]["responses"]["400"]["content"]["application/json"]["schema"]
            for path in ("/v1/chat/completions", "/v1/messages", "/api/v1/chat")}
    assert refs["/v1/chat/completions"]["$ref"].endswith("/OpenAIError")
    assert refs["/v1/messages"]["$ref"].endswith("/AnthropicError")
    assert refs["/api/v1/chat"]["$ref"].endswith("/NativeError")


def test_governance_bodies_are_the_models_the_handlers_use() -> None:
    from rhetor.governance.budget import Budget
    from rhetor.governance.keys import KeySpec

    assert issubclass(BudgetPut, Budget) and issubclass(KeyBody, KeySpec)
    assert set(BudgetPut.model_fields) == set(Budget.model_fields)
    assert set(KeyBody.model_fields) == set(KeySpec.model_fields)
    # The documented bounds are the enforced ones: a name the pattern refuses is refused by the handlers' model.
    for bad in ({"name": "-x"}, {"rpm": 0}, {"nope": 1}):
        with pytest.raises(ValueError):
            KeySpec.model_validate(bad)
        with pytest.raises(ValueError):
            KeyBody.model_validate(bad)


def test_openapi_json_and_docs_are_served(served: str) -> None:
    with httpx.Client(base_url=served, timeout=10) as client:
        doc = client.get("/openapi.json").json()
        assert "/v1/messages" in doc["paths"]
        page = client.get("/docs")
        assert page.status_code == 200 and "swagger-ui" in page.text and "/openapi.json" in page.text


def fuzz(url: str, *, budget_s: float, headers: dict[str, str] | None = None,
         tags: frozenset[str] | None = None) -> tuple[list[str], list[str], list[str]]:
    """(failures, operations run, operations selected): schemathesis over the served document, bounded."""
    schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the test extra (pip install "
                                                              "'rhetor[test]')")
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    schema = schemathesis.openapi.from_url(url + "/openapi.json", headers=headers or {})
    operations = [op for op in (result.ok() for result in schema.get_all_operations())
                  if op.path not in NOT_RUN and (tags is None or tags & set(op.definition.raw.get("tags", ())))]
    failures: list[str] = []
    ran: list[str] = []
    started = time.monotonic()
    for op in operations:
        if time.monotonic() - started > budget_s:
            break
        # Negative data (bodies that break their schema) where there is a body to break; elsewhere it cannot be made.
        modes = [schemathesis.GenerationMode.POSITIVE]
        if op.definition.raw.get("requestBody"):
            modes.append(schemathesis.GenerationMode.NEGATIVE)
        for mode in modes:
            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            def call(case: Any) -> None:
                case.call_and_validate(checks=checks, timeout=10, headers=headers)

            try:
                call()
            except (Exception, BaseExceptionGroup) as exc:  # collect every operation's failures, report them all
                failures.append(f"{op.method.upper()} {op.path} ({mode.value}): {str(exc)[:700]}")
        ran.append(f"{op.method.upper()} {op.path}")
    return failures, ran, [f"{op.method.upper()} {op.path}" for op in operations]


@pytest.mark.timeout(240)  # the run is bounded by BUDGET_S; the default 60 s is per ordinary test
def test_schemathesis_finds_no_server_error_and_no_schema_violation(served: str) -> None:
    failures, ran, every = fuzz(served, budget_s=BUDGET_S)
    assert len(every) >= 70, every
    assert not failures, f"{len(failures)} failing (of {len(ran)} operations run):\n\n" + "\n\n".join(failures)
    assert ran == every, f"the time budget ran out before {sorted(set(every) - set(ran))}"


@pytest.mark.timeout(240)
def test_schemathesis_with_the_admin_key_over_keys_budgets_and_templates(tmp_path: Path) -> None:
    """With RHETOR_ADMIN_KEY and caller keys configured and the admin key presented, the admin routes answer for real
    (keys created, rotated, revoked; budgets written) and still match the document."""
    settings = settings_for(tmp_path, admin_key="admin-secret", api_keys=("caller-secret",))
    with running_rhetor(settings) as url:
        admin = {"Authorization": "Bearer admin-secret"}
        failures, ran, every = fuzz(url, budget_s=BUDGET_S / 2, headers=admin,
                                    tags=frozenset({"keys", "budgets", "templates", "governance"}))
        made = httpx.get(url + "/api/v1/keys?include_revoked=true", headers=admin, timeout=10).json()
    assert made["total"] >= 1, made  # the generated definitions really created keys
    assert len(every) >= 20, every
    assert not failures, f"{len(failures)} failing (of {len(ran)} operations run):\n\n" + "\n\n".join(failures)
    assert ran == every, f"the time budget ran out before {sorted(set(every) - set(ran))}"


def test_legacy_stream_with_an_empty_messages_list_is_a_422_naming_it(served: str) -> None:
    """Found by schemathesis: `POST /stream {"messages": []}` reached the gateway with no message (a 500)."""
    with httpx.Client(base_url=served, timeout=10) as client:
        for body in ({"messages": []}, {"message": "hi", "messages": []}):
            reply = client.post("/stream", json=body)
            assert reply.status_code == 422, (body, reply.status_code, reply.text)
            assert reply.json()["error"]["param"] == "messages"
