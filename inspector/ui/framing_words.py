"""What the window says about framing: the framing of each direction, why it was chosen, and a warning in a
learner's words when it stopped fitting.

Role: text only, from the store's :class:`~inspector.store.LaneFraming` (what the proxy's ``FramingInferred``
records said) and :class:`~inspector.store.Frame` (a message re-framed for the view). The Connections panel, the
detail pane and the window's notices use it; the framing names themselves are those of ``--framing``
(docs/framing.md), explained with ``proxy.inference.describe``.
Must not import: Qt, ``inspector.bridge``.
Thread: any; pure.
"""

from __future__ import annotations

from typing import Final

from inspector.store import LaneFraming, MessageStore
from proxy.model import Direction, FramingInferred

__all__ = ["DATAGRAM", "FROM_TO", "NOT_FOR_DATAGRAMS", "describe", "lane_short", "lane_tooltip", "message_note",
           "warning_text"]

FROM_TO: Final = {Direction.C2S: "from your client to the server", Direction.S2C: "from the server to your client"}
LOST: Final = frozenset(("stall", "contradiction", "limit"))
"""Causes of a framing record that say a framing stopped fitting."""
MENU_HINT: Final = "right-click the connection and choose Framing"
DATAGRAM: Final = "datagram"
"""The framing of a UDP flow's directions, as the window names it: none is needed, a datagram is a message."""
NOT_FOR_DATAGRAMS: Final = ("framing does not apply to UDP: each datagram is one message, exactly as it was sent "
                            "(the network keeps datagram boundaries)")


def describe(name: str) -> str:
    """``proxy.inference.describe``, imported on first use: the inference module is ~7 ms the window's first frame
    does not need (its words are shown once a connection has framing to explain)."""
    if name == DATAGRAM:
        return "one UDP datagram is one message"
    from proxy.inference import describe as describe_framing

    return describe_framing(name)


def lane_short(lane: LaneFraming) -> str:
    """A direction's framing in a few characters, for a table cell: ``len16be``, ``auto…`` while sockscope works
    it out, ``⚠ raw`` after a framing stopped fitting, ``?`` when not known."""
    name = lane.framing
    if not name:
        return "?"
    text = "auto…" if name == "auto" else name
    return f"⚠ {text}" if lane.stopped_fitting else text


def _how(lane: LaneFraming) -> str:
    cause, name = lane.cause, lane.framing
    if name == "auto":
        return ("each read is shown as it came while sockscope works the framing out again" if lane.lost else
                "each read is shown as it came while sockscope works the framing out from the first messages")
    if cause == "start":
        return "the framing set for new connections"
    if cause == "inferred":
        return f"worked out from the first messages ({lane.reason})"
    if cause == "remembered":
        why = lane.reason.removeprefix("as on earlier connections to this server, ")
        return f"as on earlier connections to this server ({why})"
    if cause == "user":
        return "chosen by you"
    if cause == "resync":
        return "the messages fit it again"
    if cause in LOST:
        return "each read is shown as it came"
    return lane.reason


def lane_tooltip(direction: Direction, lane: LaneFraming) -> str:
    """A few lines on one direction's framing: what it is, how it was found, what was re-framed, and what went
    wrong if it stopped fitting."""
    if not lane.framing:
        return f"{direction.arrow} {direction.label} ({FROM_TO[direction]}): framing not known yet"
    name = lane.framing
    if name == DATAGRAM:
        return f"{direction.arrow} {direction.label} ({FROM_TO[direction]}): {NOT_FOR_DATAGRAMS}"
    what = "raw: each read is one row" if name == "raw" else (
        "being worked out" if name == "auto" else f"{name}: {describe(name)}")
    lines = [f"{direction.arrow} {direction.label} ({FROM_TO[direction]}): {what}; {_how(lane)}"]
    if lane.reframed:
        lines.append(f"   {lane.reframed} read{'s' if lane.reframed != 1 else ''} shown re-framed into whole messages")
    if lane.note:
        lines.append(f"   earlier reads not re-framed: {lane.note}")
    if lane.lost:
        lines.append(f"   ⚠ {lane.lost} stopped fitting: {lane.lost_reason}")
    return "\n".join(lines)


def message_note(store: MessageStore, row: int) -> str:
    """One line for the detail pane: how the message shown was cut out of the stream."""
    f = store.frame(row)
    if f is not None:
        first, last = store.ids[f.sources[0]], store.ids[f.sources[-1]]
        reads = f"read #{first}" if first == last else f"reads #{first} to #{last}"
        return (f"Framing {f.framing} ({describe(f.framing)}): this message was re-framed for the view from {reads}, "
                "which the proxy passed on as received while it worked out the framing.")
    c = store.connections.get(store.conn_of(row))
    if c is None:
        return ""
    if c.is_udp:
        return "UDP: this datagram is one message, exactly as it left the proxy (framing does not apply)."
    d = store.direction(row)
    if store.reframed(row):
        shown = c.framing[d].framing or "another framing"
        return (f"This read was passed on as received; the table shows it re-framed as {shown} messages "
                "(the rows with its number).")
    at = c.framing[d].at(store.seq_of(row))
    if at is None:
        return ""
    name, _cause, _reason = at
    lane = LaneFraming(name, _cause, _reason)
    if name == "raw" and _cause == "inferred":
        return ("Framing raw: each read is one row; no framing fitted the first messages "
                "(right-click the connection ▸ Framing to name one).")
    if name == "auto":
        return ("Framing auto: each read is one row while sockscope works the framing out from the first "
                "messages.")
    if name == "raw":
        return f"Framing raw: each read is one row; {_how(lane)}."
    return f"Framing {name} ({describe(name)}): {_how(lane)}."


def warning_text(record: FramingInferred, lost: str) -> str | None:
    """A learner's sentence for a framing that stopped fitting (``record.cause`` stall, contradiction or limit;
    ``lost`` the framing that did), None for any other change."""
    if record.cause not in LOST:
        return None
    d = record.direction
    lost = lost or "the framing"
    named = f"{lost} ({describe(lost)})" if lost not in ("auto", "the framing") else "it had worked out"
    if record.cause == "stall":
        what = "part of a message waited a quarter of a second for the rest of it"
    elif record.cause == "contradiction":
        what = f"the bytes could not be a {lost} message"
    else:
        what = "a framing stopped fitting three times"
    if record.framing == "auto":
        then = "is working the framing out again from the next message"
    elif record.cause == "limit":
        then = "shows each read as it came from now on"
    else:
        then = f"shows each read as it came until one fits {lost} again"
    return (f"Connection #{record.conn_id}, {FROM_TO[d]}: the messages stopped fitting the framing {named}: {what}. "
            f"sockscope passed the bytes on as they came, so your game was not held up, and {then}. If the rows "
            f"look wrong, {MENU_HINT}.")
