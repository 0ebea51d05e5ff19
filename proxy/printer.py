"""The headless printer: one line per message and per connection event, like tcpdump for messages; and the
non-blocking terminal every line of the proxy goes through.

Role: ``Printer`` is a subscriber that formats records for a terminal (text when the bytes are printable UTF-8,
hex otherwise). ``Terminal`` writes lines to an output stream without ever making its caller wait: a terminal,
an IDE console, ``| less`` or a parent process that reads slowly (or not at all) must never stop the relay. Lines
go into a bounded buffer that a writer thread of the terminal's own writes out; when the buffer is full, new lines
are dropped and counted, and ``… N lines dropped: the terminal is not reading fast enough`` takes their place
once the terminal reads again. At exit, ``close_terminals`` waits a short bound for what is buffered, never more.
A thread with a queue works the same on every OS (non-blocking pipes do not exist on Windows, and setting
``O_NONBLOCK`` on an inherited terminal would change it for the parent shell too).

Must not import: Qt, ``inspector``.
Thread: ``Printer`` and ``Terminal.line`` are called on the engine's event-loop thread (or any thread): they take
one short lock and return. Each ``Terminal`` owns one daemon writer thread, the only code that blocks on output.
"""

from __future__ import annotations

import collections
import contextlib
import io
import logging
import os
import sys
import threading
import time
from typing import TextIO

from proxy.model import (
    Clock,
    ConnectionClosed,
    ConnectionOpened,
    HalfClosed,
    Message,
    MessageState,
    MessageUpdated,
    Notice,
    Record,
    Side,
    UpstreamConnected,
)

PREVIEW = 72


def preview(data: bytes, limit: int = PREVIEW) -> str:
    """A short human preview: quoted text when the bytes are printable UTF-8, hex otherwise."""
    head = data[: limit * 4]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        # A multibyte character cut at the end of the preview window is still text.
        if e.start >= len(head) - 3 and e.reason == "unexpected end of data":
            text = head[: e.start].decode("utf-8")
        else:
            return _hex(data, limit)
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    if text and printable < len(text) * 0.9:
        return _hex(data, limit)
    # Keep non-ASCII characters (emoji) readable; escape only control characters.
    shown = text if text.isprintable() else "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    if len(shown) > limit:
        shown = shown[: limit - 1] + "…"
    elif len(head) < len(data):
        shown += "…"
    return f'"{shown}"'


def _hex(data: bytes, limit: int) -> str:
    n = limit // 3
    out = data[:n].hex(" ")
    return out + (" …" if len(data) > n else "")


TERMINAL_BUFFER = 1 << 20
"""Bytes of lines a terminal may hold back before new lines are dropped (about 10,000 lines)."""
EXIT_WAIT = 1.0
"""Seconds ``close_terminals`` waits at exit for a terminal to take what is buffered."""


def dropped_notice(n: int) -> str:
    return f"… {n} lines dropped: the terminal is not reading fast enough"


