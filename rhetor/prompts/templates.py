"""What a template is: an id, immutable numbered versions (text, typed variables, metadata), and the rules
that validate a new version and bind a caller's variables to it.

A variable is declared `{"type": "string"|"integer"|"number"|"boolean"|"list"|"object", "default"?: …,
"description"?: …}` (or just the type name); one without a default is required. Binding refuses a missing,
unknown or mistyped variable with a 400 naming it (`param: "variables.<name>"`). A version's text may only
read declared variables. Metadata: `component`, `task`, `description`, and `use_as` ("system" — the default —
or "user": what a chat request does with the rendered text).
Ids match `^[a-z0-9][a-z0-9_.-]{0,127}$`; they are keys, never paths. Knows nothing of storage or HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from rhetor.errors import InvalidRequestError

# rhetor.prompts.sandbox (Jinja2: ~100M instructions to import, ~4% of start-up) is imported by the functions that
# validate a version, on first use: the web app imports this module, a start serves /ready without Jinja2.

ID_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,127}$"
_ID = re.compile(ID_PATTERN)
_VAR = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
VAR_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,), "list": (list,),
    "object": (dict,),
}
METADATA_KEYS = ("component", "task", "description", "use_as")
Source = Literal["builtin", "user"]
BUILTIN_VERSION = 0  # a built-in is version 0; user versions of any template count from 1


def validate_id(value: Any, param: str = "id") -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise InvalidRequestError(f"{param} must match {ID_PATTERN} (lower-case letters, digits, '_', '.', '-'; "
                                  f"at most 128 characters), got {value!r}", param=param)
    return value


def valid_id(value: str) -> bool:
    return bool(_ID.match(value))


def type_ok(kind: str, value: Any) -> bool:
    if isinstance(value, bool) and kind != "boolean":
        return False
    return isinstance(value, VAR_TYPES[kind])


@dataclass(frozen=True, slots=True)
class Variable:
    name: str
    type: str
    required: bool
    default: Any = None
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type, "required": self.required}
        if not self.required:
            d["default"] = self.default
        if self.description:
            d["description"] = self.description
        return d


@dataclass(frozen=True, slots=True)
class Version:
    template_id: str
    version: int
    text: str
    variables: tuple[Variable, ...]
    metadata: dict[str, str] = field(hash=False)
    created_at: str
    source: Source

    @property
    def use_as(self) -> str:
        return self.metadata.get("use_as", "system")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.template_id, "version": self.version, "text": self.text,
                "variables": {v.name: v.to_dict() for v in self.variables}, "metadata": dict(self.metadata),
                "source": self.source, "created_at": self.created_at}


def parse_variables(raw: Any) -> tuple[Variable, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise InvalidRequestError("variables must be an object of name -> declaration", param="variables")
    from rhetor.prompts.sandbox import SANDBOX

    out: list[Variable] = []
    for name, decl in raw.items():
        param = f"variables.{name}"
        if not isinstance(name, str) or not _VAR.match(name) or name in SANDBOX.globals:
            raise InvalidRequestError(f"variable name {name!r} must be an identifier (letter first, at most 64 "
                                      "characters) and not a template built-in", param=param)
        spec = {"type": decl} if isinstance(decl, str) else decl
        if not isinstance(spec, Mapping):
            raise InvalidRequestError(f"{param} must be a type name or an object with 'type'", param=param)
        unknown = set(spec) - {"type", "default", "description", "required"}
        if unknown:
            raise InvalidRequestError(f"{param} has unknown keys {sorted(unknown)}; allowed: type, default, "
                                      "description, required", param=param)
        kind = spec.get("type")
        if kind not in VAR_TYPES:
            raise InvalidRequestError(f"{param}.type must be one of {', '.join(VAR_TYPES)}, got {kind!r}",
                                      param=f"{param}.type")
        description = spec.get("description", "")
        if not isinstance(description, str):
            raise InvalidRequestError(f"{param}.description must be a string", param=f"{param}.description")
        has_default = "default" in spec
        if has_default and not type_ok(kind, spec["default"]):
            raise InvalidRequestError(f"{param}.default must be of type {kind}", param=f"{param}.default")
        if spec.get("required") is True and has_default:
            raise InvalidRequestError(f"{param} cannot be required and have a default", param=param)
        if spec.get("required") is False and not has_default:
            raise InvalidRequestError(f"{param} is optional, so it needs a default", param=param)
        out.append(Variable(name, kind, not has_default, spec.get("default"), description))
    return tuple(out)


def parse_metadata(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidRequestError("metadata must be an object", param="metadata")
    out: dict[str, str] = {}
    for key, value in raw.items():
        if key not in METADATA_KEYS:
            raise InvalidRequestError(f"metadata.{key} is not a known key; allowed: {', '.join(METADATA_KEYS)}",
                                      param=f"metadata.{key}")
        if value is None:
            continue
        if not isinstance(value, str) or len(value) > 2000:
            raise InvalidRequestError(f"metadata.{key} must be a string of at most 2000 characters",
                                      param=f"metadata.{key}")
        out[key] = value
    if out.get("use_as", "system") not in ("system", "user"):
        raise InvalidRequestError("metadata.use_as must be 'system' or 'user'", param="metadata.use_as")
    return out


def make_version(template_id: str, version: int, *, text: Any, variables: Any, metadata: Any, created_at: str,
                 source: Source) -> Version:
    """Validate a whole version; raises a 400 naming the first bad field. Compiles the text once to check it."""
    from rhetor.prompts.sandbox import referenced_names

    if not isinstance(text, str) or not text.strip():
        raise InvalidRequestError("text must be a non-empty string", param="text")
    declared = parse_variables(variables)
    meta = parse_metadata(metadata)
    names = {v.name for v in declared}
    undeclared = sorted(referenced_names(text) - names)
    if undeclared:
        raise InvalidRequestError(f"the text reads undeclared variable(s) {', '.join(undeclared)}; declare them "
                                  "in 'variables'", param=f"variables.{undeclared[0]}")
    if template_id.startswith("system."):
        # Component system prompts render with no caller variables (only `name` and `component` are given).
        bare = [v.name for v in declared if v.required and v.name not in ("name", "component")]
        if bare:
            raise InvalidRequestError(f"system prompt templates render without caller variables, so "
                                      f"{bare[0]!r} needs a default", param=f"variables.{bare[0]}")
    return Version(template_id, version, text, declared, meta, created_at, source)


def bind(version: Version, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The caller's variables checked against the declarations, defaults filled in."""
    given = given or {}
    declared = {v.name: v for v in version.variables}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        allowed = ", ".join(declared) or "none"
        raise InvalidRequestError(f"unknown variable {unknown[0]!r} for template {version.template_id!r}; "
                                  f"declared: {allowed}", param=f"variables.{unknown[0]}")
    out: dict[str, Any] = {}
    for var in version.variables:
        if var.name in given:
            value = given[var.name]
            if not type_ok(var.type, value):
                raise InvalidRequestError(f"variable {var.name!r} must be of type {var.type}, got "
                                          f"{_json_type(value)}", param=f"variables.{var.name}")
            out[var.name] = value
        elif var.required:
            raise InvalidRequestError(f"missing variable {var.name!r} ({var.type}) for template "
                                      f"{version.template_id!r}", param=f"variables.{var.name}")
        else:
            out[var.name] = var.default
    return out


def _json_type(value: Any) -> str:
    for name, kinds in (("null", (type(None),)), ("boolean", (bool,)), ("integer", (int,)), ("number", (float,)),
                        ("string", (str,)), ("list", (list,)), ("object", (dict,))):
        if isinstance(value, kinds):
            return name
    return type(value).__name__


__all__ = ["BUILTIN_VERSION", "ID_PATTERN", "VAR_TYPES", "Variable", "Version", "bind", "make_version",
           "parse_metadata", "parse_variables", "valid_id", "validate_id"]
