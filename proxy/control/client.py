"""The client of the control protocol (docs/protocol.md), for the window, scripts and tests. Qt-free.

Role: :class:`ControlClient` connects, authenticates and waits for ``hello`` (in its constructor, blocking up
to ``timeout``), then one reader thread owns the connection: it receives into a
:class:`~proxy.control.wire.FrameReader`, decodes each frame once, and hands it on:

- a ``reply`` resolves the ``concurrent.futures.Future`` that :meth:`ControlClient.submit` returned;
- records (``message``, ``connection_opened``, ...) go, decoded (:func:`proxy.codec.record_from_dict`), to
  ``on_records`` in one list per read (the window's record queue); without ``on_records`` they are events whose
  ``event["record"]`` is the decoded record;
- every other event goes to ``on_event``, or, without it, to :attr:`ControlClient.events` (a ``queue.Queue``
  ending with ``None``; see :meth:`~ControlClient.iter_events`, :meth:`~ControlClient.wait_for`).

Callbacks run on the reader thread, in the order the proxy sent the frames, so they must be quick (append to a
queue, emit a signal). Commands are written from the calling thread when the socket takes them at once, else
by the reader thread as it becomes writable: :meth:`~ControlClient.submit` never blocks, whatever the proxy does.
A reply with ``"ok": false`` fails its future with :class:`ControlError` carrying the proxy's message; so does
the connection ending. :meth:`~ControlClient.call` is ``submit(...).result(timeout)``; from asyncio, await
``asyncio.wrap_future(client.submit(...))``.
Must not import: Qt, ``inspector``, asyncio, the engine (``proxy.server``).
Thread: any thread may call; one reader thread per client (a daemon: a script that exits without ``close()``
exits all the same).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import queue
import selectors
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from typing import Any, Final

from msgpack import unpackb

from proxy.codec import RECORD_TYPES, CodecError, record_from_dict
from proxy.control.wire import (
    HELLO_MAX_FRAME,
    MAX_FRAME,
    PROTOCOL_VERSION,
    SMALL_FRAME,
    FrameReader,
    FrameTooLarge,
    pack_frame,
    unpack_frame,
)
from proxy.model import Record

__all__ = ["ControlClient", "ControlError"]

_HEADER: Final = struct.Struct(">I")
"""A frame's length prefix (proxy.control.wire's): a record's frame is kept whole for a spool."""
READ_CHUNK: Final = 1 << 20
"""The receive buffer: most bytes taken from the connection per wake-up."""
CLOSE_WAIT: Final = 2.0
"""Seconds :meth:`ControlClient.close` waits for the proxy's ``bye`` before cutting the connection."""


class ControlError(Exception):
    """The proxy refused a command or the connection (wrong token, closed, timeout); the text says why."""