class Terminal:
    """Lines to one output stream, written by a thread of its own: ``line()`` never waits for the stream.

    Lines are kept in order up to ``limit`` bytes; past it they are dropped and counted (``dropped``), and a
    ``dropped_notice`` line is written where they would have been. Bytes go to the stream's file descriptor
    (its raw file object where there is one, which Windows consoles need), never through the stream's own buffer:
    a writer blocked on a full pipe then holds no lock that another thread, or the interpreter at exit, waits for.
    A stream without a file descriptor (``io.StringIO``, a test's capture) cannot block and is written directly.
    """

    def __init__(self, stream: TextIO, limit: int = TERMINAL_BUFFER) -> None:
        self.stream = stream
        self.limit = limit
        self.dropped = 0
        """Lines dropped so far because the stream was not taking them."""
        self.written = 0
        self._lines: collections.deque[str] = collections.deque()
        self._bytes = 0
        self._gap = 0  # lines dropped since the last one kept
        self._busy = False  # the writer is writing a batch it took
        self._closed = False
        self._cond = threading.Condition(threading.Lock())
        self._encoding = getattr(stream, "encoding", None) or "utf-8"
        self._newline = os.linesep
        self._raw: object = None
        self._fd = -1
        try:
            self._fd = stream.fileno()
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            self._thread: threading.Thread | None = None
            return
        raw = getattr(getattr(stream, "buffer", None), "raw", None)
        if isinstance(raw, io.RawIOBase):
            self._raw = raw
        with contextlib.suppress(Exception):
            stream.flush()  # what was printed before goes first
        self._thread = threading.Thread(target=self._run, name="sockscope-terminal", daemon=True)
        self._thread.start()

    def line(self, text: str) -> None:
        """Queue one line (without its newline). Never blocks beyond a short lock."""
        if self._thread is None:
            self._write_now(text)
            return
        with self._cond:
            if self._closed:
                return
            if self._bytes + len(text) > self.limit:
                self.dropped += 1
                self._gap += 1
                return
            if self._gap:
                self._queue_notice()
            self._lines.append(text)
            self._bytes += len(text) + 1
            self._cond.notify()

    def _queue_notice(self) -> None:
        notice = dropped_notice(self._gap)
        self._lines.append(notice)
        self._bytes += len(notice) + 1  # (may pass the bound by this one line)
        self._gap = 0

    def _write_now(self, text: str) -> None:
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
            self.written += 1
        except (OSError, ValueError):
            self.dropped += 1

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._lines and not (self._gap and not self._busy) and not self._closed:
                    self._cond.wait()
                if not self._lines and self._gap:
                    self._queue_notice()  # caught up after dropping: say so now, not only when a next line comes
                if not self._lines:
                    return  # closed, and nothing left
                batch = list(self._lines)
                self._lines.clear()
                self._busy = True
            size = sum(map(len, batch)) + len(batch)
            data = (self._newline.join(batch) + self._newline).encode(self._encoding, "backslashreplace")
            ok = self._write_all(data)
            with self._cond:
                self._busy = False
                self._bytes -= size  # the batch counted against the bound until it was written
                self.written += len(batch)
                self._cond.notify_all()
            if not ok:
                return  # the stream is gone (closed pipe): nothing more can be shown

    def _write_all(self, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            try:
                n = self._raw.write(view) if self._raw is not None else os.write(self._fd, view)  # type: ignore[attr-defined]
            except InterruptedError:
                continue
            except (OSError, ValueError):
                return False
            if n is None:  # a non-blocking raw file that is full: wait a little (never on the relay's thread)
                time.sleep(0.01)
                continue
            view = view[n:]
        return True

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every queued line to be written; whether they were."""
        if self._thread is None:
            return True
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._lines or self._busy or self._gap:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float = EXIT_WAIT) -> bool:
        """Write what is queued, waiting at most ``timeout`` seconds; later lines are ignored."""
        done = self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        return done


_terminals: dict[int, Terminal] = {}
_terminals_lock = threading.Lock()


def terminal(stream: TextIO | None = None) -> Terminal:
    """The shared ``Terminal`` of ``stream`` (default: ``sys.stdout`` as it is now): one per stream, so lines
    from the printer, the control endpoint and the CLI stay in order."""
    s = stream if stream is not None else sys.stdout
    if s is None:  # pythonw: no console at all
        s = io.StringIO()
    with _terminals_lock:
        t = _terminals.get(id(s))
        if t is None or t.stream is not s or t._closed:
            t = _terminals[id(s)] = Terminal(s)
        return t


def say(text: str, *, err: bool = False) -> None:
    """One line of the proxy's own on stdout (or stderr), through its non-blocking terminal."""
    terminal(sys.stderr if err else sys.stdout).line(text)


def close_terminals(timeout: float = EXIT_WAIT) -> None:
    """At exit: give every terminal up to ``timeout`` seconds (in all) to take its lines, then stop them.

    A terminal that is not reading keeps the rest: the process exits anyway (writer threads are daemons blocked
    in a system call, holding no lock the interpreter's shutdown needs).
    """
    deadline = time.monotonic() + timeout
    with _terminals_lock:
        ts = list(_terminals.values())
        _terminals.clear()
    for t in ts:
        t.close(max(0.0, deadline - time.monotonic()))


class TerminalLogHandler(logging.Handler):
    """Log records (asyncio's "Fatal error on transport", say) to stderr through its ``Terminal``: Python's
    default last-resort handler writes to stderr with a blocking write, on whatever thread logs."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:
            text = f"{record.levelname}: {record.msg!r}"
        for line in text.splitlines():
            say(line, err=True)


class Printer:
    """Formats records as lines for a terminal (``format``) and writes them through a non-blocking ``Terminal``.

    ``prefix`` starts every line (``sockscope run`` names the port when several proxies share a terminal).
    """

    def __init__(self, clock: Clock, out: TextIO | None = None, show_messages: bool = True,
                 prefix: str = "") -> None:
        self.clock = clock
        self.out = out or sys.stdout
        self.show_messages = show_messages
        self.prefix = prefix
        self.terminal = terminal(self.out)

    def _ts(self, mono_ns: int) -> str:
        wall = self.clock.to_wall_ns(mono_ns)
        return time.strftime("%H:%M:%S", time.localtime(wall / 1e9)) + f".{(wall // 1_000_000) % 1000:03d}"

    def __call__(self, r: Record) -> None:
        line = self.format(r)
        if line is not None:
            self.terminal.line(self.prefix + line)

    def format(self, r: Record) -> str | None:
        if isinstance(r, Message):
            if not self.show_messages:
                return None
            state = "" if r.state is MessageState.FORWARDED else f" [{r.state.value}]"
            origin = "" if r.origin.value == "live" else f" ({r.origin.value})"
            delay = ""
            if r.state is MessageState.SCHEDULED and r.release_ns is not None and r.release_ns > r.arrival_ns:
                delay = f" +{(r.release_ns - r.arrival_ns) / 1e6:.1f}ms"
            return (f"{self._ts(r.arrival_ns)} #{r.conn_id} {r.direction.arrow} {r.direction.label} "
                    f"{r.size:>6} B{state}{origin}{delay}  {preview(r.data)}")
        if isinstance(r, MessageUpdated):
            if not self.show_messages or r.state is MessageState.FORWARDED:
                return None
            return f"{self._ts(r.time_ns)} #{r.conn_id} message {r.msg_id} {r.state.value}"
        if isinstance(r, ConnectionOpened):
            (ch, cp), (th, tp) = r.client_addr, r.target_addr
            what = f" (replay of #{r.replay_of})" if r.replay_of is not None else ""
            return f"{self._ts(r.time_ns)} #{r.conn_id} opened {ch}:{cp} → {th}:{tp}{what}"
        if isinstance(r, UpstreamConnected):
            return None
        if isinstance(r, HalfClosed):
            who = "client" if r.side is Side.CLIENT else "server"
            return f"{self._ts(r.time_ns)} #{r.conn_id} {who} finished sending (FIN passed on)"
        if isinstance(r, ConnectionClosed):
            lost = f", {r.discarded} pending message(s) never delivered" if r.discarded else ""
            return (f"{self._ts(r.time_ns)} #{r.conn_id} closed: {r.reason.value} ({r.detail}); "
                    f"c2s {r.messages_c2s} msgs/{r.bytes_c2s} B, s2c {r.messages_s2c} msgs/{r.bytes_s2c} B{lost}")
        if isinstance(r, Notice):
            return f"{self._ts(r.time_ns)} {r.level}: {r.text}"
        return None
