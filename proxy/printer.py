"""The headless printer: one line per message and per connection event, like tcpdump for messages; and the
non-blocking terminal every line of the proxy goes through.

Role: ``Printer`` is a subscriber that formats records for a terminal: a line per message (a decoded summary
such as ``pickle Player(game) {'x': 1.5}``, ``json {"type": "move"}``, else text when the bytes are printable
UTF-8, hex otherwise), per connection event, per notice, and per framing change (``FramingInferred``: what
``--framing auto`` inferred and why, or what happened when a framing did not hold and what the user can do).
Decoded summaries come from a *summariser*, found through the ``sockscope.summarisers`` entry point (the
inspector registers one; this package never imports ``inspector``). Without one, text or hex as always.

``Terminal`` writes lines to an output stream without ever making its caller wait: a terminal, an IDE console,
``| less`` or a parent process that reads slowly (or not at all) must never stop the relay. Lines go into a
bounded buffer that a writer thread of the terminal's own writes out; when the buffer is full, new lines are
dropped and counted, and ``… N lines dropped: the terminal is not reading fast enough`` takes their place once the
terminal reads again. A line may be *deferred* (``Terminal.defer``): queued as a function that makes it, run by
the writer thread, which is how a message's line (and its decoding) stays off the relay's thread. At exit,
``close_terminals`` waits a short bound for what is buffered, never more. A thread with a queue works the same on
every OS (non-blocking pipes do not exist on Windows, and setting ``O_NONBLOCK`` on an inherited terminal would
change it for the parent shell too).

Decoding on the writer thread is kept from taking the relay's time (both threads share one interpreter and its
lock): deferred lines are made when the callers pause (:data:`SETTLE_NS`, at the latest :data:`SETTLE_MAX_NS`),
so not between a game's message and its answer; each decode has a deadline (:data:`SUMMARY_DEADLINE_NS`);
messages over :data:`SUMMARY_MAX_BYTES` are not decoded; and decoding gets at most :data:`SUMMARY_SHARE` of the
time (after a burst of :data:`SUMMARY_BURST_NS`); past that, messages are shown as text or hex and one line says
so.

Must not import: Qt, ``inspector``.
Thread: ``Printer`` and ``Terminal.line``/``Terminal.defer`` are called on the engine's event-loop thread (or any
thread): they take one short lock and return. Each ``Terminal`` owns one daemon writer thread, the only code that
blocks on output and the only code that runs deferred lines (and so the summariser).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import io
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TextIO

from proxy.model import (
    Clock,
    ConnectionClosed,
    ConnectionOpened,
    FramingInferred,
    HalfClosed,
    Message,
    MessageState,
    MessageUpdated,
    Notice,
    Record,
    Side,
    UpstreamConnected,
)

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint  # imported when plugins are scanned: it is slow to import

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
SETTLE_NS = 2_000_000
"""Deferred lines are made once no new one has been queued for this long (the relay has paused)..."""
SETTLE_MAX_NS = 100_000_000
"""... or at the latest this long after the first of them was queued (traffic that never pauses)."""


def dropped_notice(n: int) -> str:
    return f"… {n} lines dropped: the terminal is not reading fast enough"


Render = Callable[[], "str | Sequence[str] | None"]
"""A deferred line: called on the terminal's writer thread, returns the line, several lines, or None (no line)."""


