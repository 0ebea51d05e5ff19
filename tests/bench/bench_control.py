"""Control-endpoint benchmark: event delivery to a subscriber, and relay throughput with a slow subscriber.

Run by hand from the repository root (not collected by pytest):

    python tests/bench/bench_control.py [--quick]

The engine runs in this process on its own thread (``ProxyThread``) with a ``ControlServer`` on its loop, the
way the window's child proxy runs it; each subscriber is a separate Python process (as the window is), reading
and decoding frames with msgpack. Prints one JSON object:

- ``delivery_burst``: a client streams 64-byte messages (``--framing fixed:64``) as fast as it can; how many
  message events per second reach one reading subscriber, and how many were dropped/truncated.
- ``delivery_paced``: the same at a paced 50,000 messages/s for a few seconds: the subscriber must get every
  event (dropped 0) and keep its lag small.
- ``throughput``: MB/s of a bulk c2s transfer with no subscriber, a reading one, a slow one (reads 64 KiB every
  50 ms) and a stuck one (never reads), with the ratio to "none" (target: within 10 %).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from proxy.control.endpoint import ControlServer  # noqa: E402
from proxy.framing import FramingSpec  # noqa: E402
from proxy.runner import ProxyThread  # noqa: E402
from proxy.server import ProxyConfig  # noqa: E402

TOKEN = "bench"

SUBSCRIBER = r"""
import json, socket, struct, sys, threading, time
import msgpack
port, mode, target = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port))
body = msgpack.packb({"v": 1, "type": "auth", "token": "bench"})
s.sendall(struct.pack(">I", len(body)) + body)
state = {"messages": 0, "first": None, "last": None, "dropped": 0, "truncated": 0, "bytes": 0, "lag_ns": []}
lock = threading.Lock()
def read():
    buf = bytearray()
    pos = 0
    unpack = struct.Struct(">I").unpack_from
    while True:
        if mode == "stuck":
            time.sleep(3600)
        data = s.recv(65536 if mode == "slow" else 1 << 20)
        if not data:
            return
        if mode == "slow":
            time.sleep(0.05)
        if pos:
            del buf[:pos]
            pos = 0
        buf += data
        view = memoryview(buf)
        while len(buf) - pos >= 4:
            n = unpack(buf, pos)[0]
            if len(buf) - pos - 4 < n:
                break
            ev = msgpack.unpackb(view[pos + 4:pos + 4 + n], raw=False)
            pos += 4 + n
            t = ev["type"]
            with lock:
                if t == "hello":
                    print(json.dumps({"ready": True}), flush=True)
                elif t == "message":
                    now = time.monotonic_ns()
                    state["messages"] += 1
                    state["bytes"] += len(ev["data"])
                    state["first"] = state["first"] or now
                    state["last"] = now
                    if state["messages"] % 1000 == 0:
                        state["lag_ns"].append(now - ev["arrival_ns"])
                    if state["messages"] == target:
                        print(json.dumps({"reached": target}), flush=True)
                elif t == "dropped":
                    state["dropped"] = ev["total_dropped"]
                    state["truncated"] = ev["total_truncated"]
        view.release()
