"""Raw text, lock-step: the client sends a command, the server answers; both trust one recv() per message."""

from __future__ import annotations

import argparse
import socket
from collections.abc import Callable
from typing import Any

EXPECT = {"c2s": "raw", "s2c": "raw"}
COMMANDS = ["move 3 left", "jump", "look around", "take sword", "move 12 right", "say hello there", "inventory"]


def serve(listener: socket.socket, n: int, wrap: Callable[[socket.socket], Any] = lambda s: s) -> None:
    conn = wrap(listener.accept()[0])
    with conn:
        for tick in range(n):
            command = conn.recv(1024).decode()
            conn.sendall(f"ok, {command}! (tick {tick}, hp {100 - tick})".encode())


def play(port: int, n: int, wrap: Callable[[socket.socket], Any] = lambda s: s) -> None:
    sock = wrap(socket.create_connection(("127.0.0.1", port), timeout=10))
    with sock:
        for tick in range(n):
            command = COMMANDS[tick % len(COMMANDS)]
            sock.sendall(command.encode())
            assert sock.recv(1024).decode() == f"ok, {command}! (tick {tick}, hp {100 - tick})"


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
