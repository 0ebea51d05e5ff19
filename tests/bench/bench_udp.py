"""By hand: ``python tests/bench/bench_udp.py [--rounds 5] [--n 5000] [--flows 200]`` prints JSON: the UDP relay
against direct loopback and socat, in interleaved rounds, with medians and ratios measured in the same run.

Workloads (a UDP echo server in its own process; the clients in this process, plain blocking sockets):

- ``rtt``: one client, 64-byte datagrams, ping-pong ``--n`` times: p50 / p99 round trip in µs;
- ``flows``: ``--flows`` client sockets (one flow each through a proxy) each doing 20 ping-pongs, interleaved
  (all send, then all receive, 20 times): datagrams per second (both ways counted), and how many were lost.

Variants: ``direct`` (to the echo server), ``socat`` (``UDP-RECVFROM ... fork``: a child per datagram, so its
flows figure is a floor, not a yardstick; for rtt it is the usual reference), ``sockscope`` (``python -m proxy
--udp-only``, capture on, no conditions). Run it with nothing else running.
Must not import: Qt. Thread: the main thread; the echo server and the proxies are processes.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ECHO = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    data, addr = s.recvfrom(65536)
    s.sendto(data, addr)
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u.bind(("127.0.0.1", port))  # free for both: the proxy binds TCP and UDP on one number unless --udp-only
        return int(port)


def rtt(port: int, n: int) -> dict[str, float]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
        c.settimeout(2.0)
        payload = b"x" * 64
        times: list[float] = []
        lost = 0
        for i in range(n + 200):
            t0 = time.perf_counter_ns()
            c.sendto(payload, ("127.0.0.1", port))
            try:
                c.recvfrom(2048)
            except TimeoutError:
                lost += 1
                continue
            if i >= 200:  # warm-up: the flow's first datagram opens its upstream socket
                times.append((time.perf_counter_ns() - t0) / 1000)
        times.sort()
        return {"p50_us": round(times[len(times) // 2], 1), "p99_us": round(times[int(len(times) * 0.99)], 1),
                "lost": lost}


def flows(port: int, count: int, rounds: int = 20) -> dict[str, float]:
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.settimeout(2.0)
        socks.append(s)
    try:
        for s in socks:  # open every flow first (not timed)
            s.sendto(b"hello", ("127.0.0.1", port))
        for s in socks:
            s.recvfrom(2048)
        payload = b"p" * 64
        got = lost = 0
        t0 = time.perf_counter()
        for _ in range(rounds):
            for s in socks:
                s.sendto(payload, ("127.0.0.1", port))
            for s in socks:
                try:
                    s.recvfrom(2048)
                    got += 1
                except TimeoutError:
                    lost += 1
        dt = time.perf_counter() - t0
        return {"datagrams_per_s": round(2 * got / dt), "lost": lost}
    finally:
        for s in socks:
            s.close()


def start(argv: list[str], ready: str | None, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT)
    assert p.stdout is not None
    if ready is not None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line or ready in line:
                break
    return p


def stop(p: subprocess.Popen[str]) -> None:
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--flows", type=int, default=200)
    args = ap.parse_args()
    echo = start([sys.executable, "-c", ECHO], None)
    assert echo.stdout is not None
    target = int(echo.stdout.readline())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    results: dict[str, list[dict[str, Any]]] = {"direct": [], "socat": [], "sockscope": []}
    try:
        for _ in range(args.rounds):
            for label in results:
                proc = None
                port = target
                if label == "socat":
                    port = free_port()
                    proc = start(["socat", f"UDP-RECVFROM:{port},bind=127.0.0.1,reuseaddr,fork",
                                  f"UDP:127.0.0.1:{target}"], None)
                    time.sleep(0.3)  # socat says nothing when it listens (a bench, not a test)
                elif label == "sockscope":
                    port = free_port()
                    proc = start([sys.executable, "-m", "proxy", "--udp-only", "--listen", f"127.0.0.1:{port}",
                                  "--target", f"127.0.0.1:{target}", "--quiet"], "UDP on", env)
                try:
                    results[label].append({"rtt": rtt(port, args.n), "flows": flows(port, args.flows)})
                finally:
                    if proc is not None:
                        stop(proc)
    finally:
        stop(echo)
    out: dict[str, Any] = {"rounds": args.rounds, "n": args.n, "flows": args.flows}
    for label, rs in results.items():
        out[label] = {
            "rtt_p50_us": statistics.median(r["rtt"]["p50_us"] for r in rs),
            "rtt_p99_us": statistics.median(r["rtt"]["p99_us"] for r in rs),
            "flows_datagrams_per_s": statistics.median(r["flows"]["datagrams_per_s"] for r in rs),
            "lost": sum(r["rtt"]["lost"] + r["flows"]["lost"] for r in rs),
        }
    d, so, ss = out["direct"], out["socat"], out["sockscope"]
    out["ratios"] = {
        "rtt_p50_x_direct": round(ss["rtt_p50_us"] / d["rtt_p50_us"], 2),
        "rtt_p50_x_socat": round(ss["rtt_p50_us"] / so["rtt_p50_us"], 2),
        "rtt_overhead_us_sockscope": round(ss["rtt_p50_us"] - d["rtt_p50_us"], 1),
        "rtt_overhead_us_socat": round(so["rtt_p50_us"] - d["rtt_p50_us"], 1),
        "flows_x_direct": round(ss["flows_datagrams_per_s"] / d["flows_datagrams_per_s"], 2),
        "flows_x_socat": round(ss["flows_datagrams_per_s"] / max(1, so["flows_datagrams_per_s"]), 2),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
