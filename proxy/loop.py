"""Event-loop selection: uvloop where it is installed (Linux, macOS), the standard loop elsewhere (Windows).

Role: one function the CLI, the in-process runner and tests use, so every entry point relays on the same loop.
Set ``SOCKSCOPE_LOOP=asyncio`` to force the standard loop (for comparisons).
Must not import: Qt, ``inspector``.
Thread: any; the loop it returns is then owned by the thread that runs it.
"""

from __future__ import annotations

import asyncio
import os


def new_event_loop() -> asyncio.AbstractEventLoop:
    if os.environ.get("SOCKSCOPE_LOOP", "").lower() != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