class ControlClient:
    """An authenticated control connection. Use as a context manager, or :meth:`close`.

    ``on_records(records)``: records, decoded, one list per read (else they are events with ``"record"``).
    ``on_record_frames(records, frames)``: instead of ``on_records``, the same lists plus each record's frame as
    received (length prefix and msgpack map: a session file's record frame), so a spool need not encode again.
    ``on_event(event)``: every other event (else :attr:`events`). Both run on the reader thread.
    Raises :class:`ControlError` when the proxy cannot be reached or refuses (wrong token).
    """

    def __init__(self, host: str, port: int, token: str, timeout: float = 10.0, *,
                 on_records: Callable[[list[Record]], None] | None = None,
                 on_record_frames: Callable[[list[Record], list[bytes]], None] | None = None,
                 on_event: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        """Events in order, then ``None`` when the connection has ended (used when no ``on_event`` is given)."""
        self.hello: dict[str, Any] = {}
        """The proxy's ``hello``: versions, settings, clock anchor, what is in force, presets, this client's id."""
        self.closed_reason: str | None = None
        self._on_records = on_records
        self._on_record_frames = on_record_frames
        self._on_event = on_event
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[str, concurrent.futures.Future[Any]]] = {}
        self._in_flight: Counter[str] = Counter()
        self._lock = threading.Lock()  # _pending, _in_flight, _out, _closing
        self._out: deque[memoryview] = deque()  # bytes the socket has not taken yet, in order
        self._closing = False
        self._reader = FrameReader(HELLO_MAX_FRAME, READ_CHUNK)
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            raise ControlError(f"cannot connect to the proxy's control endpoint {host}:{port}: "
                               f"{getattr(e, 'strerror', None) or e or 'timeout'}") from None
        self._sock = sock
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.hello = self._handshake(token, timeout, f"{host}:{port}")
            sock.setblocking(False)
            self._wake_r, self._wake_w = socket.socketpair()
        except BaseException:
            sock.close()
            raise
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(sock, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._run, name="sockscope-control-client", daemon=True)
        self._thread.start()

    @property
    def client_id(self) -> int:
        """This connection's id at the proxy: announcements caused by its own commands carry it in ``"by"``."""
        cid = self.hello.get("client_id")
        return cid if isinstance(cid, int) else 0

    # ------------------------------------------------------------------------------------------ commands

    def submit(self, command: str, **args: Any) -> concurrent.futures.Future[Any]:
        """Send ``command`` with ``args`` (plain msgpack values); the future gets the reply's ``result``, or
        :class:`ControlError` with the proxy's message. Never blocks."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        cid = next(self._ids)
        try:
            frame = pack_frame({**args, "v": PROTOCOL_VERSION, "type": command, "id": cid})
        except (TypeError, ValueError, OverflowError) as e:
            fut.set_exception(ControlError(f"{command}: cannot send these arguments: {e}"))
            return fut
        if len(frame) - 4 > MAX_FRAME:
            fut.set_exception(ControlError(f"{command}: {len(frame) - 4} bytes is more than a frame carries "
                                           f"({MAX_FRAME})"))
            return fut
        with self._lock:
            if self.closed_reason is not None or self._closing:
                fut.set_exception(ControlError(self.closed_reason or "closed by this client"))
                return fut
            self._pending[cid] = (command, fut)
            self._in_flight[command] += 1
            self._write_locked(memoryview(frame))
        return fut

    def call(self, command: str, timeout: float = 10.0, **args: Any) -> Any:
        """:meth:`submit` and wait up to ``timeout`` seconds for the result; raises :class:`ControlError`."""
        fut = self.submit(command, **args)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            raise ControlError(f"{command}: no reply within {timeout:g} s") from None

    def in_flight(self, command: str) -> int:
        """How many ``command``s this client has sent that the proxy has not answered yet (reader thread: as of
        the frame being handled)."""
        with self._lock:
            return self._in_flight[command]

    def _write_locked(self, data: memoryview) -> None:
        """Write now what the socket takes; the rest waits for the reader thread (caller holds the lock)."""
        if not self._out:
            try:
                n = self._sock.send(data)
            except BlockingIOError:
                n = 0
            except OSError:
                return  # the reader thread sees the connection end and fails what waits
            if n == len(data):
                return
            data = data[n:]
        self._out.append(data)
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    # ------------------------------------------------------------------------------------------ events

    def iter_events(self, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Events until the connection ends; ``queue.Empty`` if none arrives within ``timeout`` seconds."""
        while True:
            ev = self.events.get(timeout=timeout)
            if ev is None:
                self.events.put(None)  # later iterators end too
                return
            yield ev

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        """The next event for which ``pred(event)`` is true (others are consumed); ``TimeoutError`` if none comes
        within ``timeout`` seconds, ``ControlError`` if the connection ends first."""
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
                raise ControlError(self.closed_reason or "connection closed")
            if pred(ev):
                return ev

    # ------------------------------------------------------------------------------------------ closing

    def close(self) -> None:
        """Say ``bye``, wait (bounded) for the proxy's, and end the connection. Safe to call more than once."""
        with self._lock:
            if self.closed_reason is None and not self._closing:
                self._closing = True
                self._write_locked(memoryview(pack_frame({"v": PROTOCOL_VERSION, "type": "bye"})))
        if threading.current_thread() is self._thread:
            return
        self._thread.join(CLOSE_WAIT)
        if self._thread.is_alive():  # the proxy does not answer: cut it off (the reader sees the socket end)
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._wake()
            self._thread.join(CLOSE_WAIT)

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ the reader thread

    def _handshake(self, token: str, timeout: float, where: str) -> dict[str, Any]:
        """Auth, then the first frame: ``hello`` (or a ``bye`` saying why not). Blocking, before the thread."""
        sock, reader = self._sock, self._reader
        try:
            sock.sendall(pack_frame({"v": PROTOCOL_VERSION, "type": "auth", "token": token}))
            deadline = time.monotonic() + timeout
            while True:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                n = sock.recv_into(reader.get_buffer())
                if not n:
                    raise ControlError("the connection closed before hello")
                reader.buffer_updated(n)
                for body in reader.frames():
                    first = unpack_frame(body)
                    break
                else:
                    continue
                break
        except FrameTooLarge as e:
            raise ControlError(f"{where}: a first frame of {e.size} bytes from the proxy: not a sockscope control "
                               "endpoint?") from None
        except ValueError as e:  # not msgpack
            raise ControlError(f"{where}: not a sockscope control endpoint? ({e})") from None
        except (OSError, ControlError) as e:
            raise ControlError(f"{where}: no hello from the proxy ({type(e).__name__}: {e})") from None
        if not isinstance(first, dict) or first.get("type") != "hello":
            reason = (first.get("reason") or first.get("error") or first) if isinstance(first, dict) else first
            raise ControlError(f"{where}: the proxy refused the connection: {reason}")
        reader.limit = MAX_FRAME
        return first

    def _run(self) -> None:
        reason = "connection closed by the proxy"
        try:
            reason = self._serve() or reason
        except Exception as e:  # a malformed frame, or not a sockscope proxy: this connection is over
            reason = f"connection lost: {e}"
        finally:
            self._finish(reason)

    def _serve(self) -> str | None:
        """Read and write until the connection ends; returns why (None: the proxy closed it)."""
        sock, reader, sel = self._sock, self._reader, self._selector
        ended = self._take_frames()  # what arrived with hello
        writing = False
        while ended is None:
            for key, mask in sel.select():
                if key.fileobj is self._wake_r:
                    with contextlib.suppress(OSError):
                        while self._wake_r.recv(4096):
                            pass
                    continue
                if mask & selectors.EVENT_WRITE:
                    self._flush()
                if mask & selectors.EVENT_READ:
                    try:
                        n = sock.recv_into(reader.get_buffer())
                    except BlockingIOError:
                        continue
                    except OSError as e:
                        return f"connection lost: {e}"
                    if not n:
                        return None
                    reader.buffer_updated(n)
                    ended = self._take_frames()
                    if ended is not None:
                        break
            with self._lock:
                want = bool(self._out)
            if want != writing:
                writing = want
                sel.modify(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if want else 0))
        return ended

    def _flush(self) -> None:
        with self._lock:
            out = self._out
            while out:
                try:
                    n = self._sock.send(out[0])
                except BlockingIOError:
                    return
                if n == len(out[0]):
                    out.popleft()
                else:
                    out[0] = out[0][n:]
                    return
            if self._closing:
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_WR)  # bye sent: the proxy answers and closes

    def _take_frames(self) -> str | None:
        """Hand on every whole frame received; returns why the connection ends (a ``bye``), else None."""
        records: list[Record] = []
        frames: list[bytes] = []
        on_records, on_frames = self._on_records, self._on_record_frames
        take = on_records is not None or on_frames is not None

        def hand_on() -> None:
            if on_frames is not None:
                on_frames(records, frames)
            elif on_records is not None:
                on_records(records)

        try:
            for body in self._reader.frames():
                # Small frames: msgpack's own size-relative limits in one C call; bigger ones: unpack_frame's.
                obj = unpackb(body, raw=False) if len(body) <= SMALL_FRAME else unpack_frame(body)
                if not isinstance(obj, dict):
                    raise ControlError(f"the proxy sent a {type(obj).__name__}, not a map")
                t = obj.get("type")
                if take and t in RECORD_TYPES:
                    try:
                        records.append(record_from_dict(obj))
                    except CodecError as e:  # a newer proxy's record: say why it is missing, keep going
                        self._deliver({"v": PROTOCOL_VERSION, "type": "undecodable", "error": str(e)})
                        continue
                    if on_frames is not None:
                        frames.append(_HEADER.pack(len(body)) + bytes(body))
                    continue
                if records:  # keep the order: records before what the proxy sent after them
                    hand_on()
                    records, frames = [], []
                if t == "reply":
                    self._settle(obj)
                    continue
                if t in RECORD_TYPES:
                    try:
                        obj["record"] = record_from_dict(obj)
                    except CodecError as e:
                        obj["record"] = None
                        obj["record_error"] = str(e)
                self._deliver(obj)
                if t == "bye":
                    return f"the proxy said bye: {obj.get('reason')}"
        finally:
            if records:
                hand_on()
        return None

    def _settle(self, reply: dict[str, Any]) -> None:
        with self._lock:
            command, fut = self._pending.pop(reply.get("id"), (None, None))  # type: ignore[arg-type]
            if command is not None:
                self._in_flight[command] -= 1
        if fut is None or fut.done():
            return
        if reply.get("ok"):
            fut.set_result(reply.get("result"))
        else:
            fut.set_exception(ControlError(str(reply.get("error", "unknown error"))))

    def _deliver(self, event: dict[str, Any]) -> None:
        if self._on_event is not None:
            self._on_event(event)
        else:
            self.events.put(event)

    def _finish(self, reason: str) -> None:
        """The connection is over (once): fail what waits, end the events, close the sockets."""
        with self._lock:
            if self.closed_reason is not None:
                return
            self.closed_reason = reason if not self._closing else "closed by this client"
            pending = list(self._pending.values())
            self._pending.clear()
            self._in_flight.clear()
            self._out.clear()
        for _, fut in pending:
            if not fut.done():
                fut.set_exception(ControlError(self.closed_reason))
        self.events.put(None)
        self._selector.close()
        for s in (self._sock, self._wake_r, self._wake_w):
            s.close()
