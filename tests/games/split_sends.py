"""One message split over sends: the client writes each JSON line in three pieces (as a program that sends
fields as it computes them does); the server reads lines with makefile().readline()."""

from __future__ import annotations

import argparse
import json
import socket
import time
from collections.abc import Callable
from typing import Any

EXPECT = {"c2s": "lines", "s2c": "lines"}


def serve(listener: socket.socket, n: int, wrap: Callable[[socket.socket], Any] = lambda s: s) -> None:
    conn = wrap(listener.accept()[0])
    with conn:
        f = conn.makefile("rb")
        for _ in range(n):
            msg = json.loads(f.readline())
            conn.sendall(json.dumps({"score": msg["points"] * 2, "who": msg["who"]}).encode() + b"\n")


def play(port: int, n: int, wrap: Callable[[socket.socket], Any] = lambda s: s) -> None:
    sock = wrap(socket.create_connection(("127.0.0.1", port), timeout=10))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with sock:
        f = sock.makefile("rb")
        for i in range(n):
            line = json.dumps({"who": "player two", "points": i, "combo": [1, 2, 3]}).encode() + b"\n"
            third = len(line) // 3
            for piece in (line[:third], line[third:2 * third], line[2 * third:]):
                sock.sendall(piece)
                time.sleep(0.002)  # the game computes the next field (the pieces leave as separate segments)
            assert json.loads(f.readline()) == {"score": i * 2, "who": "player two"}


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
