"""The render pool: untrusted template text is rendered in a few worker processes (rhetor.prompts.worker), never
on the event loop, each render under a wall-clock budget (`timeout_s`) and a memory budget (`memory_mb`).

A Python thread cannot be stopped and shares the GIL with the event loop; a process can be killed and has its
own memory limit. So: at most `workers` renders run at once (one per worker process); a render that does not
answer within the budget has its worker killed and is answered with a 400 `template_sandbox_violation` naming
the limit; a worker that dies (its memory limit) is replaced the same way. Workers start on first use (or on
`warm`), are reused, and exit when the pool closes or the server dies (their stdin closes). A render that waits
longer than `queue_wait_s` for a free worker is answered with a 503 (retryable), never queued forever.
Knows nothing of storage, HTTP or the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import struct
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rhetor.errors import RhetorError, TemplateRendererBusy, TemplateRenderError

log = logging.getLogger("rhetor.prompts")
_HEADER = struct.Struct("!I")
_MAX_FRAME = 16 * 1024 * 1024  # a reply holds at most ~1M characters of output (rhetor.prompts.sandbox)
_GRACE_S = 0.25  # the worker's own deadline fires first and answers cleanly; the kill is the backstop
_START_TIMEOUT_S = 30.0
_VIOLATION = "template_sandbox_violation"
_ROOT = str(Path(__file__).resolve().parents[2])  # where `rhetor` imports from, for the worker's PYTHONPATH


class _Worker:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        assert proc.stdin is not None and proc.stdout is not None
        self.stdin, self.stdout = proc.stdin, proc.stdout

    async def read(self) -> dict[str, Any]:
        (size,) = _HEADER.unpack(await self.stdout.readexactly(_HEADER.size))
        if size > _MAX_FRAME:
            raise ConnectionError(f"render worker sent a frame of {size} bytes")
        reply: dict[str, Any] = json.loads(await self.stdout.readexactly(size))
        return reply

    async def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        payload = json.dumps(request, ensure_ascii=False, default=str).encode("utf-8")
        self.stdin.write(_HEADER.pack(len(payload)) + payload)
        await self.stdin.drain()
        return await self.read()

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()


class RenderPool:
    """`await pool.render(text, variables, name=…)` → the rendered text, or a 400 / 503 from the error tree."""

    def __init__(self, *, workers: int = 2, timeout_s: float = 1.0, memory_mb: int = 256,
                 queue_wait_s: float | None = None) -> None:
        self.workers, self.timeout_s, self.memory_mb = workers, timeout_s, memory_mb
        self.queue_wait_s = queue_wait_s if queue_wait_s is not None else max(5.0, 5 * timeout_s)
        self._idle: list[_Worker] = []
        self._live: set[_Worker] = set()
        self._slots: asyncio.Semaphore | None = None
        self._reaping: set[asyncio.Task[Any]] = set()
        self._warming: asyncio.Task[None] | None = None
        self.kills = 0  # workers stopped for a budget (time, memory): visible to tests and metrics

    async def render(self, text: str, variables: Mapping[str, Any], *, name: str) -> str:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.workers)
        try:
            await asyncio.wait_for(self._slots.acquire(), self.queue_wait_s)
        except TimeoutError:
            raise TemplateRendererBusy(f"all {self.workers} template render workers stayed busy for "
                                       f"{self.queue_wait_s:g} s (RHETOR_TEMPLATE_WORKERS); retry shortly") from None
        try:
            worker = self._idle.pop() if self._idle else await self._spawn()
            reply = await self._ask(worker, {"text": text, "variables": dict(variables), "name": name}, name)
        finally:
            self._slots.release()
        error = reply.get("error")
        if error is not None:
            raise TemplateRenderError(str(error.get("message")), error_type=error.get("type") or None,
                                      param=error.get("param"))
        return str(reply["text"])

    async def _ask(self, worker: _Worker, request: dict[str, Any], name: str) -> dict[str, Any]:
        keep = False
        try:
            reply = await asyncio.wait_for(worker.ask(request), self.timeout_s + _GRACE_S)
            keep = not reply.get("exit")
            return reply
        except TimeoutError:
            raise TemplateRenderError(f"template {name!r} was stopped by the sandbox: the render exceeded the time "
                                      f"limit of {self.timeout_s:g} s (RHETOR_TEMPLATE_TIMEOUT_S)",
                                      error_type=_VIOLATION) from None
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            raise TemplateRenderError(f"template {name!r} was stopped by the sandbox: its render worker died, most "
                                      f"likely at the memory limit of {self.memory_mb} MB "
                                      "(RHETOR_TEMPLATE_MEMORY_MB)", error_type=_VIOLATION) from None
        finally:  # also on cancellation: a worker with a reply still in flight is never reused
            if keep and len(self._idle) < self.workers:
                self._idle.append(worker)
            else:
                self.kills += not keep
                self._retire(worker)

    async def _spawn(self) -> _Worker:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rhetor.prompts.worker", str(self.memory_mb), str(self.timeout_s),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env)
        worker = _Worker(proc)
        self._live.add(worker)
        try:
            ready = await asyncio.wait_for(worker.read(), _START_TIMEOUT_S)
            if not ready.get("ready"):
                raise ConnectionError("render worker did not say ready")
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            self._retire(worker)
            log.error("template render worker failed to start: %r", exc)
            raise TemplateRendererBusy("the template render worker could not start; retry shortly") from None
        return worker

    def _retire(self, worker: _Worker) -> None:
        self._live.discard(worker)
        worker.kill()
        task = asyncio.ensure_future(worker.proc.wait())  # reap it: no zombies
        self._reaping.add(task)
        task.add_done_callback(self._reaping.discard)

    def warm(self) -> None:
        """Start one worker in the background (when user templates exist), so the first render is not slow."""
        if self._idle or self._warming is not None:
            return

        async def start() -> None:
            try:
                worker = await self._spawn()
                if len(self._idle) < self.workers:
                    self._idle.append(worker)
                else:
                    self._retire(worker)
            except RhetorError:
                pass
            finally:
                self._warming = None

        self._warming = asyncio.ensure_future(start())

    async def aclose(self) -> None:
        if self._warming is not None:
            self._warming.cancel()
            with contextlib.suppress(asyncio.CancelledError, RhetorError):
                await self._warming
        for worker in list(self._live):
            self._retire(worker)
        self._idle.clear()
        if self._reaping:
            await asyncio.wait(list(self._reaping), timeout=5)


__all__ = ["RenderPool", "TemplateRendererBusy"]
