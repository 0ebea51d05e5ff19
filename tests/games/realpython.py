"""The Real Python socket tutorial's message format (libclient.py/libserver.py): a 2-byte big-endian header length,
a JSON header with byteorder, content-type, content-encoding and content-length, then the body."""

from __future__ import annotations

import argparse
import json
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any

EXPECT = {"c2s": "header16json", "s2c": "header16json"}
REQUESTS = {"morpheus": "Follow the white rabbit. \U0001f430", "ring": "In the caves beneath the Misty Mountains.",
            "\U0001f436": "\U0001f43e Playing ball! \U0001f3d0"}


def create_message(content: dict[str, Any]) -> bytes:
    content_bytes = json.dumps(content, ensure_ascii=False).encode("utf-8")
    jsonheader = {"byteorder": sys.byteorder, "content-type": "text/json", "content-encoding": "utf-8",
                  "content-length": len(content_bytes)}
    jsonheader_bytes = json.dumps(jsonheader, ensure_ascii=False).encode("utf-8")
    return struct.pack(">H", len(jsonheader_bytes)) + jsonheader_bytes + content_bytes


def read_message(sock: Any, buf: bytearray) -> dict[str, Any]:
    def need(k: int) -> None:
        while len(buf) < k:
            chunk = sock.recv(4096)
            if not chunk:
                raise EOFError
            buf.extend(chunk)

    need(2)
    hdrlen = struct.unpack(">H", buf[:2])[0]
    need(2 + hdrlen)
    header = json.loads(buf[2:2 + hdrlen])
    total = 2 + hdrlen + header["content-length"]
    need(total)
    content: dict[str, Any] = json.loads(buf[2 + hdrlen:total].decode(header["content-encoding"]))
    del buf[:total]
    return content


def serve(listener: socket.socket, n: int, wrap: Callable[[socket.socket], Any] = lambda s: s) -> None:
    conn = wrap(listener.accept()[0])
    with conn:
        buf = bytearray()
        for _ in range(n):
            req = read_message(conn, buf)
            answer = REQUESTS.get(req["value"], f"No match for '{req['value']}'.")
            conn.sendall(create_message({"result": answer}))


def play(port: int, n: int, wrap: Callable[[socket.socket], Any] = lambda s: s) -> None:
    sock = wrap(socket.create_connection(("127.0.0.1", port), timeout=10))
    keys = [*REQUESTS, "nothing"]
    with sock:
        buf = bytearray()
        for i in range(n):
            value = keys[i % len(keys)]
            sock.sendall(create_message({"action": "search", "value": value}))
            assert read_message(sock, buf) == {"result": REQUESTS.get(value, f"No match for '{value}'.")}


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
