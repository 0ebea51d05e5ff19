"""Export messages as JSON lines: one JSON object per line, with the decoded view of each message.

Role: a format any tool reads (``jq``, pandas, a learner's own script). Lines, in the order messages got their
final state (forwarded, dropped, discarded; still-held ones at the end):

- ``{"type": "connection", "conn": 1, "client": "127.0.0.1:50000", "target": "127.0.0.1:5555", "time": ...}``
  before a connection's first message;
- ``{"type": "message", "id", "conn", "dir", "seq", "state", "origin", "size", "arrival_ns", "release_ns",
  "arrival", "delay_ms", "delays", "held", "hex", "text", "decoded": {"decoder", "summary", "values",
  "error"}}`` where ``text`` is the UTF-8 text when the bytes are valid UTF-8 (else null), ``arrival`` is
  ISO 8601 wall-clock time, and ``values`` are the decoder's values when they are JSON-able (else
  ``values_repr`` holds their ``repr``). ``hex`` always has the exact bytes.

Decoding is bounded: each message is decoded with a deadline (:data:`DECODE_BUDGET_NS`); a message the decoder
gave up on keeps its line (``decoded.error`` starts with ``gave up:``, ``hex`` has the bytes), is reported in
one line naming it (to ``warn``, stderr by default), and the export goes on. Values are written as JSON only
when they are a tree of at most a few nodes per byte of the message (a pickle's memo can describe a DAG whose
tree is exponential); otherwise ``values_repr`` renders them within 10,000 characters each.

Must not import: PySide6, ``inspector.ui``.
Thread: any; one exporter belongs to the thread that feeds it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import IO, Any, Final

from proxy.model import Clock, ConnectionOpened, Message, MessageUpdated, Record

from .fold import Final_, MessageFolder

__all__ = ["JsonlExporter"]

_MAX_DEPTH: Final = 64
DECODE_BUDGET_NS: Final = 1_000_000_000
"""Most time one message's decode may take in an export (the decoders' own budgets keep it far below)."""
_REPR_CHARS: Final = 10_000
_JSON_TYPED: Final = frozenset({"json", "text"})
"""Decoders whose values are JSON types by construction (str keys, no bytes), so ``jsonable`` is skipped."""


def _utf8_or_none(data: bytes) -> str | None:
    """``data`` as text if it is valid UTF-8, else None, without raising for binary data (a pickle, a struct):
    an exception per message costs as much as the rest of its line."""
    text = data.decode("utf-8", "replace")
    if "\ufffd" not in text:
        return text
    if b"\xef\xbf\xbd" not in data:  # every U+FFFD came from a bad byte: not UTF-8
        return None
    try:  # a real U+FFFD in the text: decide strictly
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _decoded(view: Any, size: int) -> dict[str, Any]:
    out: dict[str, Any] = {"decoder": view.decoder, "summary": view.summary}
    if view.error:
        out["error"] = view.error
    if view.values:
        if view.decoder in _JSON_TYPED or _plain_json(view.values, 0, _Budget(size)):
            # As they are: the encoder writes tuples as arrays and refuses NaN/Infinity (the caller then
            # falls back to values_repr).
            out["values"] = list(view.values)
        else:
            out["values_repr"] = _reprs(view.values)
    return out


_SCALARS: Final = frozenset({str, int, float, bool, type(None)})


class _Budget:
    """What writing values as JSON may cost for a message of ``size`` bytes: nodes, and characters of strings
    (shared parts counted each time they appear, as the JSON encoder writes them)."""

    __slots__ = ("chars", "nodes")

    def __init__(self, size: int) -> None:
        self.nodes = 4 * size + 1024
        self.chars = 8 * size + (64 << 10)


def _plain_json(v: object, depth: int, budget: _Budget) -> bool:
    """Whether ``v`` holds only JSON types with string keys (exact types: the fast check of ``jsonable``) and is
    small enough as a tree to write: within ``budget``, which it spends."""
    t = type(v)
    if t in _SCALARS:
        if t is str:
            budget.chars -= len(v)  # type: ignore[arg-type]
            return budget.chars >= 0
        return True
    budget.nodes -= 1
    if depth > _MAX_DEPTH or budget.nodes < 0:
        return False
    scalars = _SCALARS
    if t is dict:
        for k, x in v.items():  # type: ignore[attr-defined]
            if type(k) is not str or not ((type(x) in scalars and type(x) is not str) or
                                          _plain_json(x, depth + 1, budget)):
                return False
            budget.chars -= len(k)
        return budget.chars >= 0
    if t is list or t is tuple:
        budget.nodes -= len(v)  # type: ignore[arg-type]
        if budget.nodes < 0:
            return False
        for x in v:  # type: ignore[attr-defined]
            if not ((type(x) in scalars and type(x) is not str) or _plain_json(x, depth + 1, budget)):
                return False
        return budget.chars >= 0
    return False


def _reprs(values: Iterable[object]) -> list[str]:
    """Each value as Python-literal text of at most about 10,000 characters, whatever its size or sharing."""
    from inspector.decode import render

    return [render(v, _REPR_CHARS)[0] for v in values]


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


class JsonlExporter:
    """``add`` records (a session's, or store rows as records), then ``close``."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Clock | None = None, decode: bool = True,
                 decoder: Callable[[Message], Any] | None = None, decode_budget_ns: int = DECODE_BUDGET_NS,
                 warn: Callable[[str], None] | None = None) -> None:
        """``decoder`` (a message -> view function, e.g. the window's with its "decode as" choices) replaces the
        default registry's decode with ``decode_budget_ns``; ``warn`` gets one line per message given up on
        (default: written to stderr)."""
        self.path = os.fspath(path)
        self.clock = clock or Clock(0, 0)
        self.messages = 0
        self.gave_up = 0
        """Messages whose decode gave up (each reported to ``warn``)."""
        self._budget_ns = decode_budget_ns
        self._warn = warn or _to_stderr
        self._folder = MessageFolder()
        self._decode = decode
        self._decoder = decoder
        self._conns: dict[int, ConnectionOpened] = {}
        self._announced: set[int] = set()
        # A lone surrogate (JSON's "\ud800", text decoded with surrogateescape) cannot be UTF-8: backslashreplace
        # writes it as the JSON escape "\ud800", which reads back as the same string.
        self._f: IO[str] | None = open(self.path, "w", encoding="utf-8", errors="backslashreplace", newline="\n")
        self._dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
        self._iso_sec: int | None = None
        self._iso_head = ""

    def add_many(self, records: Iterable[Record]) -> None:
        for r in records:
            self.add(r)

    def add(self, r: Record) -> None:
        if isinstance(r, Message):
            f = self._folder.message(r)
        elif isinstance(r, MessageUpdated):
            f = self._folder.update(r)
        else:
            if isinstance(r, ConnectionOpened):
                self._conns[r.conn_id] = r
            return
        if f is not None:
            self._line(f)

    def _iso(self, mono_ns: int) -> str:
        wall = self.clock.to_wall_ns(mono_ns)
        sec, ns = divmod(wall, 1_000_000_000)
        if sec != self._iso_sec:  # messages come in bursts: format each second once
            self._iso_sec = sec
            self._iso_head = _dt.datetime.fromtimestamp(sec, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._iso_head}.{ns // 1000:06d}Z"

    def _line(self, f: Final_) -> None:
        assert self._f is not None
        m = f.message
        write = self._f.write
        if m.conn_id not in self._announced:
            self._announced.add(m.conn_id)
            c = self._conns.get(m.conn_id)
            conn: dict[str, Any] = {"type": "connection", "conn": m.conn_id}
            if c is not None:
                conn.update(client=f"{c.client_addr[0]}:{c.client_addr[1]}",
                            target=f"{c.target_addr[0]}:{c.target_addr[1]}", time_ns=c.time_ns,
                            time=self._iso(c.time_ns), replay_of=c.replay_of)
            write(self._dumps(conn) + "\n")
        text = _utf8_or_none(m.data)
        d: dict[str, Any] = {
            "type": "message", "id": m.id, "conn": m.conn_id, "dir": m.direction.label, "seq": m.seq,
            "state": m.state.value, "origin": m.origin.value, "size": len(m.data),
            "arrival_ns": m.arrival_ns, "release_ns": m.release_ns, "arrival": self._iso(m.arrival_ns),
            "delay_ms": None if m.release_ns is None else (m.release_ns - m.arrival_ns) / 1e6,
            "delays": {r.value: ns for r, ns in m.delays}, "held": f.held,
            "hex": m.data.hex(), "text": text,
        }
        if f.original is not None:
            d["original_hex"] = f.original.hex()
        if self._decode:
            view = self._view(m)
            if view.error is not None and view.error.startswith("gave up: "):
                self.gave_up += 1
                self._warn(f"jsonl: gave up decoding message #{m.id} (conn #{m.conn_id} {m.direction.label}, "
                           f"{len(m.data)} bytes): {view.error[len('gave up: '):]}; written with its bytes as hex")
            d["decoded"] = decoded = _decoded(view, len(m.data))
            try:
                line = self._dumps(d)
            except (ValueError, RecursionError):  # NaN/Infinity (JSON has neither) or nesting in trusted values
                decoded.pop("values", None)
                decoded["values_repr"] = _reprs(view.values)
                line = self._dumps(d)
        else:
            line = self._dumps(d)
        write(line + "\n")
        self.messages += 1

    def _view(self, m: Message) -> Any:
        if self._decoder is None:
            from inspector.decode import default_registry

            reg = default_registry()
            budget = self._budget_ns
            self._decoder = lambda msg: reg.decode_message(msg, detail=False,
                                                           deadline_ns=time.monotonic_ns() + budget)
        return self._decoder(m)

    def close(self) -> int:
        """Write the messages still held at the end (state ``held``) and close; returns the lines of messages."""
        if self._f is None:
            return self.messages
        try:
            for f in self._folder.drain():
                self._line(f)
        finally:
            fh, self._f = self._f, None
            fh.close()
        return self.messages

    def __enter__(self) -> JsonlExporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
