"""A browser game's traffic without the browser: a WebSocket server and a client that talks like a game page.

Run the server, then the client through sockscope (docs/tutorial/browser.md):

    python docs/tutorial/browser_game.py --role server               # listens on 5555
    sockscope --listen 127.0.0.1:5556 --target 127.0.0.1:5555
    python docs/tutorial/browser_game.py --role client --port 5556   # connects through sockscope

The client is what a page's JavaScript does with ``new WebSocket("ws://127.0.0.1:5556/play")``: it joins, sends
its inputs as small JSON messages, reads the server's snapshots (JSON text, and the players' state as msgpack
binary), pings, sends one chat line in two fragments, and leaves. The server answers every input, so you see both
directions. Both sides use the ``websockets`` library with its defaults, permessage-deflate compression included,
as Chrome and Firefox negotiate it with most servers.
"""

from __future__ import annotations

import argparse
import json
import time

import msgpack
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.sync.server import ServerConnection, serve

PORT = 5555
TICKS = 4
TICK_S = 0.05
"""Seconds between two inputs (a frame of the game); `--tick 1` gives you time to hold one in the window."""


def handle(ws: ServerConnection) -> None:
    """One player: a welcome, then a snapshot for each input, the players' state in binary every other tick."""
    players = {"alice": [100.0, 80.0]}
    try:
        for raw in ws:
            if isinstance(raw, bytes):
                continue
            msg = json.loads(raw)
            if msg["type"] == "join":
                ws.send(json.dumps({"type": "welcome", "id": 1, "map": "arena", "tick_ms": 50}))
            elif msg["type"] == "input":
                pos = players["alice"]
                pos[0] += {"right": 4.5, "left": -4.5}.get(msg["keys"], 0.0)
                ws.send(json.dumps({"type": "snapshot", "tick": msg["seq"], "you": {"x": pos[0], "y": pos[1]}}))
                if msg["seq"] % 2:
                    ws.send(msgpack.packb({"t": "players", "tick": msg["seq"],
                                           "p": [{"id": 1, "x": pos[0], "y": pos[1], "hp": 100}]}))
            elif msg["type"] == "chat":
                ws.send(json.dumps({"type": "chat", "from": "alice", "text": msg["text"]}))
            elif msg["type"] == "leave":
                ws.close(4000, "see you")
                return
    except ConnectionClosed:
        pass


def serve_forever(port: int) -> None:
    with serve(handle, "127.0.0.1", port, ping_interval=None) as server:
        print(f"game server on 127.0.0.1:{port}", flush=True)
        server.serve_forever()


def play(port: int, tick: float = TICK_S) -> None:
    with connect(f"ws://127.0.0.1:{port}/play", proxy=None, ping_interval=None) as ws:
        ws.send(json.dumps({"type": "join", "name": "alice"}))
        print("server:", ws.recv(timeout=10), flush=True)
        for seq in range(TICKS):
            ws.send(json.dumps({"type": "input", "seq": seq, "keys": "right"}))
            print("server:", ws.recv(timeout=10), flush=True)
            if seq % 2:
                print("server:", msgpack.unpackb(ws.recv(timeout=10)), flush=True)
            time.sleep(tick)  # a frame of the game
        started = time.perf_counter()
        ws.ping(b"rtt").wait(10)
        print(f"ping answered in {1000 * (time.perf_counter() - started):.1f} ms", flush=True)
        ws.send(['{"type": "chat", ', '"text": "gg, well played"}'])  # one message in two fragments
        print("server:", ws.recv(timeout=10), flush=True)
        ws.send(json.dumps({"type": "leave"}))
        try:
            ws.recv(timeout=10)
        except ConnectionClosed as e:
            print(f"closed by the server: {e.rcvd.code if e.rcvd else None} {e.rcvd.reason if e.rcvd else ''}",
                  flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--role", choices=["server", "client"], required=True)
    ap.add_argument("--port", type=int, default=PORT, help="server: where to listen; client: where to connect")
    ap.add_argument("--tick", type=float, default=TICK_S, help="client: seconds between two inputs")
    args = ap.parse_args()
    if args.role == "server":
        serve_forever(args.port)
    else:
        play(args.port, args.tick)


if __name__ == "__main__":
    main()
