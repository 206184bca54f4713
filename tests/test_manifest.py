"""tekton_component.json: valid against its JSON Schema, and in agreement with the code it describes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema

from hermes_integration import CAPABILITIES
from rhetor import __version__
from rhetor.api.app import create_app
from rhetor.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def load(name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((ROOT / name).read_text())
    return data


def test_manifest_is_valid() -> None:
    schema = load("tekton_component.schema.json")
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(load("tekton_component.json"))


def test_schema_rejects_a_broken_manifest() -> None:
    schema, manifest = load("tekton_component.schema.json"), load("tekton_component.json")
    for broken in ({**manifest, "port": "8003"}, {k: v for k, v in manifest.items() if k != "commands"},
                   {**manifest, "surprise": 1}):
        errors = list(jsonschema.Draft202012Validator(schema).iter_errors(broken))
        assert errors


def test_manifest_agrees_with_the_code(tmp_path: Path) -> None:
    m = load("tekton_component.json")
    assert m["version"] == __version__ and m["id"] == "rhetor"
    assert m["port"] == Settings().port and m["port_env"] == "RHETOR_PORT"
    assert m["capabilities"] == CAPABILITIES
    paths = {getattr(r, "path", None) for r in create_app(Settings(data_dir=tmp_path)).routes}
    endpoints = m["endpoints"]
    assert isinstance(endpoints, dict)
    for key in ("health", "ready", "shutdown", "metrics"):  # (/ws is exercised by the WebSocket tests)
        assert endpoints[key] in paths, key
    commands = m["commands"]
    assert isinstance(commands, dict)
    for key in ("launch", "stop", "status", "verify", "foreground"):
        assert os.access(ROOT / str(commands[key]), os.X_OK), key
