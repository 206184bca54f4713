"""The task running this code, found without a system call: `this_task()`.

On CPython 3.11 `asyncio.current_task()` (and `get_running_loop()`, which it calls) asks the OS for the process id
on every call (the running loop is checked against a fork), a `getpid` system call: on a VM where system calls are
dear, one of the few a streamed request made (benchmarks/README.md, "Round 6, streaming syscalls"). asyncio keeps
the task each loop is stepping right now in one dict (`asyncio.tasks._current_tasks`, loop -> task, set and
cleared around each step): code running inside a task has its own loop in it, so when that dict holds one entry
(no other thread is stepping a task at this instant) the entry is this task. Otherwise, and on an interpreter
without that dict, asyncio's own way.

Only for code running inside a task (a coroutine or an async generator some task drives), never from a plain
callback. Knows nothing of HTTP, streams or the gateway.
"""

from __future__ import annotations

import asyncio
from typing import Any

_STEPPING: dict[Any, asyncio.Task[Any]] | None = getattr(asyncio.tasks, "_current_tasks", None)
if not isinstance(_STEPPING, dict):  # another interpreter's asyncio: asyncio's own way each time
    _STEPPING = None


def this_task() -> asyncio.Task[Any] | None:
    """asyncio.current_task(), called from inside a task, without a `getpid` when one loop is stepping a task."""
    stepping = _STEPPING
    if stepping is not None and len(stepping) == 1:
        for task in stepping.values():
            return task
    return asyncio.current_task()


__all__ = ["this_task"]
