"""A Qt-free client of the control protocol (docs/protocol.md): for the window's bridge, scripts and tests.

Role: ``ControlClient`` is the asyncio client (``await ControlClient.connect(host, port, token)``,
``async for event in client.events()``, ``await client.call("inject", conn_id=1, direction="c2s",
data=b"hi")``). ``SyncControlClient`` wraps it on a background thread with its own event loop for code that
is not async (the Qt window drains ``client.events`` from a timer; tests call ``client.call`` directly).

Events are the protocol's maps as plain dicts; a record event (``message``, ``connection_opened``, ...)
also carries ``event["record"]``, the decoded ``proxy.model`` record (``proxy.codec.record_from_dict``).
A reply with ``"ok": false`` raises :class:`ControlError` with the proxy's message.
Must not import: Qt, ``inspector``.
Thread: ``ControlClient`` belongs to the loop that created it; ``SyncControlClient``'s methods may be
called from any thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import queue
import struct
import threading
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final

import msgpack

from proxy.codec import RECORD_TYPES, CodecError, record_from_dict

__all__ = ["ControlClient", "ControlError", "SyncControlClient"]

PROTOCOL_VERSION: Final = 1
MAX_FRAME: Final = 1 << 30
"""The proxy's events are bounded by its own frames (a 16 MiB message by default); this only guards
against a peer that is not a sockscope proxy."""
_U32: Final = struct.Struct(">I")
READ_CHUNK: Final = 1 << 20
"""Most bytes taken from the connection per wake-up (also the stream's buffer limit)."""
_END: Final = object()


class ControlError(Exception):
    """The proxy refused a command or the connection (wrong token, closed, timeout); the text says why."""


def _frame(obj: dict[str, Any]) -> bytes:
    body: bytes = msgpack.packb(obj, use_bin_type=True)
    return _U32.pack(len(body)) + body


def _decorate(event: dict[str, Any]) -> dict[str, Any]:
    t = event.get("type")
    if t in RECORD_TYPES:
        try:
            event["record"] = record_from_dict(event)
        except CodecError as e:  # a newer proxy's record: keep the dict, say why it has no record
            event["record"] = None
            event["record_error"] = str(e)
    return event


class ControlClient:
    """An authenticated control connection. Use :meth:`connect`; close with :meth:`close`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.hello: dict[str, Any] = {}
        """The proxy's ``hello``: versions, settings, clock anchor, conditions, presets."""
        self.closed_reason: str | None = None

    @classmethod
    async def connect(cls, host: str, port: int, token: str,
                      timeout: float = 10.0) -> ControlClient:  # noqa: ASYNC109 - one bound for connect+auth
        """Connect, authenticate and wait for ``hello``. Raises ``ControlError`` (refused, wrong token)."""
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=READ_CHUNK), timeout)
        except (OSError, TimeoutError) as e:
            raise ControlError(f"cannot connect to the proxy's control endpoint {host}:{port}: "
                               f"{getattr(e, 'strerror', None) or e or 'timeout'}") from None
        self = cls(reader, writer)
        try:
            writer.write(_frame({"v": PROTOCOL_VERSION, "type": "auth", "token": token}))
            first = await asyncio.wait_for(self._read_frame(), timeout)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as e:
            writer.close()
            raise ControlError(f"{host}:{port}: no hello from the proxy ({type(e).__name__}: {e})") from None
        except BaseException:
            writer.close()
            raise
        if first.get("type") != "hello":
            writer.close()
            reason = first.get("reason") or first.get("error") or first
            raise ControlError(f"{host}:{port}: the proxy refused the connection: {reason}")
        self.hello = first
        self._task = asyncio.get_running_loop().create_task(self._read_loop(), name="sockscope-control-client")
        return self

    async def _read_frame(self) -> dict[str, Any]:
        (n,) = _U32.unpack(await self._reader.readexactly(4))
        if n > MAX_FRAME:
            raise ControlError(f"frame of {n} bytes from the proxy: not a sockscope control endpoint?")
        obj = msgpack.unpackb(await self._reader.readexactly(n), raw=False)
        if not isinstance(obj, dict):
            raise ControlError(f"the proxy sent a {type(obj).__name__}, not a map")
        return obj

    async def _read_loop(self) -> None:
        reason = "connection closed by the proxy"
        buf = bytearray()
        try:
            while True:
                # Whatever has arrived, then every whole frame in it: a burst of events costs one wake-up, not
                # two awaits per frame.
                chunk = await self._reader.read(READ_CHUNK)
                if not chunk:
                    break
                buf += chunk
                pos = self._dispatch(buf)
                if pos < 0:
                    reason = f"the proxy said bye: {self._bye_reason}"
                    break
                del buf[:pos]
        except Exception as e:  # OSError, a malformed frame: the connection is over either way
            reason = f"connection lost: {e}"
        finally:
            self.closed_reason = reason
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ControlError(reason))
            self._pending.clear()
            self._events.put_nowait(_END)
            self._writer.close()

    _bye_reason: object = None

    def _dispatch(self, buf: bytearray) -> int:
        """Handle every whole frame at the start of ``buf``; returns the bytes used, or -1 after a ``bye``."""
        pos, end = 0, len(buf)
        unpack_from, unpackb, put = _U32.unpack_from, msgpack.unpackb, self._events.put_nowait
        while end - pos >= 4:
            (n,) = unpack_from(buf, pos)
            if n > MAX_FRAME:
                raise ControlError(f"frame of {n} bytes from the proxy: not a sockscope control endpoint?")
            if end - pos - 4 < n:
                break
            ev = unpackb(buf[pos + 4:pos + 4 + n], raw=False)
            pos += 4 + n
            if not isinstance(ev, dict):
                raise ControlError(f"the proxy sent a {type(ev).__name__}, not a map")
            t = ev.get("type")
            if t == "reply":
                fut = self._pending.pop(ev.get("id"), None)  # type: ignore[arg-type]
                if fut is not None and not fut.done():
                    if ev.get("ok"):
                        fut.set_result(ev.get("result"))
                    else:
                        fut.set_exception(ControlError(str(ev.get("error", "unknown error"))))
                continue
            put(_decorate(ev))
            if t == "bye":
                self._bye_reason = ev.get("reason")
                return -1
        return pos

    async def call(self, command: str, timeout: float | None = 10.0,  # noqa: ASYNC109 - bounds the reply wait
                   **args: Any) -> Any:
        """Send ``command`` with ``args`` and return its reply's ``result``; ``ControlError`` on an error reply."""
        if self.closed_reason is not None:
            raise ControlError(self.closed_reason)
        cid = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[cid] = fut
        try:
            self._writer.write(_frame({**args, "v": PROTOCOL_VERSION, "type": command, "id": cid}))
        except (OSError, RuntimeError) as e:
            self._pending.pop(cid, None)
            raise ControlError(f"cannot send {command}: {e}") from None
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise ControlError(f"{command}: no reply within {timeout} s") from None
        finally:
            self._pending.pop(cid, None)

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Every event in order (the last one is ``bye`` if the proxy said goodbye); ends when the connection does."""
        while True:
            ev = await self._events.get()
            if ev is _END:
                self._events.put_nowait(_END)  # later iterators end too
                return
            yield ev

    async def close(self) -> None:
        if self.closed_reason is None:
            try:
                self._writer.write(_frame({"v": PROTOCOL_VERSION, "type": "bye"}))
            except (OSError, RuntimeError):
                pass
        self._writer.close()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 2.0)
            except (TimeoutError, OSError):
                self._task.cancel()


class SyncControlClient:
    """A blocking facade over :class:`ControlClient`, running on its own thread and event loop.

    ``events`` is a ``queue.Queue`` of event dicts, ending with ``None`` when the connection ends; or iterate
    :meth:`iter_events`. ``call(...)`` blocks up to ``timeout`` seconds. Use as a context manager or ``close()``.
    """

    def __init__(self, host: str, port: int, token: str, timeout: float = 10.0) -> None:
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sockscope-control-client",
                                        daemon=True)
        self._thread.start()
        try:
            self._client: ControlClient = asyncio.run_coroutine_threadsafe(
                ControlClient.connect(host, port, token, timeout), self._loop).result(timeout + 1)
        except BaseException:
            self._stop_loop()
            raise
        self.hello = self._client.hello
        self._pump = asyncio.run_coroutine_threadsafe(self._pump_events(), self._loop)
        # A script that breaks out of iter_events and exits without close() still says goodbye properly,
        # instead of asyncio printing "Task was destroyed but it is pending!" at exit.
        self._finalizer = weakref.finalize(self, _close_quietly, self._loop, self._thread, self._client, self._pump)

    async def _pump_events(self) -> None:
        try:
            async for ev in self._client.events():
                self.events.put(ev)
        finally:
            self.events.put(None)

    def call(self, command: str, timeout: float = 10.0, **args: Any) -> Any:
        """Like ``ControlClient.call``, blocking; raises ``ControlError``."""
        fut = asyncio.run_coroutine_threadsafe(self._client.call(command, timeout, **args), self._loop)
        try:
            return fut.result(timeout + 1)
        except TimeoutError:
            fut.cancel()
            raise ControlError(f"{command}: no reply within {timeout} s") from None

    def iter_events(self, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Events until the connection ends; ``queue.Empty`` if none arrives within ``timeout`` seconds."""
        while True:
            ev = self.events.get(timeout=timeout)
            if ev is None:
                self.events.put(None)
                return
            yield ev

    def wait_for(self, pred: Any, timeout: float = 10.0) -> dict[str, Any]:
        """The next event for which ``pred(event)`` is true (others are consumed); ``TimeoutError`` if none."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no matching event arrived")
            try:
                ev = self.events.get(timeout=left)
            except queue.Empty:
                raise TimeoutError("no matching event arrived") from None
            if ev is None:
                self.events.put(None)
                raise ControlError(self._client.closed_reason or "connection closed")
            if pred(ev):
                return ev

    @property
    def closed_reason(self) -> str | None:
        return self._client.closed_reason

    def close(self) -> None:
        self._finalizer()

    def _stop_loop(self) -> None:
        _stop_loop(self._loop, self._thread)

    def __enter__(self) -> SyncControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close_quietly(loop: asyncio.AbstractEventLoop, thread: threading.Thread, client: ControlClient,
                   pump: concurrent.futures.Future[None]) -> None:
    if not thread.is_alive():
        return
    try:
        asyncio.run_coroutine_threadsafe(client.close(), loop).result(5)
        pump.result(5)  # the pump ends with the connection; stopping the loop under it would warn
    except Exception:
        pass
    _stop_loop(loop, thread)


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    if not thread.is_alive():
        loop.close()
