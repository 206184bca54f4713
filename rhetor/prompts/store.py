"""The template store: built-ins (data files in rhetor/prompts/builtin, version 0) merged with user versions
(persisted in `templates.db`, versions 1, 2, …), all served from memory. Also renders component system prompts.

Reads never touch the disk: every version is loaded at `open` and kept in memory; writes go to SQLite first,
then to memory. Built-in versions are our own text: they compile once and render in-process. User versions are
untrusted text: they render in the worker processes of rhetor.prompts.pool, under the time and memory budgets,
never on the event loop. Rendered component prompts are cached per component; any write clears that cache, so
a chat request costs a dict lookup.
A built-in can be overridden (PUT adds user versions) but not destroyed: DELETE drops the user versions and
the built-in is active again. Another process or replica sharing the store (PostgreSQL) is seen after `reload()`
(the hook a change notice calls); a version number it took first is a 409. Knows nothing of HTTP or the gateway.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rhetor.errors import InvalidRequestError, TemplateConflictError, TemplateNotFoundError
from rhetor.prompts.persist import TemplateDB, TemplateRows
from rhetor.prompts.pool import RenderPool
from rhetor.prompts.templates import (
    BUILTIN_VERSION,
    Version,
    bind,
    make_version,
    parse_metadata,
    parse_variables,
    valid_id,
    validate_id,
)

if TYPE_CHECKING:
    from jinja2.environment import Template

log = logging.getLogger("rhetor.prompts")
GENERIC = "system.generic"  # the prompt of a component that has none of its own; it reads `name`
_MAX_CACHED_PROMPTS = 1024  # components are caller-chosen strings: bound the cache
_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class Rendered:
    template_id: str
    version: int
    text: str
    use_as: str


@cache
def builtin_templates() -> dict[str, Version]:
    """Every rhetor/prompts/builtin/<id>.json, validated; a bad file is a bug in this package and fails loudly."""
    out: dict[str, Version] = {}
    folder = resources.files("rhetor.prompts").joinpath("builtin")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".json"):
            continue
        data = json.loads(entry.read_text("utf-8"))
        template_id = validate_id(data["id"])
        assert entry.name == f"{template_id}.json", f"{entry.name} must be named after its id {template_id!r}"
        out[template_id] = make_version(template_id, BUILTIN_VERSION, text=data["text"],
                                        variables=data.get("variables"), metadata=data.get("metadata"),
                                        created_at="", source="builtin")
    return out


def _now() -> str:
    return datetime.now(UTC).isoformat()


class TemplateStore:
    """Templates by id. `path=None` serves the built-ins only (nothing persists)."""

    def __init__(self, path: Path | None = None, *, pool: RenderPool | None = None,
                 rows: TemplateRows | None = None) -> None:
        self.pool = pool if pool is not None else RenderPool()  # starts no process until a user version renders
        # user versions persist in `rows` when given (PostgreSQL: rhetor.storage.pg_templates), else templates.db
        self._db: TemplateRows | None = rows if rows is not None else TemplateDB(path) if path is not None else None
        self._user: dict[str, dict[int, Version]] = {}
        self._active: dict[str, int] = {}
        self._compiled: dict[tuple[str, int], Template] = {}
        self._prompts: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self.on_change: Callable[[], None] | None = None  # after this process wrote (rhetor.storage.redis_shared)

    @cached_property
    def _builtin(self) -> dict[str, Version]:
        """The built-ins, parsed (with Jinja2, imported then) on first use rather than at start-up: the first request
        that reads a template or a component prompt pays it once, ~130M instructions (~40 ms: Jinja2's import ~100M,
        the parse ~30M; callgrind); later reads are a plain attribute (cached_property)."""
        return builtin_templates()

    async def open(self) -> None:
        if self._db is None:
            return
        await self._db.open()
        await self.reload()

    async def reload(self) -> None:
        """Re-read every user version from the store: the hook for a change made by another replica or worker
        (a template created there is served here after this). Reads stay in memory."""
        async with self._lock:
            await self._load()

    async def _load(self) -> None:
        if self._db is None:
            return
        rows, active = await self._db.load()
        user: dict[str, dict[int, Version]] = {}
        for tid, number, text, variables, metadata, created in rows:
            try:
                version = Version(tid, number, text, parse_variables(variables), parse_metadata(metadata), created,
                                  "user")
            except InvalidRequestError as exc:  # written by an older release with looser rules: skip, say so
                log.warning("skipping stored template %s version %d: %s", tid, number, exc.message)
                continue
            user.setdefault(tid, {})[number] = version
        self._user = user
        self._active = {tid: n for tid, n in active.items() if n in self._versions(tid)}
        self._prompts.clear()
        if self._user:
            self.pool.warm()

    async def close(self) -> None:
        await self.pool.aclose()
        if self._db is not None:
            await self._db.close()

    # -- reads (memory only) ----------------------------------------------------------------------------
    def _versions(self, template_id: str) -> dict[int, Version]:
        out = {BUILTIN_VERSION: self._builtin[template_id]} if template_id in self._builtin else {}
        out.update(self._user.get(template_id, {}))
        return out

    def exists(self, template_id: str) -> bool:
        return template_id in self._builtin or template_id in self._user

    def active_version(self, template_id: str) -> int:
        versions = self._versions(template_id)
        if not versions:
            raise TemplateNotFoundError(f"no template {template_id!r}")
        return self._active.get(template_id, max(versions) if template_id not in self._builtin else BUILTIN_VERSION)

    def get(self, template_id: str, version: int | None = None) -> Version:
        versions = self._versions(template_id)
        if not versions:
            raise TemplateNotFoundError(f"no template {template_id!r}")
        number = self.active_version(template_id) if version is None else version
        if number not in versions:
            raise TemplateNotFoundError(f"template {template_id!r} has no version {number}; it has "
                                        f"{', '.join(map(str, sorted(versions)))}")
        return versions[number]

    def versions(self, template_id: str) -> list[Version]:
        versions = self._versions(template_id)
        if not versions:
            raise TemplateNotFoundError(f"no template {template_id!r}")
        return [versions[n] for n in sorted(versions)]

    def describe(self, template_id: str) -> dict[str, Any]:
        active = self.get(template_id)
        numbers = sorted(self._versions(template_id))
        return {**active.to_dict(), "active_version": active.version, "versions": numbers,
                "builtin": template_id in self._builtin, "overridden": template_id in self._builtin and
                bool(self._user.get(template_id))}

    def list(self, *, component: str | None = None, task: str | None = None) -> list[dict[str, Any]]:
        out = []
        for tid in sorted(set(self._builtin) | set(self._user)):
            info = self.describe(tid)
            meta = info["metadata"]
            if (component is None or meta.get("component") == component) and (task is None or meta.get("task") == task):
                out.append(info)
        return out

    # -- writes -----------------------------------------------------------------------------------------
    async def create(self, template_id: str, *, text: Any, variables: Any = None, metadata: Any = None) -> Version:
        validate_id(template_id)
        async with self._lock:
            if self.exists(template_id):
                hint = " (a built-in: PUT adds a version that overrides it)" if template_id in self._builtin else ""
                raise TemplateConflictError(f"template {template_id!r} already exists{hint}")
            return await self._add(template_id, 1, text, variables, metadata, activate=True)

    async def put(self, template_id: str, *, text: Any = _UNSET, variables: Any = _UNSET, metadata: Any = _UNSET,
                  activate: bool = True, active_version: int | None = None) -> Version:
        """Add a version (absent `variables`/`metadata` are taken from the active version), or with only
        `active_version` switch the active version. Returns the version now active."""
        validate_id(template_id)
        async with self._lock:
            versions = self._versions(template_id)
            if active_version is not None:
                if text is not _UNSET:
                    raise InvalidRequestError("give either 'text' (a new version) or 'active_version' (switch), "
                                              "not both", param="active_version")
                if active_version not in versions:
                    raise TemplateNotFoundError(f"template {template_id!r} has no version {active_version}")
                await self._set_active(template_id, active_version)
                return versions[active_version]
            if text is _UNSET:
                raise InvalidRequestError("text is required (or active_version to switch versions)", param="text")
            base = self.get(template_id) if versions else None
            if variables is _UNSET:
                variables = {v.name: v.to_dict() for v in base.variables} if base else None
            if metadata is _UNSET:
                metadata = dict(base.metadata) if base else None
            number = max([*versions, 0]) + 1
            return await self._add(template_id, number, text, variables, metadata, activate=activate or not versions)

    async def delete(self, template_id: str) -> dict[str, Any]:
        validate_id(template_id)
        async with self._lock:
            if not self.exists(template_id):
                raise TemplateNotFoundError(f"no template {template_id!r}")
            removed = sorted(self._user.get(template_id, {}))
            if self._db is not None:
                await self._db.delete(template_id)
            self._user.pop(template_id, None)
            self._active.pop(template_id, None)
            self._forget(template_id)
        if template_id in self._builtin:
            return {"id": template_id, "deleted": False, "builtin": True, "removed_versions": removed,
                    "active_version": BUILTIN_VERSION,
                    "message": ("built-in templates cannot be deleted; its user versions were removed and the "
                                "built-in is active again") if removed else
                               "built-in templates cannot be deleted; it has no user versions to remove"}
        return {"id": template_id, "deleted": True, "builtin": False, "removed_versions": removed}

    async def _add(self, template_id: str, number: int, text: Any, variables: Any, metadata: Any,
                   *, activate: bool) -> Version:
        version = make_version(template_id, number, text=text, variables=variables, metadata=metadata,
                               created_at=_now(), source="user")
        from rhetor.prompts.sandbox import compile_text

        compile_text(version.text, name=template_id)  # syntax and forbidden tags; user text renders in the pool
        active = number if activate else self.active_version(template_id)
        if self._db is not None:
            row = (template_id, number, version.text, {v.name: v.to_dict() for v in version.variables},
                   dict(version.metadata), version.created_at)
            try:
                await self._db.add_version(row, active, version.created_at)
            except TemplateConflictError:
                await self._load()  # another replica wrote this version first: serve what the store holds
                raise
        self._user.setdefault(template_id, {})[number] = version
        self._active[template_id] = active
        self._prompts.clear()
        self.pool.warm()
        self._changed()
        return version

    async def _set_active(self, template_id: str, number: int) -> None:
        if self._db is not None:
            await self._db.set_active(template_id, number, _now())
        self._active[template_id] = number
        self._prompts.clear()
        self._changed()

    def _forget(self, template_id: str) -> None:
        self._prompts.clear()
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    # -- rendering --------------------------------------------------------------------------------------
    async def render(self, template_id: str, variables: Mapping[str, Any] | None = None,
                     version: int | None = None) -> Rendered:
        """Render a version (the active one by default). 404 if absent; 400 for variables or render errors
        (`template_sandbox_violation` when a budget was exceeded); 503 if every render worker stayed busy."""
        chosen = self.get(template_id, version)
        values = bind(chosen, variables)
        return Rendered(template_id, chosen.version, await self._render(chosen, values), chosen.use_as)

    async def render_request(self, template_id: str, version: int | None,
                             variables: Mapping[str, Any] | None) -> Rendered:
        """`render` for a chat request: an unknown template or version is the caller's bad field (400)."""
        validate_id(template_id, "template_id")
        try:
            return await self.render(template_id, variables, version)
        except TemplateNotFoundError as exc:
            raise InvalidRequestError(exc.message, param="template_version" if version is not None and
                                      self.exists(template_id) else "template_id") from None

    async def _render(self, version: Version, values: Mapping[str, Any]) -> str:
        if version.source != "builtin":
            return await self.pool.render(version.text, values, name=version.template_id)
        return self._render_builtin(version, values)

    def _render_builtin(self, version: Version, values: Mapping[str, Any]) -> str:
        """Our own text, compiled once: microseconds, so it renders in-process (bounded by the sandbox anyway)."""
        from rhetor.prompts.sandbox import compile_text, render

        key = (version.template_id, version.version)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = compile_text(version.text, name=version.template_id)
        return render(compiled, values, name=version.template_id)

    def _prompt_source(self, component: str) -> tuple[Version | None, dict[str, Any]]:
        tid = f"system.{component}"
        if not (valid_id(tid) and self.exists(tid)):
            tid = GENERIC
        if not self.exists(tid):
            return None, {}
        chosen = self.get(tid)
        given = {"name": component.capitalize(), "component": component}
        declared = {v.name for v in chosen.variables}
        return chosen, bind(chosen, {k: v for k, v in given.items() if k in declared})

    def _remember(self, component: str, text: str) -> str:
        if len(self._prompts) < _MAX_CACHED_PROMPTS:
            self._prompts[component] = text
        return text

    def builtin_component_prompt(self, component: str | None) -> str | None:
        """`component_prompt` for a store whose prompts are all built-ins (synchronous; no worker involved)."""
        if not component:
            return None
        hit = self._prompts.get(component)
        if hit is not None:
            return hit
        chosen, values = self._prompt_source(component)
        if chosen is None:
            return self._remember(component, f"You are {component.capitalize()}, a Tekton AI component.")
        if chosen.source != "builtin":
            raise RuntimeError(f"{chosen.template_id} is a user version: use `await component_prompt(...)`")
        return self._remember(component, self._render_builtin(chosen, values))

    async def component_prompt(self, component: str | None) -> str | None:
        """The rendered system prompt of a component (`system.<component>`, else `system.generic`); cached."""
        if not component:
            return None
        hit = self._prompts.get(component)
        if hit is not None:
            return hit
        chosen, values = self._prompt_source(component)
        if chosen is None:
            return self._remember(component, f"You are {component.capitalize()}, a Tekton AI component.")
        return self._remember(component, await self._render(chosen, values))

    async def system_prompt(self, component: str | None, *caller_parts: str | None) -> str | None:
        """The combination rule: the component's prompt first, then each caller part, joined by a blank line."""
        parts = [p for p in (await self.component_prompt(component), *caller_parts) if p]
        return "\n\n".join(parts) if parts else None

    def builtin_system_prompt(self, component: str | None, *caller_parts: str | None) -> str | None:
        """`system_prompt` over the built-ins only (synchronous)."""
        parts = [p for p in (self.builtin_component_prompt(component), *caller_parts) if p]
        return "\n\n".join(parts) if parts else None


__all__ = ["GENERIC", "Rendered", "TemplateStore", "builtin_templates"]
