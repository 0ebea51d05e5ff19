"""Play a corpus game through a sockscope proxy with ``--framing auto`` and report what inference found.

``run_game(name, n, via=...)`` starts the game's server on a free port, a proxy in front of it (``via="cli"``: the
real ``python -m proxy --framing auto --record FILE`` in a child process, its records read back from the session
file; ``via="thread"``: the engine on a thread of this process, its records taken as they are published), plays
``n`` exchanges with the game's client through the proxy (``framing``: the ``--framing`` given), and returns a
:class:`Result`: whether every byte each side sent arrived unchanged, whether the published messages are exactly
those bytes, and per direction the framing inferred, the messages and reads it needed, and the milliseconds from
the direction's first byte to the decision. Sockets are recorded by :class:`Tap`, a thin wrapper the games accept
through their ``wrap`` hook.
"""

from __future__ import annotations

import importlib
import io
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from proxy.framing import frames_exactly, parse_framing
from proxy.model import Direction, FramingInferred, Message, Notice, Record
from proxy.runner import ProxyThread
from proxy.server import ProxyConfig
from proxy.session import open_session

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0


class _RawTap(io.RawIOBase):
    def __init__(self, tap: Tap) -> None:
        self.tap = tap

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        return self.tap.recv_into(b)


class Tap:
    """A socket that remembers every byte sent and received through it (``makefile`` reads through it too)."""

    def __init__(self, sock: socket.socket, taps: list[Tap]) -> None:
        self.sock = sock
        self.sent = bytearray()
        self.received = bytearray()
        taps.append(self)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.sent += data

    def send(self, data: bytes) -> int:
        n = self.sock.send(data)
        self.sent += data[:n]
        return n

    def recv(self, n: int) -> bytes:
        data = self.sock.recv(n)
        self.received += data
        return data

    def recv_into(self, buf: Any, nbytes: int = 0) -> int:
        n = self.sock.recv_into(buf, nbytes)
        self.received += bytes(memoryview(buf)[:n])
        return n

    def makefile(self, mode: str = "rb") -> io.BufferedReader:
        assert mode == "rb"
        return io.BufferedReader(_RawTap(self))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)

    def __enter__(self) -> Tap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


@dataclass
class Result:
    game: str
    unchanged: bool = False
    """The game's own checks passed and every byte each side sent arrived exactly, in order."""
    records_exact: bool = False
    """The published messages of each connection and direction, joined, are exactly the bytes sent."""
    error: str | None = None
    expected: dict[str, str] = field(default_factory=dict)
    framing: dict[str, str] = field(default_factory=dict)
    """The first framing inferred per direction ("" if none was)."""
    reason: dict[str, str] = field(default_factory=dict)
    messages: dict[str, int] = field(default_factory=dict)
    """Messages (of the inferred framing) that passed before the decision, over all connections."""
    reads: dict[str, int] = field(default_factory=dict)
    ms: dict[str, float] = field(default_factory=dict)
    """From the direction's first byte at the proxy to the decision."""
    warnings: list[str] = field(default_factory=list)
    samples: dict[str, bytes] = field(default_factory=dict)
    """The first message framed with the inferred framing, per direction (for a decoder to look at)."""
    changes: list[tuple[str, str, str]] = field(default_factory=list)
    """Every FramingInferred, in order: (direction, framing, cause)."""
    connections: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "samples"}


def load(name: str) -> ModuleType:
    return importlib.import_module(f"tests.games.{name}")


def _serve_thread(game: ModuleType, listener: socket.socket, n: int, taps: list[Tap],
                  errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            game.serve(listener, n, lambda s: Tap(s, taps))
        except BaseException as e:
            errors.append(e)
        finally:
            listener.close()

    t = threading.Thread(target=run, name=f"game-server-{game.__name__}", daemon=True)
    t.start()
    return t


class _CliProxy:
    """``python -m proxy --framing auto`` in a child process, recording to a session file."""

    def __init__(self, target_port: int, record: Path, framing: str = "auto") -> None:
        self.record = record
        flags = subprocess.CREATE_NEW_PROCESS_GROUP if sys.platform == "win32" else 0  # type: ignore[attr-defined]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", "--listen", "127.0.0.1:0", "--target", f"127.0.0.1:{target_port}",
             "--framing", framing, "--record", str(record)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, creationflags=flags)
        lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []

        def drain() -> None:
            assert self.proc.stdout is not None
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace")
                self.output.append(line)
                lines.put(line)

        self._drain = threading.Thread(target=drain, daemon=True)
        self._drain.start()
        while True:
            line = lines.get(timeout=TIMEOUT)
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break

    def stop(self) -> list[Record]:
        if sys.platform == "win32":
            self.proc.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
        else:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(TIMEOUT)
        self._drain.join(TIMEOUT)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        with open_session(self.record) as reader:
            return list(reader)