class Terminal:
    """Lines to one output stream, written by a thread of its own: ``line()`` never waits for the stream.

    Lines are kept in order up to ``limit`` bytes; past it they are dropped and counted (``dropped``), and a
    ``dropped_notice`` line is written where they would have been. Bytes go to the stream's file descriptor
    (its raw file object where there is one, which Windows consoles need), never through the stream's own buffer:
    a writer blocked on a full pipe then holds no lock that another thread, or the interpreter at exit, waits for.
    A stream without a file descriptor (``io.StringIO``, a test's capture) cannot block and is written directly,
    except deferred lines, which are still made by the writer thread (and the lines queued behind them wait their
    turn there, so the order is kept).
    """

    def __init__(self, stream: TextIO, limit: int = TERMINAL_BUFFER) -> None:
        self.stream = stream
        self.limit = limit
        self.dropped = 0
        """Lines dropped so far because the stream was not taking them."""
        self.written = 0
        self._lines: collections.deque[tuple[str | Render, int]] = collections.deque()  # (line, bytes it holds)
        self._bytes = 0
        self._gap = 0  # lines dropped since the last one kept
        self._busy = False  # the writer is writing a batch it took
        self._closed = False
        self._deferred = 0  # deferred lines queued
        self._first_deferred = 0  # when the first of them was queued (monotonic ns)
        self._last_put = 0  # when the last of them was queued
        self._settling = False  # the writer waits for the callers to pause before making deferred lines
        self._hurry = 0  # flushes waiting: no settling
        self._cond = threading.Condition(threading.Lock())
        self._encoding = getattr(stream, "encoding", None) or "utf-8"
        self._newline = os.linesep
        self._raw: object = None
        self._fd = -1
        with contextlib.suppress(AttributeError, OSError, ValueError, io.UnsupportedOperation):
            self._fd = stream.fileno()
        if self._fd >= 0:
            raw = getattr(getattr(stream, "buffer", None), "raw", None)
            if isinstance(raw, io.RawIOBase):
                self._raw = raw
            with contextlib.suppress(Exception):
                stream.flush()  # what was printed before goes first
        else:
            self._newline = "\n"  # a text stream translates it itself
        self._thread = threading.Thread(target=self._run, name="sockscope-terminal", daemon=True)
        self._thread.start()

    def line(self, text: str) -> None:
        """Queue one line (without its newline). Never blocks beyond a short lock."""
        self._put(text, len(text) + 1)

    def defer(self, render: Render, cost: int) -> None:
        """Queue a line that ``render`` makes later, on the writer thread, in its place among the other lines.
        ``cost``: the bytes the queued ``render`` holds (its message), counted against ``limit`` like a line's.
        Never blocks beyond a short lock; past the limit it is dropped and counted like a line.

        Deferred lines are made once the callers have paused for :data:`SETTLE_NS` (or at the latest
        :data:`SETTLE_MAX_NS` after the first was queued): making them takes the interpreter's lock, and the
        relay, between a game's message and its answer, must not wait for it."""
        self._put(render, cost)

    def _put(self, item: str | Render, cost: int) -> None:
        with self._cond:
            if self._closed:
                return
            if self._fd < 0 and isinstance(item, str) and not self._lines and not self._busy:
                self._write_now(item)  # cannot block, and nothing queued goes before it
                return
            if self._bytes + cost > self.limit:
                self.dropped += 1
                self._gap += 1
                return
            if self._gap:
                self._queue_notice()
            self._lines.append((item, cost))
            self._bytes += cost
            if not isinstance(item, str):
                self._last_put = time.monotonic_ns()
                if not self._deferred:
                    self._first_deferred = self._last_put
                self._deferred += 1
            if not self._settling:  # a writer that is settling wakes by its own timer, not once per line
                self._cond.notify()

    def _settle(self, first: int) -> None:
        """Before making a deferred line: wait until the callers pause (see :meth:`defer`); ``first``: when the
        first deferred line of the batch was queued."""
        with self._cond:
            self._settling = True
            try:
                while not self._closed and not self._hurry:
                    now = time.monotonic_ns()
                    until = min(self._last_put + SETTLE_NS, first + SETTLE_MAX_NS)
                    if now >= until:
                        return
                    self._cond.wait((until - now) / 1e9)
            finally:
                self._settling = False

    def _queue_notice(self) -> None:
        notice = dropped_notice(self._gap)
        self._lines.append((notice, len(notice) + 1))
        self._bytes += len(notice) + 1  # (may pass the bound by this one line)
        self._gap = 0

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
                self._deferred = 0
                first = self._first_deferred
                self._busy = True
            size = sum(cost for _, cost in batch)
            texts = self._rendered(batch, first)
            ok = self._write_lines(texts) if texts else True
            with self._cond:
                self._busy = False
                self._bytes -= size  # the batch counted against the bound until it was written
                self.written += len(texts)
                self._cond.notify_all()
            if not ok:
                return  # the stream is gone (closed pipe): nothing more can be shown

    def _rendered(self, batch: Iterable[tuple[str | Render, int]], first: int) -> list[str]:
        """The lines of a batch, deferred ones made now, each once the callers pause (one that fails is a line
        saying so). Between two, the interpreter's lock is offered to the other threads (the relay's)."""
        texts: list[str] = []
        for item, _ in batch:
            if isinstance(item, str):
                texts.append(item)
                continue
            self._settle(first)
            try:
                out = item()
            except Exception as e:  # a bug in a formatter must not cost the terminal its thread
                out = f"sockscope: a line could not be formatted: {type(e).__name__}: {e}"
            time.sleep(0)
            if out is None:
                continue
            if isinstance(out, str):
                texts.append(out)
            else:
                texts.extend(out)
        return texts

    def _write_now(self, text: str) -> None:
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
            self.written += 1
        except (OSError, ValueError):
            self.dropped += 1

    def _write_lines(self, texts: list[str]) -> bool:
        text = self._newline.join(texts) + self._newline
        if self._fd < 0:
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):
                return False
            return True
        return self._write_all(text.encode(self._encoding, "backslashreplace"))

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
        deadline = time.monotonic() + timeout
        with self._cond:
            self._hurry += 1
            self._cond.notify_all()
            try:
                while self._lines or self._busy or self._gap:
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._thread.is_alive():
                        return False
                    self._cond.wait(left)
            finally:
                self._hurry -= 1
        return True

    def close(self, timeout: float = EXIT_WAIT) -> bool:
        """Write what is queued, waiting at most ``timeout`` seconds; later lines are ignored."""
        done = self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        return done