threading.Thread(target=read, daemon=True).start()
sys.stdin.readline()
with lock:
    lag = sorted(state["lag_ns"]) or [0]
    print(json.dumps({"messages": state["messages"], "first": state["first"], "last": state["last"],
                      "dropped": state["dropped"], "truncated": state["truncated"],
                      "lag_p50_ms": lag[len(lag) // 2] / 1e6, "lag_max_ms": lag[-1] / 1e6}), flush=True)
"""


class Sink:
    """A server that reads and discards, counting bytes (the relay's destination)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = 0
        self.done = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn: socket.socket) -> None:
        buf = bytearray(1 << 20)
        while n := conn.recv_into(buf):
            self.received += n
        conn.close()
        self.done.set()

    def close(self) -> None:
        self.sock.close()


class Subscriber:
    def __init__(self, port: int, mode: str, target: int = 0) -> None:
        self.p = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, str(port), mode, str(target)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        if mode != "stuck":
            assert json.loads(self.lines.get(timeout=10)).get("ready")

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.lines.put(line)
        self.lines.put("")

    def wait_reached(self, timeout: float) -> bool:
        """True once the subscriber has seen its target count (False after ``timeout``: events were lost)."""
        try:
            return "reached" in self.lines.get(timeout=timeout)
        except queue.Empty:
            return False

    def report(self) -> dict[str, Any]:
        assert self.p.stdin is not None
        self.p.stdin.write("\n")
        self.p.stdin.flush()
        line = self.lines.get(timeout=10)
        while line and "reached" in line:
            line = self.lines.get(timeout=10)
        self.p.wait(10)
        return json.loads(line) if line else {}


def start(framing: FramingSpec, target_port: int) -> tuple[ProxyThread, ControlServer]:
    proxy = ProxyThread(ProxyConfig(listen_port=0, target_port=target_port, framing=framing)).start()

    async def go() -> ControlServer:
        cs = ControlServer(proxy.server, token=TOKEN)
        await cs.start()
        return cs

    return proxy, asyncio.run_coroutine_threadsafe(go(), proxy.loop).result(10)


def stop(proxy: ProxyThread, cs: ControlServer) -> None:
    asyncio.run_coroutine_threadsafe(cs.close(), proxy.loop).result(10)
    proxy.stop()


def delivery_burst(n: int) -> dict[str, Any]:
    sink = Sink()
    proxy, cs = start(FramingSpec("fixed:64", "raw"), sink.port)
    assert cs.address is not None
    sub = Subscriber(cs.address[1], "read", n)
    payload = os.urandom(64) * 4096
    c = socket.create_connection(("127.0.0.1", proxy.port))
    t0 = time.monotonic()
    sent = 0
    while sent < n * 64:
        c.sendall(payload[: min(len(payload), n * 64 - sent)])
        sent += min(len(payload), n * 64 - sent)
    c.shutdown(socket.SHUT_WR)
    sink.done.wait(60)
    relay_s = time.monotonic() - t0
    sub.wait_reached(10)
    r = sub.report()
    c.close()
    stop(proxy, cs)
    sink.close()
    span = (r["last"] - r["first"]) / 1e9 if r.get("first") else float("nan")
    return {"messages": n, "relay_msgs_per_s": round(n / relay_s), "events_received": r["messages"],
            "delivered_msgs_per_s": round(r["messages"] / span) if span else None,
            "dropped": r["dropped"], "truncated": r["truncated"]}


def delivery_paced(rate: int, seconds: float) -> dict[str, Any]:
    sink = Sink()
    proxy, cs = start(FramingSpec("fixed:64", "raw"), sink.port)
    assert cs.address is not None
    total = int(rate * seconds)
    sub = Subscriber(cs.address[1], "read", total)
    c = socket.create_connection(("127.0.0.1", proxy.port))
    batch = rate // 100  # every 10 ms
    chunk = os.urandom(64) * batch
    t0 = time.monotonic()
    for i in range(total // batch):
        c.sendall(chunk)
        delay = t0 + (i + 1) / 100 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    send_s = time.monotonic() - t0
    reached = sub.wait_reached(10)
    r = sub.report()
    c.close()
    stop(proxy, cs)
    sink.close()
    return {"target_msgs_per_s": rate, "sent_msgs_per_s": round(total / send_s), "events_received": r["messages"],
            "all_delivered": reached and r["messages"] == total, "dropped": r["dropped"],
            "truncated": r["truncated"], "lag_p50_ms": round(r["lag_p50_ms"], 2),
            "lag_max_ms": round(r["lag_max_ms"], 2)}


def throughput_once(mode: str, size: int) -> float:
    sink = Sink()
    proxy, cs = start(FramingSpec(), sink.port)
    assert cs.address is not None
    sub = Subscriber(cs.address[1], mode) if mode != "none" else None
    if mode == "stuck":
        time.sleep(0.2)  # let it authenticate: it never says so
    chunk = os.urandom(1 << 20)
    c = socket.create_connection(("127.0.0.1", proxy.port))
    t0 = time.monotonic()
    for _ in range(size >> 20):
        c.sendall(chunk)
    c.shutdown(socket.SHUT_WR)
    sink.done.wait(120)
    mbps = size / (time.monotonic() - t0) / 1e6
    c.close()
    if sub is not None:
        sub.report() if mode != "stuck" else sub.p.kill()
        sub.p.wait(10)
    stop(proxy, cs)
    sink.close()
    return mbps


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    size = (128 if args.quick else 512) << 20
    out: dict[str, Any] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    out["delivery_burst"] = delivery_burst(200_000 if args.quick else 1_000_000)
    out["delivery_paced"] = delivery_paced(50_000, 2.0 if args.quick else 5.0)
    modes = ["none", "read", "slow", "stuck"]
    runs: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(args.rounds):  # interleaved: the machine is shared and noisy
        for m in modes:
            runs[m].append(throughput_once(m, size))
    base = statistics.median(runs["none"])
    out["throughput"] = {m: {"MBps": round(statistics.median(v), 1),
                             "ratio_to_none": round(statistics.median(v) / base, 3)} for m, v in runs.items()}
    out["throughput"]["bytes"] = size
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
