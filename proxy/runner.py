"""Run the engine on a background thread: for tests and for embedding the proxy in another Python process.

Role: owns a thread with its own event loop running a ``ProxyServer`` and, when given a token, its control
endpoint (``proxy.control.endpoint.ControlServer`` on a loopback port): a window or a script then attaches over
loopback exactly as it attaches to a proxy process. Other threads talk to the engine only through ``call`` and
``run_coroutine`` (which marshal onto the loop). Subscribers registered here are called on the engine thread, so
they must be quick and thread-safe (append to a queue, set an event). :meth:`ProxyThread.go_down` and
:meth:`ProxyThread.come_up` take the proxy off its port and back (the pytest plugin's ``proxy.down()``).
Must not import: Qt, ``inspector``.
Thread: created on any thread; the engine runs on the thread it starts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from proxy.loop import new_event_loop
from proxy.model import Record
from proxy.server import ProxyConfig, ProxyServer

if TYPE_CHECKING:
    from proxy.control.endpoint import ControlServer

T = TypeVar("T")


class ProxyThread:
    """``with ProxyThread(config) as p:`` starts the engine; ``p.port`` is where clients connect.

    With ``control_token``, a control endpoint starts too (``control_options`` are ``ControlServer``'s keyword
    arguments); ``p.control_port`` is where control clients connect, ``p.control`` the endpoint.
    """

    def __init__(self, config: ProxyConfig, subscribers: tuple[Callable[[Record], None], ...] = (), *,
                 control_token: str | None = None, control_options: Mapping[str, Any] | None = None) -> None:
        self.config = config
        self.loop = new_event_loop()
        self.server = ProxyServer(config, self.loop)
        for s in subscribers:
            self.server.subscribe(s)
        self.control: ControlServer | None = None
        self._control_token = control_token
        self._control_options = dict(control_options or {})
        self._thread = threading.Thread(target=self._run, name="sockscope-engine", daemon=True)
        self._started: concurrent.futures.Future[tuple[str, int]] = concurrent.futures.Future()

    @property
    def port(self) -> int:
        assert self.server.listen_addr is not None
        return self.server.listen_addr[1]

    @property
    def control_port(self) -> int:
        assert self.control is not None and self.control.address is not None, "started without a control token"
        return self.control.address[1]

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            addr = self.loop.run_until_complete(self._start())
        except BaseException as e:
            self._started.set_exception(e)
            self.loop.close()
            return
        self._started.set_result(addr)
        self.loop.run_forever()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    async def _start(self) -> tuple[str, int]:
        addr = await self.server.start()
        if self._control_token is not None:
            from proxy.control.endpoint import ControlServer  # lazy: only embedders with a token need it

            try:
                self.control = ControlServer(self.server, "127.0.0.1", 0, token=self._control_token,
                                             **self._control_options)
                await self.control.start()
            except BaseException:
                self.control = None
                await self.server.shutdown()
                raise
        return addr

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

    def run_coroutine(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run ``coro`` on the engine's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def is_down(self) -> bool:
        """Between :meth:`go_down` and :meth:`come_up`."""
        return self.server.stopped_listening

    def go_down(self, reset: bool = True, timeout: float = 10.0) -> None:
        """Take the proxy off its port, as if the server had gone away (``ProxyServer.stop_listening``): connects
        are refused; with ``reset`` open TCP connections are reset; UDP flows end. :meth:`come_up` undoes it."""
        self.run_coroutine(self.server.stop_listening(reset), timeout)

    def come_up(self, timeout: float = 10.0) -> None:
        """Listen again on the port :meth:`go_down` left (``ProxyError`` if another program took it meanwhile)."""
        self.run_coroutine(self.server.listen_again(), timeout)

    async def _shutdown(self) -> None:
        await self.server.shutdown()
        if self.control is not None:  # after the engine: subscribers see its last records, then a bye
            await self.control.close()

    def stop(self, timeout: float = 10.0) -> None:
        if not self._thread.is_alive():
            return
        fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop)
        try:
            fut.result(timeout)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)

    def __enter__(self) -> ProxyThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
