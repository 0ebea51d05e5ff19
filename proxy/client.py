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
import contextlib
import itertools
import queue
import struct
import threading
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final

import msgpack

from proxy.codec import RECORD_TYPES, SMALL_FRAME, CodecError, record_from_dict, unpack_frame

__all__ = ["ControlClient", "ControlError", "SyncControlClient"]

PROTOCOL_VERSION: Final = 1
MAX_FRAME: Final = 1 << 30
"""The proxy's events are bounded by its own frames (a 16 MiB message by default); this only guards
against a peer that is not a sockscope proxy."""
FIRST_FRAME_MAX: Final = 1 << 20
"""The first frame (``hello``, or a ``bye`` saying why not) is a few KiB. Until it has come, whatever answers on
the port may not be a sockscope proxy at all, so a bigger claim ends the connection before anything is allocated."""
_U32: Final = struct.Struct(">I")
READ_CHUNK: Final = 1 << 20
"""The receive buffer: most bytes taken from the connection per wake-up."""
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


class _Receiver(asyncio.BufferedProtocol):
    """The control connection's protocol: bytes arrive straight in one buffer, and every whole frame in it is
    decoded from there (a frame bigger than the buffer is received into a buffer of its own). A payload is thus
    copied twice on its way in (by the kernel, then by msgpack into its ``bytes``), where a stream reader and a
    frame buffer copied it five times."""

    def __init__(self, client: ControlClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray(READ_CHUNK)
        self.view = memoryview(self.buf)
        self.start = 0  # first byte not yet decoded
        self.end = 0  # first byte not yet received
        self.big: memoryview | None = None  # a frame too big for ``buf``, being received
        self.big_fill = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.big is not None:
            return self.big[self.big_fill:]
        if self.end == len(self.buf):  # full, with a partial frame at the end: move it to the front
            k = self.end - self.start
            self.buf[:k] = self.view[self.start:self.end]
            self.start, self.end = 0, k
        return self.view[self.end:]

    def buffer_updated(self, nbytes: int) -> None:
        try:
            self._decode(nbytes)
        except Exception as e:  # a malformed frame, or not a sockscope proxy: this connection is over
            self.client._finish(f"connection lost: {e}")
            if self.transport is not None:
                self.transport.abort()

    def _decode(self, nbytes: int) -> None:
        client = self.client
        if self.big is not None:
            self.big_fill += nbytes
            if self.big_fill < len(self.big):
                return
            big, self.big = self.big, None
            with big:
                obj = unpack_frame(big)
            ev = client._on_frame(obj)
            if ev is not None:
                client._deliver([ev])
            return
        self.end += nbytes
        view, pos, end = self.view, self.start, self.end
        unpack_from, unpackb, on_frame = _U32.unpack_from, msgpack.unpackb, client._on_frame
        batch: list[dict[str, Any]] = []  # every event of this read goes to the reader at once
        try:
            while end - pos >= 4 and not client.closing:
                (n,) = unpack_from(view, pos)
                if n > MAX_FRAME or (n > FIRST_FRAME_MAX and not client._first.done()):
                    which = "frame" if client._first.done() else "first frame"
                    raise ControlError(f"a {which} of {n} bytes from the proxy: not a sockscope control endpoint?")
                stop = pos + 4 + n
                if stop > end:
                    if 4 + n > len(self.buf):
                        self.big = memoryview(bytearray(n))
                        have = end - pos - 4
                        self.big[:have] = view[pos + 4:end]
                        self.big_fill = have
                        pos = end
                    break
                # Small frames: msgpack's own size-relative limits, one C call. Bigger ones: unpack_frame's limits.
                body = view[pos + 4:stop]
                ev = on_frame(unpackb(body, raw=False) if n <= SMALL_FRAME else unpack_frame(body))
                pos = stop
                if ev is not None:
                    batch.append(ev)
                    if ev.get("type") == "bye":
                        break
        finally:
            if batch:
                client._deliver(batch)
        if pos == end:
            self.start = self.end = 0
        else:
            self.start = pos

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._finish(f"connection lost: {exc}" if exc else "connection closed by the proxy")
        self.client._lost.set()


class ControlClient:
    """An authenticated control connection. Use :meth:`connect`; close with :meth:`close`."""

    def __init__(self, sink: _EventQueue | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._sink = sink
        self._transport: asyncio.Transport | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._first: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._lost = asyncio.Event()
        self.closing = False
        self.hello: dict[str, Any] = {}
        """The proxy's ``hello``: versions, settings, clock anchor, conditions, presets."""
        self.closed_reason: str | None = None

    @classmethod
    async def connect(cls, host: str, port: int, token: str, timeout: float = 10.0,  # noqa: ASYNC109 - one bound
                      *, sink: _EventQueue | None = None) -> ControlClient:
        """Connect, authenticate and wait for ``hello``. Raises ``ControlError`` (refused, wrong token).

        With ``sink``, events go there (in batches, then ``None`` at the end) instead of to :meth:`events`:
        :class:`SyncControlClient` hands them straight to the reading thread that way."""
        self = cls(sink)
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await asyncio.wait_for(loop.create_connection(lambda: _Receiver(self), host, port),
                                                  timeout)
        except (OSError, TimeoutError) as e:
            raise ControlError(f"cannot connect to the proxy's control endpoint {host}:{port}: "
                               f"{getattr(e, 'strerror', None) or e or 'timeout'}") from None
        self._transport = transport  # type: ignore[assignment]
        try:
            transport.write(_frame({"v": PROTOCOL_VERSION, "type": "auth", "token": token}))  # type: ignore[attr-defined]
            first = await asyncio.wait_for(asyncio.shield(self._first), timeout)
        except (OSError, TimeoutError, ControlError) as e:
            transport.close()
            raise ControlError(f"{host}:{port}: no hello from the proxy ({type(e).__name__}: {e})") from None
        except BaseException:
            transport.close()
            raise
        if first.get("type") != "hello":
            transport.close()
            reason = first.get("reason") or first.get("error") or first
            raise ControlError(f"{host}:{port}: the proxy refused the connection: {reason}")
        self.hello = first
        return self

    def _on_frame(self, obj: object) -> dict[str, Any] | None:
        """One decoded frame: the first answers :meth:`connect`; replies settle calls; the rest are events,
        returned for :meth:`_deliver`."""
        if not isinstance(obj, dict):
            raise ControlError(f"the proxy sent a {type(obj).__name__}, not a map")
        if not self._first.done():
            self._first.set_result(obj)
            if obj.get("type") != "hello":
                self._finish(f"the proxy refused the connection: {obj.get('reason')}")
            return None
        if obj.get("type") == "reply":
            fut = self._pending.pop(obj.get("id"), None)  # type: ignore[arg-type]
            if fut is not None and not fut.done():
                if obj.get("ok"):
                    fut.set_result(obj.get("result"))
                else:
                    fut.set_exception(ControlError(str(obj.get("error", "unknown error"))))
            return None
        return _decorate(obj)

    def _deliver(self, batch: list[dict[str, Any]]) -> None:
        """Events decoded from one read, in order; a ``bye`` among them ends the connection after them."""
        if self._sink is not None:
            self._sink.put_many(batch)
        else:
            for ev in batch:
                self._events.put_nowait(ev)
        last = batch[-1]
        if last.get("type") == "bye":
            self._finish(f"the proxy said bye: {last.get('reason')}")

    def _finish(self, reason: str) -> None:
        """The connection is over (once): fail what waits, end the events, close the transport."""
        if self.closing:
            return
        self.closing = True
        self.closed_reason = reason
        if not self._first.done():
            self._first.set_exception(ControlError(reason))
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ControlError(reason))
        self._pending.clear()
        self._events.put_nowait(_END)
        if self._sink is not None:
            self._sink.put(None)
        if self._transport is not None:
            self._transport.close()

    async def call(self, command: str, timeout: float | None = 10.0,  # noqa: ASYNC109 - bounds the reply wait
                   **args: Any) -> Any:
        """Send ``command`` with ``args`` and return its reply's ``result``; ``ControlError`` on an error reply."""
        if self.closed_reason is not None:
            raise ControlError(self.closed_reason)
        cid = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[cid] = fut
        try:
            assert self._transport is not None
            self._transport.write(_frame({**args, "v": PROTOCOL_VERSION, "type": command, "id": cid}))
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
        t = self._transport
        if t is None:
            return
        if self.closed_reason is None:
            with contextlib.suppress(OSError, RuntimeError):
                t.write(_frame({"v": PROTOCOL_VERSION, "type": "bye"}))
        self._finish("closed by this client")
        try:
            await asyncio.wait_for(self._lost.wait(), 2.0)
        except TimeoutError:
            t.abort()


class _EventQueue(queue.Queue[dict[str, Any] | None]):
    """A ``queue.Queue`` that also takes a batch under one lock and one wake-up."""

    def put_many(self, items: list[dict[str, Any]]) -> None:
        if not items:
            return
        with self.not_empty:
            self.queue.extend(items)
            self.unfinished_tasks += len(items)
            self.not_empty.notify()


class SyncControlClient:
    """A blocking facade over :class:`ControlClient`, running on its own thread and event loop.

    ``events`` is a ``queue.Queue`` of event dicts, ending with ``None`` when the connection ends; or iterate
    :meth:`iter_events`. ``call(...)`` blocks up to ``timeout`` seconds. Use as a context manager or ``close()``.
    """

    def __init__(self, host: str, port: int, token: str, timeout: float = 10.0) -> None:
        self.events: _EventQueue = _EventQueue()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sockscope-control-client",
                                        daemon=True)
        self._thread.start()
        try:
            self._client: ControlClient = asyncio.run_coroutine_threadsafe(
                ControlClient.connect(host, port, token, timeout, sink=self.events), self._loop).result(timeout + 1)
        except BaseException:
            self._stop_loop()
            raise
        self.hello = self._client.hello
        # A script that breaks out of iter_events and exits without close() still says goodbye properly,
        # instead of asyncio printing "Task was destroyed but it is pending!" at exit.
        self._finalizer = weakref.finalize(self, _close_quietly, self._loop, self._thread, self._client)

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


def _close_quietly(loop: asyncio.AbstractEventLoop, thread: threading.Thread, client: ControlClient) -> None:
    if not thread.is_alive():
        return
    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(client.close(), loop).result(5)
    _stop_loop(loop, thread)


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    if not thread.is_alive():
        loop.close()
