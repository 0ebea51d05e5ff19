"""Export the client side of a capture as a Python script a learner can read and run: plain ``socket``, no sockscope.

Role: the script connects to the server (the recorded target, or ``HOST PORT`` from its command line), sends
each message the client sent, as the server received it (edited and injected ones included, dropped ones shown
as comments), optionally pausing as the client did (``--fast`` sends back to back), and prints every reply.
Each message is a Python ``bytes`` literal with a comment saying what it was (id, direction, seq, decoded
text). One list and one ``replay`` call per connection.

Everything from the session is data in the script, never code: payloads are ``bytes`` literals, the host a
``str`` literal, and what goes into comments or the docstring (host names, the source's name) is escaped so
a newline, quote or backslash in a hostile session or file name cannot end the comment or the docstring.

Must not import: PySide6, ``inspector.ui``.
Thread: any; one exporter belongs to the thread that feeds it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from proxy.model import ConnectionOpened, Direction, Message, MessageState, MessageUpdated, Record

from .fold import Final_, MessageFolder

__all__ = ["ReplayScriptExporter"]

COMMENT_MAX: Final = 70
LITERAL_WRAP: Final = 100


@dataclass(slots=True)
class _ConnScript:
    conn_id: int
    client: tuple[str, int] | None = None
    target: tuple[str, int] | None = None
    items: list[tuple[Message, bool]] = field(default_factory=list)
    """(message, sent): c2s messages in stream order; ``sent`` is false for dropped/discarded ones."""


HOST_SHOWN_MAX: Final = 100


def _in_comment(text: str, limit: int = HOST_SHOWN_MAX) -> str:
    """``text`` safe inside a ``#`` comment: control characters (newlines above all) escaped, length capped."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _in_docstring(text: str) -> str:
    """``text`` safe inside a triple-quoted docstring: ASCII escapes, and no quote that could close it."""
    return ascii(text).replace('"', '\\"')


def _name(conn_id: int) -> str:
    return f"CONNECTION_{conn_id}" if conn_id >= 0 else f"CONNECTION_MINUS_{-conn_id}"


