"""rhetor.running.this_task: the task running the caller, as asyncio.current_task() says, also while another
thread's loop is in the middle of a step of its own task."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from rhetor.running import this_task


def test_the_task_running_the_caller() -> None:
    async def inner() -> tuple[Any, Any]:
        return this_task(), asyncio.current_task()

    async def main() -> list[tuple[Any, Any]]:
        loop = asyncio.get_running_loop()
        return [await inner(), await loop.create_task(inner()), (await asyncio.gather(inner()))[0]]

    for found, expected in asyncio.run(main()):
        assert found is expected and found is not None


def test_another_threads_task_mid_step_is_not_taken_for_ours() -> None:
    """Two loops stepping a task at once (the other one blocked inside its step): asyncio's own answer."""
    inside, release = threading.Event(), threading.Event()
    theirs: list[Any] = []

    async def blocking_step() -> None:
        theirs.append(asyncio.current_task())
        inside.set()
        release.wait(30)  # holds this task's step (its entry among the tasks being stepped) open

    other = threading.Thread(target=asyncio.run, args=(blocking_step(),))
    other.start()
    try:
        assert inside.wait(30)

        async def main() -> tuple[Any, Any]:
            assert len(asyncio.tasks._current_tasks) == 2  # type: ignore[attr-defined]  # ours and theirs
            return this_task(), asyncio.current_task()

        found, expected = asyncio.run(main())
        assert found is expected and found is not theirs[0]
    finally:
        release.set()
        other.join(30)
