"""Run the engine on a background thread: for tests and for embedding the proxy in another Python process.

Role: owns a thread with its own event loop running a ``ProxyServer``; other threads talk to it only through
``call`` (which marshals onto the loop with ``call_soon_threadsafe``). Subscribers registered here are called on
the engine thread, so they must be quick and thread-safe (append to a queue, set an event).
Must not import: Qt, ``inspector``.
Thread: created on any thread; the engine runs on the thread it starts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from proxy.loop import new_event_loop
from proxy.model import Record
from proxy.server import ProxyConfig, ProxyServer

T = TypeVar("T")


class ProxyThread:
    """``with ProxyThread(config) as p:`` starts the engine; ``p.port`` is where clients connect."""

    def __init__(self, config: ProxyConfig, subscribers: tuple[Callable[[Record], None], ...] = ()) -> None:
        self.config = config
        self.loop = new_event_loop()
        self.server = ProxyServer(config, self.loop)
        for s in subscribers:
            self.server.subscribe(s)
        self._thread = threading.Thread(target=self._run, name="sockscope-engine", daemon=True)
        self._started: concurrent.futures.Future[tuple[str, int]] = concurrent.futures.Future()

    @property
    def port(self) -> int:
        assert self.server.listen_addr is not None
        return self.server.listen_addr[1]

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            addr = self.loop.run_until_complete(self.server.start())
        except BaseException as e:
            self._started.set_exception(e)
            return
        self._started.set_result(addr)
        self.loop.run_forever()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def start(self, timeout: float = 10.0) -> ProxyThread:
        self._thread.start()
        self._started.result(timeout)
        return self

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 10.0) -> T:
        """Run ``fn(*args)`` on the engine thread and return its result."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn(*args))
            except BaseException as e:
                fut.set_exception(e)

        self.loop.call_soon_threadsafe(run)
        return fut.result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if not self._thread.is_alive():
            return
        fut = asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop)
        try:
            fut.result(timeout)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)

    def __enter__(self) -> ProxyThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
