"""Value types shared by the whole engine: directions, origins, states and the records it publishes.

Role: the vocabulary of sockscope. Every record here is a small immutable, slotted dataclass (:func:`frozen`) so
it can be handed to subscribers on any thread without copying.
Must not import: Qt, ``inspector``, asyncio, sockets, or any other ``proxy`` module.
Thread: none of its own; records are immutable and safe to share.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import TypeVar, dataclass_transform

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True)
def frozen(cls: type[_T]) -> type[_T]:
    """A dataclass that is frozen for the type checker and slotted, for the values built per message.

    mypy (strict, in CI) treats its fields as read-only, as for ``@dataclass(frozen=True)``; at run time it is a
    plain slotted dataclass with the frozen one's ``__hash__``. A frozen dataclass's ``__init__`` sets every field
    through ``object.__setattr__``: 4.5 times the cost of plain assignments, and the relay builds four of these (an
    event, two commands and a ``Message``) for every message it forwards.
    """
    return dataclass(slots=True, unsafe_hash=True)(cls)


class Side(enum.IntEnum):
    """One end of a relayed connection, as seen by the proxy."""

    CLIENT = 0
    SERVER = 1

    @property
    def other(self) -> Side:
        return _OTHER_SIDE[self]


class Direction(enum.IntEnum):
    """Which way a message travels: client to server (``c2s``) or server to client (``s2c``)."""

    C2S = 0
    S2C = 1

    # Looked up in tuples by value: a member reached through its class (``Side.CLIENT``) goes through enum's
    # metaclass ``__getattr__`` hook, about ten times the cost of a global, and these run for every message.

    @property
    def source(self) -> Side:
        """The side whose bytes travel in this direction."""
        return _SOURCE[self]

    @property
    def destination(self) -> Side:
        return _DESTINATION[self]

    @property
    def label(self) -> str:
        return _LABEL[self]

    @property
    def arrow(self) -> str:
        return _ARROW[self]

    @classmethod
    def from_side(cls, side: Side) -> Direction:
        """The direction of bytes *received from* ``side``."""
        return _FROM_SIDE[side]

    @classmethod
    def parse(cls, text: str) -> Direction:
        t = text.strip().lower()
        if t in ("c2s", "up", "client", "->", "→"):
            return cls.C2S
        if t in ("s2c", "down", "server", "<-", "←"):
            return cls.S2C
        raise ValueError(f"unknown direction {text!r}: expected c2s or s2c")


_OTHER_SIDE = (Side.SERVER, Side.CLIENT)
_SOURCE = (Side.CLIENT, Side.SERVER)
_DESTINATION = (Side.SERVER, Side.CLIENT)
_FROM_SIDE = (Direction.C2S, Direction.S2C)
_LABEL = ("c2s", "s2c")
_ARROW = ("→", "←")


class Origin(enum.StrEnum):
    """Where a message's bytes came from."""

    LIVE = "live"
    INJECTED = "injected"
    REPLAYED = "replayed"
    EDITED = "edited"
    DUPLICATE = "duplicate"  # a copy made by a duplicate fault or rule


class MessageState(enum.StrEnum):
    """What the engine did (or is doing) with a message."""

    FORWARDED = "forwarded"  # written to its destination socket
    SCHEDULED = "scheduled"  # waiting for its release time (latency, jitter, bandwidth, freeze)
    HELD = "held"  # waiting for the user (hold rule or "hold next")
    DROPPED = "dropped"  # deliberately not forwarded (user, rule or fault)
    DISCARDED = "discarded"  # never forwarded because the connection closed first


class DelayReason(enum.StrEnum):
    """Why a message was released later than it arrived."""

    LATENCY = "latency"
    JITTER = "jitter"
    BANDWIDTH = "bandwidth"
    SPIKE = "spike"
    FREEZE = "freeze"
    HOLD = "hold"
    QUEUE = "queue"  # waited behind an earlier message (TCP order)
    RULE = "rule"  # a matching rule asked for extra delay


class CloseReason(enum.StrEnum):
    """How a connection ended, from the proxy's point of view."""

    CLOSED = "closed"  # both sides closed cleanly (FIN both ways)
    CLIENT_RESET = "client reset"
    SERVER_RESET = "server reset"
    UPSTREAM_REFUSED = "upstream refused"
    UPSTREAM_TIMEOUT = "upstream timeout"
    UPSTREAM_ERROR = "upstream error"
    PROXY_CLOSED = "closed by proxy"
    PROXY_RESET = "reset by proxy"
    SHUTDOWN = "proxy shutdown"
    IDLE_TIMEOUT = "idle timeout"  # a UDP flow: no datagram either way for the idle timeout
    ERROR = "error"


@frozen
class Clock:
    """Anchors the engine's monotonic nanoseconds to wall-clock time.

    The core only ever sees monotonic ``now`` values; anything shown to a human converts through here.
    """

    mono_ns: int
    wall_ns: int

    @classmethod
    def now(cls) -> Clock:
        return cls(time.monotonic_ns(), time.time_ns())

    def to_wall_ns(self, mono_ns: int) -> int:
        return self.wall_ns + (mono_ns - self.mono_ns)


