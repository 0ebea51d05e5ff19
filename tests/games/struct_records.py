"""Fixed-size struct records both ways: a 12-byte input record up, a 40-byte state record down (different sizes)."""

from __future__ import annotations

import argparse
import socket
import struct
from collections.abc import Callable
from typing import Any

EXPECT = {"c2s": "fixed:12", "s2c": "fixed:40"}
INPUT = struct.Struct("<BBHff")  # kind, buttons, seq, stick x, stick y
STATE = struct.Struct("<HHffff16sI")  # seq, hp, x, y, angle, speed, name, score


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
        x = y = 0.0
        for _ in range(n):
            _kind, buttons, seq, dx, dy = INPUT.unpack(recv_exact(conn, INPUT.size))
            x, y = x + dx, y + dy
            conn.sendall(STATE.pack(seq, 100 - seq, x, y, 0.5 * seq, 3.0, b"hero", buttons * 10))


def play(port: int, n: int, wrap: Callable[[socket.socket], Any] = lambda s: s) -> None:
    sock = wrap(socket.create_connection(("127.0.0.1", port), timeout=10))
    with sock:
        for seq in range(n):
            sock.sendall(INPUT.pack(1, seq % 4, seq, 0.25 * seq, -1.5))
            got = STATE.unpack(recv_exact(sock, STATE.size))
            assert got[0] == seq and got[6].rstrip(b"\0") == b"hero"


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
