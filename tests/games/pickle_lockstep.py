"""Pickle lock-step: each side sends pickle.dumps(dict) in one send and trusts one recv() per message.

A learner's server would pickle.loads what it receives; this one compares the bytes with the pickle it expects
instead (pickle.loads on network bytes runs code, and this project never calls it)."""

from __future__ import annotations

import argparse
import pickle
import socket
from collections.abc import Callable
from typing import Any

EXPECT = {"c2s": "raw", "s2c": "raw"}


def request(i: int) -> dict[str, Any]:
    return {"action": "move", "player": "p1", "dx": i % 3 - 1, "dy": 1, "chat": "hi" * (i % 5)}


def reply(i: int) -> dict[str, Any]:
    return {"ok": True, "tick": i, "positions": {"p1": (i, i * 2), "p2": (-i, 7)}, "events": ["step"] * (i % 4)}


def serve(listener: socket.socket, n: int, wrap: Callable[[socket.socket], Any] = lambda s: s) -> None:
    conn = wrap(listener.accept()[0])
    with conn:
        for i in range(n):
            assert conn.recv(4096) == pickle.dumps(request(i))
            conn.sendall(pickle.dumps(reply(i)))


def play(port: int, n: int, wrap: Callable[[socket.socket], Any] = lambda s: s) -> None:
    sock = wrap(socket.create_connection(("127.0.0.1", port), timeout=10))
    with sock:
        for i in range(n):
            sock.sendall(pickle.dumps(request(i)))
            assert sock.recv(4096) == pickle.dumps(reply(i))


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