# ---------------------------------------------------------------------------------------------------------
# Records published to subscribers. Each is a fact that already happened.


@frozen
class ConnectionOpened:
    conn_id: int
    client_addr: tuple[str, int]
    target_addr: tuple[str, int]
    time_ns: int
    replay_of: int | None = None
    """For a session replay: the id of the recorded connection being replayed."""
    transport: str = "tcp"
    """``tcp`` for a connection, ``udp`` for a flow (the datagrams of one client address, see docs/udp.md)."""


@frozen
class UpstreamConnected:
    conn_id: int
    server_addr: tuple[str, int]
    time_ns: int


@frozen
class HalfClosed:
    """One side sent FIN; the proxy passed it on (after flushing what was pending)."""

    conn_id: int
    side: Side
    time_ns: int


@frozen
class ConnectionClosed:
    conn_id: int
    reason: CloseReason
    detail: str
    time_ns: int
    bytes_c2s: int
    bytes_s2c: int
    messages_c2s: int
    messages_s2c: int
    discarded: int = 0
    """Messages that were held or scheduled when the connection ended and so never reached their peer."""


@frozen
class Message:
    """One framed message, as captured by the proxy.

    Published once when it is framed (``state`` FORWARDED on the fast path, SCHEDULED or HELD otherwise);
    a later :class:`MessageUpdated` tells what happened to a message that was not forwarded at once.
    """

    id: int
    conn_id: int
    direction: Direction
    seq: int
    """Per connection and direction, from 0, in stream order."""
    data: bytes
    arrival_ns: int
    release_ns: int | None
    """When it was (or is scheduled to be) written to its destination; None while held."""
    origin: Origin = Origin.LIVE
    state: MessageState = MessageState.FORWARDED
    delays: tuple[tuple[DelayReason, int], ...] = ()
    """The added delay split by reason, in nanoseconds."""
    note: str = ""
    """Why a datagram was dropped, truncated, corrupted or sent ahead, in words ("lost: Gilbert-Elliott bad
    state"); empty for every TCP message."""
    flips: tuple[int, ...] = ()
    """Bit positions (byte index × 8 + bit, bit 0 the least significant) a corrupt impairment flipped in ``data``
    (which holds the bytes as forwarded): XOR them back for the original."""

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def added_delay_ns(self) -> int | None:
        if self.release_ns is None:
            return None
        return self.release_ns - self.arrival_ns


@frozen
class MessageUpdated:
    """A message changed state: released, dropped, edited, or discarded at close."""

    msg_id: int
    conn_id: int
    direction: Direction
    state: MessageState
    time_ns: int
    release_ns: int | None = None
    data: bytes | None = None
    """Replacement bytes when the user edited a held message."""
    delays: tuple[tuple[DelayReason, int], ...] = ()


@frozen
class Notice:
    """A warning or error worth showing to the user (framing fallback, refused upstream, ...)."""

    level: str  # "info" | "warning" | "error"
    text: str
    time_ns: int
    conn_id: int | None = None
    direction: Direction | None = None


@frozen
class FramingInferred:
    """The framing of one direction of a connection changed: inferred (``--framing auto``), lost (an incomplete
    frame waited past the stall bound, or the bytes contradicted the framing), or found again.

    From message ``from_seq`` on (stream byte ``at_offset`` of this direction's live bytes) messages are framed
    with ``framing``. When ``cause`` is ``inferred`` or ``remembered``, the live messages ``since_seq`` ..
    ``from_seq - 1`` were passed on raw (one per read) while inference watched, and their bytes, joined, are
    whole messages of ``framing``: a view may re-frame them.
    """

    conn_id: int
    direction: Direction
    framing: str
    """A name as for ``--framing`` (``len16be``, ``delim:EOT\\x00``, ``header16json``, ``raw``), or ``auto`` while
    inference watches again."""
    reason: str
    """Why, in words: "2-byte big-endian length prefix: 3 of 3 messages fit (3 reads)"."""
    from_seq: int
    at_offset: int
    time_ns: int
    since_seq: int = 0
    messages: int = 0
    """Messages of ``framing`` seen while inferring (the evidence); 0 when not inferred."""
    cause: str = "inferred"
    """``inferred``, ``remembered`` (a hint from earlier connections to the same target, checked), ``stall``,
    ``contradiction``, ``resync`` (an explicit framing fits again), ``limit`` (raw for the rest) or ``user``
    (chosen for this live connection)."""


class RuleUndecided(Exception):
    """A rule's predicate cannot decide on a message within what the relay's thread may spend on it (a message
    too big to decode or to search, a decode that ran out of time). The rule does not match; the relay warns once
    per rule and connection with this exception's text, which should say why in the user's terms."""


Record = (ConnectionOpened | UpstreamConnected | HalfClosed | ConnectionClosed | Message | MessageUpdated | Notice
          | FramingInferred)


@dataclass(slots=True)
class Ids:
    """Hands out process-wide increasing ids for connections and messages (single-threaded use)."""

    next_conn: int = 1
    next_msg: int = 1

    def conn(self) -> int:
        n = self.next_conn
        self.next_conn = n + 1
        return n

    def msg(self) -> int:
        n = self.next_msg
        self.next_msg = n + 1
        return n
