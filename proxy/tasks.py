"""Named background tasks that cannot be garbage-collected while they run.

Role: the one place the engine creates asyncio tasks: each task gets a name for debugging, and a strong reference
is kept until it finishes (the loop itself keeps only a weak one, so a bare task may vanish mid-run). Ruff's
banned-api rule (``pyproject.toml``) rejects ``asyncio.create_task`` and ``asyncio.ensure_future`` everywhere, and
``tests/test_structure.py`` rejects ``<loop>.create_task`` outside this file.
Must not import: Qt, ``inspector``.
Thread: the engine's event-loop thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_running: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task
