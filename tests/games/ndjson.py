"""Newline-delimited JSON, lock-step: one JSON object per line each way, read with a file from makefile()."""

from __future__ import annotations

import argparse
import json
import socket
from collections.abc import Callable
from typing import Any

EXPECT = {"c2s": "lines", "s2c": "lines"}


def serve(listener: socket.socket, n: int, wrap: Callable[[socket.socket], Any] = lambda s: s) -> None:
    conn = wrap(listener.accept()[0])
    with conn:
        buf = b""
        for tick in range(n):
            while b"\n" not in buf:
                buf += conn.recv(4096)
            line, buf = buf.split(b"\n", 1)
            msg = json.loads(line)
            state = {"type": "state", "tick": tick, "you": {"x": msg["x"] + 1, "y": msg["y"]}, "others": []}
            conn.sendall(json.dumps(state).encode() + b"\n")


def play(port: int, n: int, wrap: Callable[[socket.socket], Any] = lambda s: s) -> None:
    sock = wrap(socket.create_connection(("127.0.0.1", port), timeout=10))
    with sock:
        buf = b""
        for tick in range(n):
            sock.sendall(json.dumps({"type": "input", "x": tick * 3, "y": -tick, "keys": ["w", "d"]}).encode() + b"\n")
            while b"\n" not in buf:
                buf += sock.recv(4096)
            line, buf = buf.split(b"\n", 1)
            assert json.loads(line)["you"] == {"x": tick * 3 + 1, "y": -tick}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--role", choices=["server", "client"], required=True)
    ap.add_argument("--port", type=int, default=5555)
    ap.add_argument("--n", type=int, default=10)
    a = ap.parse_args()
    if a.role == "server":
        serve(socket.create_server(("127.0.0.1", a.port)), a.n)
    else:
        play(a.port, a.n)


if __name__ == "__main__":
    main()
