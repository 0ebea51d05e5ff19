"""JSON behind a 4-byte length packed with struct's native "I" (little-endian on the machines learners use)."""

from __future__ import annotations

import argparse
import json
import socket
import struct
from collections.abc import Callable
from typing import Any

EXPECT = {"c2s": "len32le", "s2c": "len32le"}


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
    sock.sendall(struct.pack("<I", len(body)) + body)


def recv_msg(sock: Any) -> Any:
    (n,) = struct.unpack("<I", recv_exact(sock, 4))
    return json.loads(recv_exact(sock, n))


def serve(listener: socket.socket, n: int, wrap: Callable[[socket.socket], Any] = lambda s: s) -> None:
    conn = wrap(listener.accept()[0])
    with conn:
        world = {"map": [[0, 1, 1, 0] * 8 for _ in range(6)], "tick": 0}
        for tick in range(n):
            move = recv_msg(conn)
            world["tick"] = tick
            world["last"] = move["dir"]
            send_msg(conn, world)


def play(port: int, n: int, wrap: Callable[[socket.socket], Any] = lambda s: s) -> None:
    sock = wrap(socket.create_connection(("127.0.0.1", port), timeout=10))
    with sock:
        for tick in range(n):
            send_msg(sock, {"dir": "nesw"[tick % 4], "tick": tick})
            assert recv_msg(sock)["last"] == "nesw"[tick % 4]


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
