"""Network-conditions benchmark: delay accuracy, jitter mean, bandwidth accuracy of ``python -m proxy``.

Run by hand from the repository root (not collected by pytest); prints one JSON object:

    python tests/bench/bench_conditions.py [--quick]

- delay: ../shared/bench/proxybench.py's delay workload through ``--latency D`` for D = 50 and 200 ms (|actual -
  configured| one-way error, out-of-order, corrupted), measured against a direct pass in the same run;
- jitter: the same workload through ``--latency 0 --jitter 20`` with 1,000 messages: the added delay's sample
  mean (configured mean 20 ms) and out-of-order count;
- bandwidth: 10 s of bulk client-to-server traffic through ``--bandwidth c2s=64KB/s``; the rate the server sees.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT.parent / "shared" / "bench" / "proxybench.py"
PROXY = "{python} -m proxy --listen 127.0.0.1:{listen} --target 127.0.0.1:{target} --quiet"


def delay_run(flags: str, delay_ms: float, msgs: int) -> dict[str, object]:
    out = Path(tempfile.mkstemp(suffix=".jsonl")[1])
    cmd = [sys.executable, str(BENCH), "--label", f"sockscope {flags}", "--workloads", "delay", "--delay-ms",
           str(delay_ms), "--delay-msgs", str(msgs), "--out", str(out), "--proxy-cwd", str(ROOT),
           "--proxy-cmd", PROXY + " " + flags]
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600, check=False)
    rows = [json.loads(x) for x in out.read_text().splitlines() if x.strip()]
    m = rows[-1].get("metrics", {}) if rows else {}
    keep = ("mean_err_ms", "p50_err_ms", "p99_err_ms", "p99_abs_err_ms", "max_err_ms", "late_gt_1ms",
            "out_of_order", "corrupted", "missing")
    return {k: m.get(k) for k in keep}


def jitter_samples(path: Path) -> dict[str, object]:
    """The proxy's own records of the jitter run: the jitter samples drawn, and the whole added delay (which also
    holds the wait behind an earlier, later-released message: the price of never reordering)."""
    from proxy.model import DelayReason, Direction, Message, MessageUpdated
    from proxy.session import open_session

    arrival: dict[int, int] = {}
    jit: list[int] = []
    added: list[int] = []
    for r in open_session(path):
        if isinstance(r, Message) and r.direction is Direction.C2S and r.size == 64:
            arrival[r.id] = r.arrival_ns
            jit.append(sum(ns for why, ns in r.delays if why is DelayReason.JITTER))
        elif isinstance(r, MessageUpdated) and r.msg_id in arrival and r.release_ns is not None:
            added.append(r.release_ns - arrival[r.msg_id])
    if not jit:
        return {"records": "none"}
    return {"jitter_samples": len(jit), "jitter_sample_mean_ms": round(sum(jit) / len(jit) / 1e6, 3),
            "added_delay_mean_ms": round(sum(added) / max(1, len(added)) / 1e6, 3)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bandwidth_run(rate: str, seconds: float) -> dict[str, object]:
    sink = socket.create_server(("127.0.0.1", 0))
    received: list[tuple[float, int]] = []

    def drain(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                received.append((time.monotonic(), len(data)))

    def serve() -> None:  # the proxy probes the target once at start: accept every connection
        while True:
            try:
                conn, _ = sink.accept()
            except OSError:
                return
            threading.Thread(target=drain, args=(conn,), daemon=True).start()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    listen = free_port()
    proxy = subprocess.Popen([sys.executable, "-m", "proxy", "--listen", f"127.0.0.1:{listen}", "--target",
                              f"127.0.0.1:{sink.getsockname()[1]}", "--bandwidth", f"c2s={rate}", "--quiet"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proxy.stdout is not None
        proxy.stdout.readline()  # "listening on ..."
        c = socket.create_connection(("127.0.0.1", listen))
        stop = time.monotonic() + seconds + 2
        chunk = b"x" * 1024
        c.setblocking(False)
        while time.monotonic() < stop:
            try:
                c.send(chunk)
            except BlockingIOError:
                time.sleep(0.01)
        c.close()
    finally:
        proxy.terminate()
        proxy.wait(10)
        sink.close()
    # measure over a 10 s window after the first second (the proxy's queue is full by then)
    if not received:
        return {"error": "nothing arrived"}
    t0 = received[0][0] + 1.0
    window = [(ts, n) for ts, n in received if t0 <= ts < t0 + seconds]
    got = sum(n for _, n in window)
    return {"configured_Bps": rate, "measured_Bps": round(got / seconds, 1), "window_s": seconds}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if not BENCH.exists():
        print(json.dumps({"error": f"{BENCH} not found"}))
        return 2
    msgs = 200 if args.quick else 1000
    rec = Path(tempfile.mkstemp(suffix=".sockscope")[1])
    jitter = delay_run(f"--jitter 20 --record {rec}", 0, msgs)
    jitter.update(jitter_samples(rec))
    result = {
        "delay_50ms": delay_run("--latency {delay_ms}", 50, 200),
        "delay_200ms": delay_run("--latency {delay_ms}", 200, 200),
        "jitter_20ms_uniform": jitter,
        "bandwidth_64KBps": bandwidth_run("64KB/s", 5.0 if args.quick else 10.0),
    }
    bw = result["bandwidth_64KBps"]
    if isinstance(bw, dict) and "measured_Bps" in bw:
        bw["ratio"] = round(float(bw["measured_Bps"]) / 64000, 4)  # type: ignore[arg-type]
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
