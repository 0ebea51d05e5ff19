"""JSON behind a 2-byte big-endian length ("!H"), lock-step: the length tells recv how much to wait for."""

from __future__ import annotations

import argparse
import json
import socket
import struct
from collections.abc import Callable
from typing import Any

EXPECT = {"c2s": "len16be", "s2c": "len16be"}


def recv_exact(sock: Any, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def send_msg(sock: Any, obj: object) -> None:
    body = json.dumps(obj).encode()
    sock.sendall(struct.pack("!H", len(body)) + body)


def recv_msg(sock: Any) -> Any:
    (n,) = struct.unpack("!H", recv_exact(sock, 2))
    return json.loads(recv_exact(sock, n))


def serve(listener: socket.socket, n: int, wrap: Callable[[socket.socket], Any] = lambda s: s) -> None:
    conn = wrap(listener.accept()[0])
    with conn:
        for _ in range(n):
            msg = recv_msg(conn)
            send_msg(conn, {"type": "pong", "seq": msg["seq"], "players": [{"id": 1, "x": 1.5}, {"id": 2, "x": -3}]})


def play(port: int, n: int, wrap: Callable[[socket.socket], Any] = lambda s: s) -> None:
    sock = wrap(socket.create_connection(("127.0.0.1", port), timeout=10))
    with sock:
        for seq in range(n):
            send_msg(sock, {"type": "ping", "seq": seq, "name": "player one"})
            assert recv_msg(sock)["seq"] == seq


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
