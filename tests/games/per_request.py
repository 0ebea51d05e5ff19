"""A connection per request: the client connects, sends one JSON line, reads the answer until the server closes,
and connects again for the next request (HTTP/1.0 style)."""

from __future__ import annotations

import argparse
import json
import socket
from collections.abc import Callable
from typing import Any

EXPECT = {"c2s": "lines", "s2c": "lines"}
PER_CONNECTION = True


def serve(listener: socket.socket, n: int, wrap: Callable[[socket.socket], Any] = lambda s: s) -> None:
    for _ in range(n):
        conn = wrap(listener.accept()[0])
        with conn:
            req = json.loads(conn.makefile("rb").readline())
            conn.sendall(json.dumps({"high_scores": [["ann", 120], ["bo", 99]], "page": req["page"]}).encode()
                         + b"\n")


def play(port: int, n: int, wrap: Callable[[socket.socket], Any] = lambda s: s) -> None:
    for page in range(n):
        sock = wrap(socket.create_connection(("127.0.0.1", port), timeout=10))
        with sock:
            sock.sendall(json.dumps({"get": "high_scores", "page": page}).encode() + b"\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
            assert json.loads(data)["page"] == page


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