def run_game(name: str, n: int = 10, via: str = "thread", framing: str = "auto") -> Result:
    game = load(name)
    result = Result(name, expected=dict(game.EXPECT))
    listener = socket.create_server(("127.0.0.1", 0))
    server_taps: list[Tap] = []
    client_taps: list[Tap] = []
    errors: list[BaseException] = []
    server = _serve_thread(game, listener, n, server_taps, errors)
    records: list[Record] = []
    tmp = tempfile.TemporaryDirectory(prefix="sockscope-game-")
    cli: _CliProxy | None = None
    thread: ProxyThread | None = None
    try:
        target = listener.getsockname()[1]
        if via == "cli":
            cli = _CliProxy(target, Path(tmp.name) / "game.sockscope", framing)
            port = cli.port
        else:
            cfg = ProxyConfig(listen_port=0, target_port=target, framing=parse_framing(framing))
            thread = ProxyThread(cfg, (records.append,)).start()
            port = thread.port
        try:
            game.play(port, n, lambda s: Tap(s, client_taps))
        except BaseException as e:
            errors.append(e)
        server.join(TIMEOUT)
    finally:
        if cli is not None:
            records = cli.stop()
        if thread is not None:
            thread.stop()
        tmp.cleanup()
    if server.is_alive():
        errors.append(TimeoutError("the game's server did not finish"))
    if errors:
        result.error = f"{type(errors[0]).__name__}: {errors[0]}"
    same = len(server_taps) == len(client_taps) and all(
        bytes(c.sent) == bytes(s.received) and bytes(s.sent) == bytes(c.received)
        for c, s in zip(client_taps, server_taps, strict=False))
    result.unchanged = not errors and same
    _summarise(result, records, client_taps)
    return result


def _summarise(result: Result, records: list[Record], client_taps: list[Tap]) -> None:
    msgs: dict[tuple[int, Direction], list[Message]] = {}
    conns: list[int] = []
    for r in records:
        if isinstance(r, Message):
            msgs.setdefault((r.conn_id, r.direction), []).append(r)
            if r.conn_id not in conns:
                conns.append(r.conn_id)
        elif isinstance(r, Notice) and r.level != "info":
            result.warnings.append(r.text)
    result.connections = len(conns)
    # Framing never changes bytes: each connection's messages are exactly what was sent, in order.
    exact = len(conns) == len(client_taps)
    for conn, tap in zip(conns, client_taps, strict=False):
        for d, sent in ((Direction.C2S, tap.sent), (Direction.S2C, tap.received)):
            got = msgs.get((conn, d), [])
            exact &= b"".join(m.data for m in got) == bytes(sent) and [m.seq for m in got] == list(range(len(got)))
    result.records_exact = exact
    result.changes = [(r.direction.label, r.framing, r.cause) for r in records if isinstance(r, FramingInferred)]
    inferred = [r for r in records if isinstance(r, FramingInferred) and r.cause in ("inferred", "remembered")]
    for d in Direction:
        first = next((r for r in inferred if r.direction is d), None)
        result.framing[d.label] = "" if first is None else first.framing
        if first is None:
            continue
        result.reason[d.label] = first.reason
        needed = first.messages
        reads = first.from_seq - first.since_seq
        for conn in conns:
            if conn == first.conn_id:
                break
            earlier = msgs.get((conn, d), [])
            joined = b"".join(m.data for m in earlier)
            needed += frames_exactly(first.framing, joined) if joined else 0
            reads += len(earlier)
        framed = [m for m in msgs.get((first.conn_id, d), []) if m.seq >= first.from_seq]
        if framed:
            result.samples[d.label] = framed[0].data
        result.messages[d.label] = needed
        result.reads[d.label] = reads
        start = next((msgs[(c, d)][0].arrival_ns for c in conns if msgs.get((c, d))), first.time_ns)
        result.ms[d.label] = round((first.time_ns - start) / 1e6, 3)


def main() -> None:  # pragma: no cover - by hand: python -m tests.games.harness ndjson
    import json

    from tests.games import GAMES

    for name in sys.argv[1:] or GAMES:
        print(json.dumps(run_game(name).as_dict()))


if __name__ == "__main__":
    main()
