"""A msgpack stream: objects back to back, read with msgpack.Unpacker.feed (no framing of its own needed)."""

from __future__ import annotations

import argparse
import socket
from collections.abc import Callable
from typing import Any

import msgpack

EXPECT = {"c2s": "msgpack", "s2c": "msgpack"}


def _next(sock: Any, unpacker: msgpack.Unpacker) -> Any:
    for obj in unpacker:
        return obj
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            raise EOFError
        unpacker.feed(chunk)
        for obj in unpacker:
            return obj


def serve(listener: socket.socket, n: int, wrap: Callable[[socket.socket], Any] = lambda s: s) -> None:
    conn = wrap(listener.accept()[0])
    with conn:
        up = msgpack.Unpacker()
        for _ in range(n):
            cmd = _next(conn, up)
            conn.sendall(msgpack.packb({"ack": cmd["seq"], "pos": [cmd["seq"] * 1.5, 2.25], "alive": True}))


def play(port: int, n: int, wrap: Callable[[socket.socket], Any] = lambda s: s) -> None:
    sock = wrap(socket.create_connection(("127.0.0.1", port), timeout=10))
    with sock:
        up = msgpack.Unpacker()
        for seq in range(n):
            sock.sendall(msgpack.packb({"seq": seq, "input": {"up": seq % 2 == 0, "fire": False}, "name": "bob"}))
            assert _next(sock, up)["ack"] == seq


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
