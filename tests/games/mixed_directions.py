"""A different framing per direction: text commands ending in a newline go up, length-prefixed JSON comes down."""

from __future__ import annotations

import argparse
import json
import socket
import struct
from collections.abc import Callable
from typing import Any

EXPECT = {"c2s": "lines", "s2c": "len16be"}


def recv_exact(sock: Any, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def serve(listener: socket.socket, n: int, wrap: Callable[[socket.socket], Any] = lambda s: s) -> None:
    conn = wrap(listener.accept()[0])
    with conn:
        f = conn.makefile("rb")
        for tick in range(n):
            verb, *args = f.readline().decode().split()
            body = json.dumps({"tick": tick, "did": verb, "args": args, "board": "." * 20}).encode()
            conn.sendall(struct.pack(">H", len(body)) + body)


def play(port: int, n: int, wrap: Callable[[socket.socket], Any] = lambda s: s) -> None:
    sock = wrap(socket.create_connection(("127.0.0.1", port), timeout=10))
    with sock:
        for tick in range(n):
            sock.sendall(f"PLACE {tick % 3} {tick % 5}\n".encode())
            (size,) = struct.unpack(">H", recv_exact(sock, 2))
            state = json.loads(recv_exact(sock, size))
            assert state["did"] == "PLACE" and state["tick"] == tick


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