class _Discard(io.TextIOBase):
    """Where lines go when the process has no console at all (``pythonw``): nowhere, and nothing piles up."""

    def write(self, s: str) -> int:
        return len(s)


_DISCARD: TextIO = _Discard()  # type: ignore[assignment]  # (TextIOBase has all TextIO uses here)
_terminals: dict[int, Terminal] = {}
_terminals_lock = threading.Lock()


def terminal(stream: TextIO | None = None) -> Terminal:
    """The shared ``Terminal`` of ``stream`` (default: ``sys.stdout`` as it is now): one per stream, so lines
    from the printer, the control endpoint and the CLI stay in order."""
    s = stream if stream is not None else sys.stdout
    if s is None:  # pythonw: no console at all
        s = _DISCARD
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


# ------------------------------------------------------------------------------------------ decoded summaries

Summariser = Callable[[Message, int], "str | None"]
"""``(message, deadline_ns)`` -> one line naming the decoder and what it found (``json {"type": "move"}``,
``pickle Player(game) {'x': 1.5}``), or None when text or hex says as much (plain text, unknown binary, a decode
that failed or gave up). ``deadline_ns`` is a ``time.monotonic_ns()`` value the decode must stop at. Called on a
terminal's writer thread only, one message at a time. The summariser may also have ``observe(record)``, given each
``FramingInferred`` and ``ConnectionClosed`` record in order with the messages, and ``take_notes()``, asked after
each message; both return lines to print (a struct layout offered for a connection's fixed-size records)."""
SummariserFactory = Callable[[], "Summariser | None"]
"""Makes the summariser (and does its slow imports), on the writer thread, before the first message it decodes.
May raise :class:`SummariserLoadError`: the printer then says so in one line and prints text or hex."""
SUMMARISER_GROUP = "sockscope.summarisers"
"""The entry-point group of summariser factories (the inspector registers ``inspector.summary:make_summariser``)."""

SUMMARY_DEADLINE_NS = 20_000_000
"""Most time one message's decode may take on the writer thread."""
SUMMARY_MAX_BYTES = 64 << 10
"""Bigger messages are not decoded for the terminal (shown as text or hex), and their line is made at once."""
SUMMARY_SHARE = 0.1
"""Most of the writer's time decoding may take, over time: the rest of the process (the relay) keeps the rest."""
SUMMARY_BURST_NS = 250_000_000
"""Decoding time that may be spent at once (after a quiet spell) before :data:`SUMMARY_SHARE` applies."""
_LINE_COST = 96
"""Bytes a deferred message line is counted for besides its payload (the record, the line it becomes)."""
_OBSERVED = (FramingInferred, ConnectionClosed)
"""Records a summariser may follow (its ``observe``), besides the messages it decodes."""


class SummariserLoadError(Exception):
    """No summariser could be loaded; the message names each plugin that failed and why, in one line."""


def plugin_summariser(entry_points: Iterable[EntryPoint] | None = None) -> Summariser | None:
    """The summariser of the first plugin of the ``sockscope.summarisers`` group (or of ``entry_points``) that
    loads; None when no plugin is installed. :class:`SummariserLoadError` when every plugin failed (plugin code
    is arbitrary: any exception is caught and named)."""
    if entry_points is None:
        from importlib.metadata import entry_points as installed

        try:
            entry_points = installed(group=SUMMARISER_GROUP)
        except Exception as e:  # a broken installed distribution must not stop the printer
            raise SummariserLoadError(f"the terminal summariser plugins could not be listed: "
                                      f"{type(e).__name__}: {e}") from None
    failures: list[str] = []
    for ep in entry_points:
        try:
            factory = ep.load()
            summariser = factory()
            if summariser is not None and not callable(summariser):
                raise TypeError(f"{type(summariser).__name__} is not callable")
        except Exception as e:
            failures.append(f"the terminal summariser {f'{ep.name} = {ep.value}'!r} failed to load: "
                            f"{type(e).__name__}: {str(e)[:200]}")
            continue
        if summariser is not None:
            return summariser  # type: ignore[no-any-return]
    if failures:
        raise SummariserLoadError("; ".join(failures))
    return None