def _comment_text(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return f"{len(data)} bytes of binary data"
    r = repr(text)
    return r if len(r) <= COMMENT_MAX else r[:COMMENT_MAX - 4] + "…" + r[-1]


def _literal(data: bytes, indent: str) -> str:
    r = repr(data)
    if len(r) <= LITERAL_WRAP:
        return r
    # Long messages: implicit concatenation of several literals, one per line, so the script stays readable.
    parts, step = [], 48
    for i in range(0, len(data), step):
        parts.append(repr(data[i:i + step]))
    return "(\n" + "\n".join(f"{indent}    {p}" for p in parts) + f"\n{indent})"


class ReplayScriptExporter:
    """``add`` records, then ``close`` writes the script (the client side is kept in memory until then)."""

    def __init__(self, path: str | os.PathLike[str], *, source: str = "a sockscope capture",
                 target: tuple[str, int] | None = None) -> None:
        self.path = os.fspath(path)
        self.source = source
        self.target = target
        self._folder = MessageFolder()
        self._conns: dict[int, _ConnScript] = {}
        self.messages = 0

    def add_many(self, records: Iterable[Record]) -> None:
        for r in records:
            self.add(r)

    def add(self, r: Record) -> None:
        if isinstance(r, ConnectionOpened):
            c = self._conn(r.conn_id)
            c.client, c.target = r.client_addr, r.target_addr
            return
        if isinstance(r, Message):
            if r.direction is not Direction.C2S:
                return
            f = self._folder.message(r)
        elif isinstance(r, MessageUpdated):
            if r.direction is not Direction.C2S:
                return
            f = self._folder.update(r)
        else:
            return
        if f is not None:
            self._final(f)

    def _conn(self, cid: int) -> _ConnScript:
        c = self._conns.get(cid)
        if c is None:
            c = self._conns[cid] = _ConnScript(cid)
        return c

    def _final(self, f: Final_) -> None:
        m = f.message
        sent = m.state is MessageState.FORWARDED
        self._conn(m.conn_id).items.append((m, sent))
        if sent:
            self.messages += 1

    # ----------------------------------------------------------------------------------------- writing

    def close(self) -> int:
        """Write the script; returns how many messages it sends."""
        for f in self._folder.drain():
            self._final(f)
        conns = [c for c in self._conns.values() if c.items]
        default = self.target or next((c.target for c in conns if c.target and c.target[0] != "?"),
                                      ("127.0.0.1", 5555))
        out: list[str] = []
        w = out.append
        w("#!/usr/bin/env python3")
        w(f'"""Replay the client side of {_in_docstring(self.source)} with plain sockets.')
        w("")
        w(f"Made by sockscope on {time.strftime('%Y-%m-%d %H:%M')}. For each recorded connection it connects to the")
        w("server, sends what the client sent (as the server received it), and prints the server's replies.")
        w("")
        w("    python this_script.py              # the recorded server")
        w("    python this_script.py HOST PORT    # another server")
        w("    python this_script.py --fast       # no pauses between messages")
        w('"""')
        w("")
        w("import socket")
        w("import sys")
        w("import time")
        w("")
        w(f"HOST, PORT = {default[0]!r}, {default[1]!r}")
        w("KEEP_TIMING = True  # pause between messages as the client did; --fast sends them back to back")
        w("REPLY_WAIT = 0.5  # seconds to wait for replies after each message")
        w("")
        names = []
        for c in conns:
            name = _name(c.conn_id)
            names.append(name)
            if c.client is not None and c.target is not None:
                w(f"# Connection #{c.conn_id}: client {_in_comment(c.client[0])}:{c.client[1]} -> server "
                  f"{_in_comment(c.target[0])}:{c.target[1]}")
            w(f"{name} = [")
            w("    # (pause in seconds before sending, the bytes to send)")
            prev: int | None = None
            for m, sent in c.items:
                where = f"#{m.id} c2s seq {m.seq}"
                if not sent:
                    w(f"    # {where}: {m.state.value} by sockscope, never reached the server: "
                      f"{_comment_text(m.data)}")
                    continue
                pause = 0.0 if prev is None else max(0.0, (m.arrival_ns - prev) / 1e9)
                prev = m.arrival_ns
                extra = f" ({m.origin.value})" if m.origin.value != "live" else ""
                w(f"    # {where}{extra}: {_comment_text(m.data)}")
                w(f"    ({pause:.3f}, {_literal(m.data, '    ')}),")
            w("]")
            w("")
        w(_FUNCTIONS)
        w("")
        w("if __name__ == '__main__':")
        w("    main([" + ", ".join(names) + "])")
        with open(self.path, "w", encoding="utf-8", newline="\n") as fh:
            fh.write("\n".join(out) + "\n")
        return self.messages


_FUNCTIONS: Final = '''
def print_replies(sock, wait):
    """Print what the server sends within `wait` seconds; returns False once the server has closed."""
    sock.settimeout(wait)
    while True:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return True
        if not data:
            print("<- the server closed the connection")
            return False
        print(f"<- {data.decode('utf-8', 'replace')!r}  ({len(data)} bytes)")
        sock.settimeout(0.05)  # more of the same reply may follow at once


def replay(messages, host, port):
    print(f"connecting to {host}:{port}")
    with socket.create_connection((host, port), timeout=10) as sock:
        open_ = print_replies(sock, REPLY_WAIT)  # a welcome message, if the server sends one
        for pause, data in messages:
            if not open_:
                break
            if KEEP_TIMING and pause > 0:
                time.sleep(pause)
            sock.sendall(data)
            print(f"-> {data.decode('utf-8', 'replace')!r}  ({len(data)} bytes)")
            open_ = print_replies(sock, REPLY_WAIT)
        if open_:
            sock.shutdown(socket.SHUT_WR)  # tell the server we are done, then read its last words
            print_replies(sock, REPLY_WAIT * 4)


def main(connections):
    global KEEP_TIMING
    args = sys.argv[1:]
    if "--fast" in args:
        KEEP_TIMING = False
        args.remove("--fast")
    host, port = (args[0], int(args[1])) if len(args) >= 2 else (HOST, PORT)
    for messages in connections:
        replay(messages, host, port)'''
