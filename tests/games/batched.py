"""Several messages per send: each tick the client sends three ">I"-prefixed JSON events in one sendall, and the
server answers with three in one sendall too."""

from __future__ import annotations

import argparse
import json
import socket
import struct
from collections.abc import Callable
from typing import Any

EXPECT = {"c2s": "len32be", "s2c": "len32be"}


def recv_exact(sock: Any, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def pack(obj: object) -> bytes:
    body = json.dumps(obj).encode()
    return struct.pack(">I", len(body)) + body


def unpack(sock: Any) -> Any:
    (size,) = struct.unpack(">I", recv_exact(sock, 4))
    return json.loads(recv_exact(sock, size))


def serve(listener: socket.socket, n: int, wrap: Callable[[socket.socket], Any] = lambda s: s) -> None:
    conn = wrap(listener.accept()[0])
    with conn:
        for tick in range(n):
            events = [unpack(conn) for _ in range(3)]
            conn.sendall(b"".join(pack({"tick": tick, "echo": e["event"], "n": i}) for i, e in enumerate(events)))


def play(port: int, n: int, wrap: Callable[[socket.socket], Any] = lambda s: s) -> None:
    sock = wrap(socket.create_connection(("127.0.0.1", port), timeout=10))
    with sock:
        for tick in range(n):
            names = ["keydown", "mousemove", "keyup"]
            sock.sendall(b"".join(pack({"event": name, "tick": tick}) for name in names))
            assert [unpack(sock)["echo"] for _ in range(3)] == names


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
