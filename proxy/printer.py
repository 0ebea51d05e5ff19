"""The headless printer: one line per message and per connection event, like tcpdump for messages.

Role: a subscriber that formats records for a terminal. Text is shown when the bytes are printable UTF-8,
hex otherwise.
Must not import: Qt, ``inspector``.
Thread: called on the engine's event-loop thread; it writes to a text stream and never blocks on anything else.
"""

from __future__ import annotations

import sys
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


class Printer:
    def __init__(self, clock: Clock, out: TextIO | None = None, show_messages: bool = True) -> None:
        self.clock = clock
        self.out = out or sys.stdout
        self.show_messages = show_messages

    def _ts(self, mono_ns: int) -> str:
        wall = self.clock.to_wall_ns(mono_ns)
        return time.strftime("%H:%M:%S", time.localtime(wall / 1e9)) + f".{(wall // 1_000_000) % 1000:03d}"

    def __call__(self, r: Record) -> None:
        line = self.format(r)
        if line is not None:
            self.out.write(line + "\n")
            self.out.flush()

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