class Printer:
    """Formats records as lines for a terminal and writes them through a non-blocking ``Terminal``.

    ``prefix`` starts every line (``sockscope run`` names the port when several proxies share a terminal).
    ``summariser`` makes the function that decodes messages for their lines (default: the installed plugin's,
    see :func:`plugin_summariser`; None: text or hex only). It is made, and run, on the terminal's writer thread:
    a message's line is queued as a deferred line (:meth:`Terminal.defer`), so publishing a message costs the
    relay's thread one short lock. ``now_ns`` is the clock of the decoding budget (tests replace it).
    """

    def __init__(self, clock: Clock, out: TextIO | None = None, show_messages: bool = True,
                 prefix: str = "", summariser: SummariserFactory | None = plugin_summariser, *,
                 now_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self.clock = clock
        self.out = out or sys.stdout
        self.show_messages = show_messages
        self.prefix = prefix
        self.terminal = terminal(self.out)
        self._factory = summariser
        self._summarise: Summariser | None = None
        self._loaded = summariser is None
        self._now = now_ns
        self._budget = SUMMARY_BURST_NS
        self._budget_at: int | None = None
        self._said_busy = False
        self._said_failure = False
        if show_messages and summariser is not None:
            # Load now, on the writer thread, so the first message does not wait for the decoders' imports.
            self.terminal.defer(self._load, 0)

    def _ts(self, mono_ns: int) -> str:
        wall = self.clock.to_wall_ns(mono_ns)
        return time.strftime("%H:%M:%S", time.localtime(wall / 1e9)) + f".{(wall // 1_000_000) % 1000:03d}"

    def __call__(self, r: Record) -> None:
        if type(r) is Message:
            if not self.show_messages:
                return
            if r.size <= SUMMARY_MAX_BYTES:
                self.terminal.defer(functools.partial(self._message_lines, r), r.size + _LINE_COST)
                return
        line = self.format(r)
        if line is not None:
            self.terminal.line(self.prefix + line)
        if self.show_messages and self._factory is not None and isinstance(r, _OBSERVED):
            # in order with the messages' lines: the summariser follows each connection's framing
            self.terminal.defer(functools.partial(self._observe, r), _LINE_COST)

    # -------------------------------------------------------------------------------- on the writer thread

    def _load(self) -> list[str] | None:
        """Make the summariser (once); a failure is one line, and messages are then shown as text or hex."""
        if self._loaded:
            return None
        self._loaded = True
        assert self._factory is not None
        try:
            self._summarise = self._factory()
        except Exception as e:
            return [f"sockscope: {e}; messages are shown as text or hex"]
        return None

    def _message_lines(self, m: Message) -> list[str]:
        out = self._load() or []
        summary = None
        if self._summarise is not None:
            summary = self._summary(m, out)
        out.append(self.prefix + self._message_head(m) + (summary if summary is not None else preview(m.data)))
        take_notes = getattr(self._summarise, "take_notes", None)
        if take_notes is not None:
            out.extend(self._lines_of(take_notes, (), m.arrival_ns))
        return out

    def _observe(self, r: FramingInferred | ConnectionClosed) -> list[str]:
        """What the summariser makes of a framing change or a closed connection (see :data:`Summariser`)."""
        out = self._load() or []
        observe = getattr(self._summarise, "observe", None)
        if observe is not None:
            out.extend(self._lines_of(observe, (r,), r.time_ns))
        return out

    def _lines_of(self, call: Callable[..., object], args: tuple[object, ...], mono_ns: int) -> list[str]:
        try:
            lines = call(*args)
            if not isinstance(lines, list | tuple):
                return []
            head = f"{self.prefix}{self._ts(mono_ns)} "
            return [head + str(x).replace("\n", " ").replace("\r", " ") for x in lines[:8]]
        except Exception as e:  # a plugin's bug: said once, the messages' lines go on
            if self._said_failure:
                return []
            self._said_failure = True
            return [f"sockscope: the terminal's decoder failed: {type(e).__name__}: {str(e)[:200]} (not repeated)"]

    def _summary(self, m: Message, out: list[str]) -> str | None:
        """The summariser's line for ``m``, within the deadline and while the time budget lasts."""
        assert self._summarise is not None
        now = self._now()
        if self._budget_at is not None:
            self._budget = min(SUMMARY_BURST_NS, self._budget + int((now - self._budget_at) * SUMMARY_SHARE))
        self._budget_at = now
        if self._budget <= 0:
            if not self._said_busy:
                self._said_busy = True
                out.append("sockscope: messages come faster than the terminal can decode them: some are shown as "
                           "text or hex (not repeated)")
            return None
        try:
            summary = self._summarise(m, now + SUMMARY_DEADLINE_NS)
        except Exception as e:  # a decoder's bug: this message is shown as before, and the user is told once
            summary = None
            if not self._said_failure:
                self._said_failure = True
                out.append(f"sockscope: the terminal's decoder failed on message {m.id}: {type(e).__name__}: "
                           f"{str(e)[:200]}; such messages are shown as text or hex (not repeated)")
        after = self._now()
        self._budget -= after - now
        self._budget_at = after
        return summary if summary is None else summary.replace("\n", " ").replace("\r", " ")

    # -------------------------------------------------------------------------------- formatting

    def _message_head(self, r: Message) -> str:
        state = "" if r.state is MessageState.FORWARDED else f" [{r.state.value}]"
        origin = "" if r.origin.value == "live" else f" ({r.origin.value})"
        delay = ""
        if r.state is MessageState.SCHEDULED and r.release_ns is not None and r.release_ns > r.arrival_ns:
            delay = f" +{(r.release_ns - r.arrival_ns) / 1e6:.1f}ms"
        note = f" ({r.note})" if r.note else ""  # UDP: why dropped, or what was done to it (never on TCP)
        return (f"{self._ts(r.arrival_ns)} #{r.conn_id} {r.direction.arrow} {r.direction.label} "
                f"{r.size:>6} B{state}{origin}{delay}{note}  ")

    def format(self, r: Record) -> str | None:
        """The line of ``r`` without a decoded summary (messages as text or hex); None for records not shown."""
        if isinstance(r, Message):
            if not self.show_messages:
                return None
            return self._message_head(r) + preview(r.data)
        if isinstance(r, MessageUpdated):
            if not self.show_messages or r.state is MessageState.FORWARDED:
                return None
            return f"{self._ts(r.time_ns)} #{r.conn_id} message {r.msg_id} {r.state.value}"
        if isinstance(r, ConnectionOpened):
            (ch, cp), (th, tp) = r.client_addr, r.target_addr
            what = f" (replay of #{r.replay_of})" if r.replay_of is not None else ""
            if r.transport == "udp":
                return f"{self._ts(r.time_ns)} #{r.conn_id} UDP flow from {ch}:{cp} → {th}:{tp}{what}"
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
        if isinstance(r, FramingInferred):
            if not self.show_messages:
                return None  # --quiet prints what it always did: a framing that did not hold is a notice too
            return f"{self._ts(r.time_ns)} #{r.conn_id} {r.direction.label} {framing_line(r)}"
        return None


_CAUSE_WORDS = {
    "inferred": "inferred",
    "remembered": "remembered from earlier connections",
    "user": "chosen by the user",
    "resync": "fits again",
    "stall": "stalled",
    "contradiction": "contradicted",
    "limit": "given up",
}


def framing_line(r: FramingInferred) -> str:
    """``framing len16be (inferred): 2-byte big-endian length prefix: 2 of 2 messages fit (2 reads)``; for a
    framing that did not hold (and for raw inferred), what the user can do about it."""
    cause = _CAUSE_WORDS.get(r.cause, r.cause)
    reason = r.reason
    if r.cause == "user" and reason.startswith("chosen by the user"):
        reason = reason[len("chosen by the user"):].lstrip(", ")
    line = f"framing {r.framing} ({cause})" + (f": {reason}" if reason else "")
    d = r.direction.label
    live = "or set it for this live connection (the window, or the set_connection_framing command)"
    if r.cause in ("stall", "contradiction"):
        if r.framing == "auto":
            line += (f"; what you can do: nothing if the next guess holds; else name this direction's framing "
                     f"(--framing {d}=NAME, docs/framing.md), {live}")
        else:
            line += (f"; what you can do: if the framing you named is not this program's, use --framing auto or "
                     f"the right name (docs/framing.md), {live}")
    elif r.cause == "limit":
        line += (f"; what you can do: name this direction's framing (--framing {d}=NAME, docs/framing.md), "
                 f"{live}")
    elif r.framing == "raw" and r.cause == "inferred":
        line += (f"; if your program does frame its messages, name the framing: --framing {d}=NAME "
                 "(docs/framing.md)")
    return line
