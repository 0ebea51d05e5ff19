"""Decoded one-line summaries for the terminal printer of ``sockscope-proxy`` and ``sockscope run``.

Role: the ``sockscope.summarisers`` entry point (see pyproject.toml) names :func:`make_summariser`; the printer in
``proxy/printer.py`` loads it through that entry point (``proxy/`` never imports ``inspector``) and calls the
summariser it returns for each message's line: ``pickle Player(game) {'name': 'bob', 'x': 1.5}``,
``msgpack {'t': 'state', 'pos': [1, 2]}``, ``json {"type": "move"}``, ``struct x=1 y=2.5``. Plain text and bytes
no decoder recognises give None: the printer then shows them as text or hex, as it always has. So does a decode
that fails or gives up at its deadline.

The summariser also follows each connection's framing (the printer passes it ``FramingInferred`` and
``ConnectionClosed`` records, see :meth:`Summariser.observe`): decoders get it as evidence
(``DecodeContext.framing``), and a direction of fixed-size records gets a line offering the struct layouts that
fit them: those ``sockscope run`` found in the program's source (``inspector.layouts``; a single one is then used
to decode that direction's records), else a guess from the records' bytes, marked as one and never used to decode.
Must not import: Qt. ``inspector.decode`` is imported by :func:`make_summariser`, not when this module is.
Thread: the terminal's writer thread (the printer makes and calls the summariser there, never on the relay's).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from proxy.model import ConnectionClosed, Direction, FramingInferred, Message

if TYPE_CHECKING:
    from inspector.decode import DecoderRegistry
    from inspector.layouts import Layout, SourceScan

SUMMARY_LIMIT = 120
"""Longest summary on a terminal line (the line's head, time, connection and size, comes before it)."""
GUESS_AFTER = 8
"""Records of a direction a guess waits for (or fewer, at least 2, when the connection closes first)."""
SCAN_WAIT = 0.5
"""Seconds the first fixed-size framing waits for the scan of the program's source (it takes milliseconds)."""
MAX_TRACKED = 4096
"""Directions whose framing is remembered at once (a closed connection's are forgotten)."""
LAYOUT_LIMIT = 240
"""Longest layout line."""
_AS_BEFORE = frozenset({"text", "hex"})
"""Decoders whose summary says no more than the printer's own text-or-hex preview."""
_FIXED = re.compile(r"fixed:(\d+)")


@dataclass(slots=True)
class _Lane:
    """What the summariser knows of one direction of one connection."""

    framing: str | None = None
    size: int = 0
    """Bytes of a record when the framing is ``fixed:N``, else 0."""
    spec: str | None = None
    """The struct layout its records are decoded with (a single match from the program's source)."""
    samples: list[bytes] = field(default_factory=list)
    """Records kept for a guess (only while one is to be made)."""
    waiting: bool = False
    """The offer waits: for the source scan, or for records to guess from."""
    feed: Callable[[Message], None] | None = None
    """For a ``websocket`` direction: the WebSocket decoder's stream tracker, fed each message in order."""


def make_summariser(scan: SourceScan | None = None) -> Callable[[Message, int], str | None]:
    """The summariser the printer calls (see ``proxy.printer.Summariser``); imports the decoders and builds the
    default registry (its plugins included) now, so the first message does not wait for them. ``scan``: the
    program's source layouts (``sockscope run``); without it fixed-size records get a guess only."""
    from inspector.decode import default_registry

    return Summariser(default_registry(), scan)


class Summariser:
    """Decodes messages for the terminal with their connection's framing, and offers struct layouts for
    fixed-size records (see the module's docstring). One per printer, used on its writer thread only."""

    def __init__(self, registry: DecoderRegistry, scan: SourceScan | None = None) -> None:
        self.registry = registry
        self.scan = scan
        self._lanes: dict[tuple[int, Direction], _Lane] = {}
        self._said: set[tuple[str, int, str]] = set()  # (direction, size, offer): said once per run
        self._guessed: set[tuple[str, int]] = set()  # (direction, size) guessed already
        self._notes: list[str] = []

    # -- the printer's calls

    def __call__(self, msg: Message, deadline_ns: int) -> str | None:
        from inspector.decode import DecodeContext, framing_delimiter
        from inspector.decode._enet import observe_datagram

        observe_datagram(msg)  # in capture order: an ENet message in fragments is whole on its last datagram

        lane = self._lanes.get((msg.conn_id, msg.direction))
        if lane is not None and lane.feed is not None:
            lane.feed(msg)  # a WebSocket direction: its stream tracker sees every message, in order
        ctx = self.registry.context_for(msg.conn_id, msg.direction, detail=False)
        if lane is not None and lane.framing is not None:
            if lane.waiting:
                self._collect(msg, lane)
            ctx = DecodeContext(ctx.direction, ctx.conn_id, ctx.struct_format or lane.spec,
                                ctx.json_delimiter or framing_delimiter(lane.framing), ctx.decode_as, False,
                                deadline_ns, lane.framing)
        else:
            ctx = DecodeContext(ctx.direction, ctx.conn_id, ctx.struct_format, ctx.json_delimiter, ctx.decode_as,
                                False, deadline_ns, ctx.framing)
        view = self.registry.decode(msg.data, ctx)
        if view.error is not None or view.decoder in _AS_BEFORE or not view.summary:
            return None
        text = f"{view.decoder} {view.summary}"
        if len(text) > SUMMARY_LIMIT:
            text = text[: SUMMARY_LIMIT - 1] + "…"
        return text

    def observe(self, record: object) -> list[str]:
        """A framing change or a closed connection (the printer passes them in order with the messages); returns
        lines to print (without the time, which the printer adds)."""
        if isinstance(record, FramingInferred):
            return self._framing(record)
        if isinstance(record, ConnectionClosed):
            out: list[str] = []
            for d in (Direction.C2S, Direction.S2C):
                lane = self._lanes.pop((record.conn_id, d), None)
                if lane is not None and lane.waiting and len(lane.samples) >= 2:
                    out.extend(self._offer(record.conn_id, d, lane, final=True))
            return out
        return []

    def take_notes(self) -> list[str]:
        """Lines that the last message brought about (a guess once enough records came), to print after it."""
        notes, self._notes = self._notes, []
        return notes

    # -- layouts for fixed-size records

    def _framing(self, r: FramingInferred) -> list[str]:
        key = (r.conn_id, r.direction)
        lane = self._lanes.get(key)
        if lane is None:
            if len(self._lanes) >= MAX_TRACKED:
                self._lanes.clear()  # connections that never closed (their records were dropped): start again
            lane = self._lanes[key] = _Lane()
        lane.framing = None if r.framing in ("auto", "raw") else r.framing
        if r.framing == "websocket" and lane.feed is None:
            from inspector.decode._websocket import TRACKER

            lane.feed = TRACKER.feeder(self, r.conn_id, r.direction)
        m = _FIXED.fullmatch(r.framing)
        size = int(m.group(1)) if m else 0
        if size == lane.size:
            return []
        lane.size, lane.spec, lane.samples, lane.waiting = size, None, [], False
        if not size:
            return []
        lane.waiting = True
        return self._offer(r.conn_id, r.direction, lane, final=False)

    def _collect(self, msg: Message, lane: _Lane) -> None:
        size = lane.size
        data = msg.data
        if size and len(data) % size == 0:
            for i in range(0, min(len(data), size * GUESS_AFTER), size):
                if len(lane.samples) < GUESS_AFTER:
                    lane.samples.append(data[i : i + size])
        if len(lane.samples) >= GUESS_AFTER or (self.scan is not None and self.scan.done()):
            self._notes.extend(self._offer(msg.conn_id, msg.direction, lane, final=False))

    def _offer(self, conn_id: int, d: Direction, lane: _Lane, *, final: bool) -> list[str]:
        """The line offering layouts for ``lane``'s records, once there is something to offer; sets the layout
        the records are decoded with when the source has exactly one that fits."""
        from inspector.layouts import guess_layout, layouts_for_size

        size = lane.size
        found: list[Layout] = []
        scanned: list[Layout] | None = None
        if self.scan is not None:
            if final:  # the connection is over: wait for the scan (sockscope run waits for it before it stops)
                layouts = self.scan.wait(SCAN_WAIT)
                scanned = layouts if self.scan.done() else None
            else:
                scanned = self.scan.result(SCAN_WAIT)
                if scanned is None:
                    return []  # still scanning: asked again with the next record
            found = scanned or []
        fits = [lay for lay in layouts_for_size(found, size) if lay.size == size] or layouts_for_size(found, size)
        head = f"#{conn_id} {d.label}"
        if len(fits) == 1:
            lane.waiting, lane.samples = False, []
            lane.spec = fits[0].spec()
            how = "fit" if final else "decoded with"  # (at the end: the scan came after the records)
            return self._say(d, size, f"{head} {size}-byte records {how} the layout from the source: "
                                      f"{_shown(fits[0])}")
        if fits:
            lane.waiting, lane.samples = False, []
            shown = "; ".join(_shown(lay) for lay in fits[:4]) + ("; …" if len(fits) > 4 else "")
            return self._say(d, size, f"{head} {size}-byte records fit {len(fits)} layouts from the source: {shown} "
                                      "(choose one in the window: sockscope run --window)")
        if (d.label, size) in self._guessed:  # a connection per request: guessed once
            lane.waiting, lane.samples = False, []
            return []
        if len(lane.samples) < (2 if final else GUESS_AFTER):
            return []
        lane.waiting = False
        guess = guess_layout(lane.samples)
        if len(self._guessed) < MAX_TRACKED:
            self._guessed.add((d.label, size))
        lane.samples = []
        where = ("no source to read" if self.scan is None else "no layout in the program's source fits them"
                 if scanned is not None or not final else "the program's source is still being read")
        if guess is None:
            return self._say(d, size, f"{head} {size}-byte records: no layout guessed ({where}; their bytes look "
                                      "random)")
        return self._say(d, size, f"{head} {size}-byte records, guess: {guess.fmt} ({guess.origin}, {where}; "
                                  "a guess, not used to decode)")

    def _say(self, d: Direction, size: int, line: str) -> list[str]:
        """``line`` unless it was said for this direction and record size before (a connection per request)."""
        key = (d.label, size, line.split(" ", 2)[2])
        if key in self._said:
            return []
        if len(self._said) < MAX_TRACKED:
            self._said.add(key)
        return [line if len(line) <= LAYOUT_LIMIT else line[: LAYOUT_LIMIT - 1] + "…"]


def _shown(layout: Layout) -> str:
    named = " ".join(n or "?" for n in layout.names) if any(layout.names) else ""
    return f"{layout.fmt}{' ' + named if named else ''} ({layout.origin})"
