"""The example game's server: it owns the truth.

Clients only send inputs ("I pressed right"); the server applies them to the positions it keeps, TICK_HZ times
a second, and sends each client the result: its own position, the last of its inputs included in it ("ack"),
and everyone else's position. A client can never just claim a position (that is how cheating works).

    python docs/examples/game/server.py [--port 5555] [--format msgpack|json|pickle]

One thread per client reads its inputs (like the tutorial's server); the main thread runs the game clock.
"""

from __future__ import annotations

import argparse
import itertools
import socket
import threading
import time

import protocol

lock = threading.Lock()  # guards the three tables below: client threads and the tick loop both use them
players: dict[int, list[int]] = {}  # player id -> [x, y, seq of the last input applied]
inputs: dict[int, list[dict]] = {}  # player id -> inputs received since the last tick
clients: dict[int, socket.socket] = {}  # player id -> its socket


def handle_client(conn: socket.socket, pid: int, fmt: str) -> None:
    """Read this client's inputs until it disconnects; the tick loop applies them."""
    reader = protocol.FrameReader(fmt)
    try:
        while data := conn.recv(4096):
            for msg in reader.feed(data):
                if msg.get("t") == "input":
                    with lock:
                        inputs[pid].append(msg)
    except (OSError, ValueError):
        pass  # a reset, or garbage: either way this player is gone
    with lock:
        players.pop(pid, None)
        inputs.pop(pid, None)
        clients.pop(pid, None)
    conn.close()
    print(f"[SERVER] player {pid} left", flush=True)


def accept_loop(srv: socket.socket, fmt: str) -> None:
    for pid in itertools.count(1):
        conn, addr = srv.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small messages: send them now, not batched
        protocol.send(conn, {"t": "welcome", "id": pid}, fmt)
        with lock:
            # Spread new players out so they do not start on top of each other.
            players[pid] = [100 + 80 * (pid % 6), 100 + 60 * (pid % 4), 0]
            inputs[pid] = []
            clients[pid] = conn
        print(f"[SERVER] player {pid} joined from {addr[0]}:{addr[1]}", flush=True)
        threading.Thread(target=handle_client, args=(conn, pid, fmt), daemon=True).start()


def tick(number: int, now_ms: int, fmt: str) -> None:
    """One step of the game: apply every input received, then tell each client where everyone is."""
    with lock:
        for pid, pending in inputs.items():
            p = players[pid]
            for msg in pending:
                p[0], p[1] = protocol.move(p[0], p[1], int(msg["dx"]), int(msg["dy"]))
                p[2] = msg["seq"]
            pending.clear()
        everyone = [[pid, x, y, seq] for pid, (x, y, seq) in players.items()]
        # Each client gets its own state: "ack" says which of ITS inputs this position already includes, so the
        # client can throw those away and replay only the newer ones (server reconciliation, in client.py).
        frames = [(conn, protocol.encode({"t": "state", "tick": number, "time": now_ms, "ack": players[pid][2],
                                          "x": players[pid][0], "y": players[pid][1], "players": everyone}, fmt))
                  for pid, conn in clients.items()]
    for conn, frame in frames:
        try:
            conn.sendall(frame)  # a real server would not let one slow client hold up the others; fine here
        except OSError:
            pass  # that client's thread notices and removes it


def main() -> None:
    parser = argparse.ArgumentParser(description="the example game's server")
    parser.add_argument("--host", default=protocol.HOST)
    parser.add_argument("--port", type=int, default=protocol.PORT)
    parser.add_argument("--format", choices=protocol.FORMATS, default="msgpack")
    args = parser.parse_args()

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((args.host, args.port))
    srv.listen()
    host, port = srv.getsockname()[:2]  # the real port, in case --port 0 asked the system to pick one
    print(f"[SERVER] listening on {host}:{port} ({args.format}, {protocol.TICK_HZ} ticks/s)", flush=True)
    threading.Thread(target=accept_loop, args=(srv, args.format), daemon=True).start()

    # A fixed-rate clock: each tick is scheduled from the start time, so small delays do not add up.
    start = time.perf_counter()
    try:
        for number in itertools.count(1):
            tick(number, round((time.perf_counter() - start) * 1000), args.format)
            time.sleep(max(0.0, start + number / protocol.TICK_HZ - time.perf_counter()))
    except KeyboardInterrupt:
        print("[SERVER] bye", flush=True)


if __name__ == "__main__":
    main()
