"""JSON ended by a custom terminator (b"EOT\\0"), both ways: read until the terminator shows up."""

from __future__ import annotations

import argparse
import json
import socket
from collections.abc import Callable
from typing import Any

EXPECT = {"c2s": "delim:EOT\\x00", "s2c": "delim:EOT\\x00"}
END = b"EOT\x00"


def _read(sock: Any, buf: bytearray) -> bytes:
    while END not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise EOFError
        buf += chunk
    i = buf.index(END)
    msg = bytes(buf[:i])
    del buf[:i + len(END)]
    return msg


def serve(listener: socket.socket, n: int, wrap: Callable[[socket.socket], Any] = lambda s: s) -> None:
    conn = wrap(listener.accept()[0])
    with conn:
        buf = bytearray()
        for _ in range(n):
            req = json.loads(_read(conn, buf))
            conn.sendall(json.dumps({"reply": req["ask"].upper(), "id": req["id"]}).encode() + END)


def play(port: int, n: int, wrap: Callable[[socket.socket], Any] = lambda s: s) -> None:
    sock = wrap(socket.create_connection(("127.0.0.1", port), timeout=10))
    with sock:
        buf = bytearray()
        for i in range(n):
            sock.sendall(json.dumps({"ask": f"where is player {i}?", "id": i}).encode() + END)
            assert json.loads(_read(sock, buf)) == {"reply": f"WHERE IS PLAYER {i}?", "id": i}


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
