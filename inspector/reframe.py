"""Re-framing for the view: where the messages of a framing lie in reads that were shown as they came.

Role: while the proxy infers a direction's framing it passes every read on raw (one message per read); once it
decides (or the user chooses a framing) the store asks :func:`cut` where that framing's messages lie in those reads,
so that the table can show one row per message: a read holding two length-prefixed frames becomes two rows, a line
sent in three pieces one row. The reads themselves are kept (the store never changes a captured byte); a
:class:`Cut` only says which bytes of which reads make each message (:class:`Piece`).

It uses the engine's own sans-IO framers (``proxy.framing``), fed the reads once, in order: the work is bounded by
the bytes given, which the caller caps (:data:`REFRAME_MAX_BYTES`), and by :data:`REFRAME_MAX_PIECES`.

Must not import: Qt, ``inspector.ui``, ``inspector.bridge``.
Thread: any; pure (the store calls it on the GUI thread).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from proxy.framing import DEFAULT_MAX_FRAME, FramingError, make_framer, normalise_name
from proxy.websocket import WebSocketFramer

_LAYERED = (WebSocketFramer,)
"""Framings that register themselves when imported, imported here so a view can be re-framed with them."""

__all__ = ["REFRAME_MAX_BYTES", "REFRAME_MAX_PIECES", "Cut", "Piece", "cut"]

REFRAME_MAX_BYTES: Final = 128 << 10
"""Most bytes of reads re-framed at once: twice what the proxy's inference watches (64 KiB), so an inferred
framing's reads always fit, and a framing chosen later re-frames at most this much of what came before."""
REFRAME_MAX_PIECES: Final = 4096
"""Most messages one re-framing makes (each becomes a row of the view)."""
SLICE: Final = 4096
"""Bytes fed to the framer at a time: past the messages' cap, at most one slice more is framed (a slice of
newlines is 4096 messages)."""


@dataclass(frozen=True, slots=True)
class Piece:
    """One message of the framing: from byte ``start`` of read ``first`` to byte ``end`` (exclusive) of read
    ``last``, the read that completed it."""

    first: int
    last: int
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Cut:
    """Where the messages of ``framing`` lie in the first ``reads`` reads given to :func:`cut`."""

    framing: str
    reads: int
    """How many of the reads (from the first) the pieces cover, exactly: they end on a message boundary."""
    pieces: tuple[Piece, ...]
    work: int
    """Bytes fed to the framer (a deterministic measure of the cost)."""
    why: str = ""
    """Why nothing (``reads`` 0), or not every read given, was cut; "" when all were."""

    def whole_reads(self, sizes: Sequence[int]) -> set[int]:
        """The reads (of the sizes given) that are exactly one message each: nothing changes for them."""
        return {p.first for p in self.pieces if p.first == p.last and p.start == 0 and p.end == sizes[p.first]}


def cut(reads: Sequence[bytes], framing: str, *, exact: bool, max_bytes: int = REFRAME_MAX_BYTES,
        max_pieces: int = REFRAME_MAX_PIECES) -> Cut:
    """The messages of ``framing`` in ``reads`` joined; a cut of no reads says why not in ``why`` (a phrase).

    ``exact``: every read must be used and the last must end on a message boundary (what the proxy promises for
    the reads it passed on while inferring); otherwise the longest run of reads from the first that ends on a
    boundary is cut (a framing the user chose for reads that did not all follow it). A framer that gives up on
    the bytes (not JSON, not msgpack, a header without a length) ends the run where it gave up.
    """
    try:
        name = normalise_name(framing)
        framer = make_framer(name, DEFAULT_MAX_FRAME) if name not in ("raw", "auto") else None
    except FramingError as e:
        return Cut(framing, 0, (), 0, str(e))
    if framer is None:
        return Cut(name, 0, (), 0, f"{name} shows each read as it came")
    pieces: list[Piece] = []
    best_reads, best_pieces = 0, 0
    fed = work = 0
    first, start = 0, 0  # where the next piece begins: read index and offset in it
    why = ""
    for i, data in enumerate(reads):
        if fed + len(data) > max_bytes:
            why = f"more than {max_bytes // 1024} KiB to re-frame"
            break
        fed += len(data)
        for off in range(0, len(data), SLICE):  # a slice at a time: a read of thousands of tiny messages stops early
            part = data[off:off + SLICE]
            work += len(part)
            frames = framer.feed(part)
            if framer.fallback is not None:
                why = framer.fallback
                break
            for f in frames:  # each ends in this read; only the first may have begun in an earlier one
                end = start + len(f) if first == i else len(f) - _span_before(reads, first, start, i)
                pieces.append(Piece(first, i, start, end))
                first, start = (i + 1, 0) if end == len(data) else (i, end)
            if len(pieces) > max_pieces:
                why = f"more than {max_pieces} messages"
                break
        if why:
            break
        if not framer.buffered:
            best_reads, best_pieces = i + 1, len(pieces)
    else:
        if best_reads < len(reads):
            why = f"the bytes do not end on a {name} message boundary"
    if (exact and best_reads < len(reads)) or not best_reads:
        return Cut(name, 0, (), work, why or "nothing to re-frame")
    return Cut(name, best_reads, tuple(pieces[:best_pieces]), work, why)


def _span_before(reads: Sequence[bytes], first: int, start: int, last: int) -> int:
    """Bytes of a piece that lie before read ``last``: from ``start`` in read ``first`` to the end of read
    ``last - 1``."""
    return len(reads[first]) - start + sum(len(reads[k]) for k in range(first + 1, last))
