"""Relay benchmark: ../shared/bench/proxybench.py against direct loopback, socat and ``python -m proxy``.

Run by hand from the repository root (not collected by pytest):

    python tests/bench/bench_proxy.py [--rounds 3] [--quick] [--workloads rtt,throughput,...] [--delay-ms 50]

Every variant is measured in the same run and rounds are interleaved (the machine is shared and noisy); the
medians and ratios to ``direct`` and ``socat`` are printed as one JSON object on stdout, and the raw
results are kept in a JSONL file (``--out``). Figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT.parent / "shared" / "bench" / "proxybench.py"
SOCKSCOPE = "{python} -m proxy --listen 127.0.0.1:{listen} --target 127.0.0.1:{target} --quiet"
SOCAT = "socat TCP-LISTEN:{listen},bind=127.0.0.1,reuseaddr,fork TCP:127.0.0.1:{target}"

METRICS = {
    "rtt": ["p50_us", "p99_us"],
    "throughput": ["up_MBps", "down_MBps"],
    "concurrent": ["msgs_per_s", "errors", "p99_us"],
    "integrity": ["pass"],
    "delay": ["err_p50_ms", "err_p99_ms", "out_of_order", "corrupted", "missing"],
}


def run(label: str, workloads: str, out: Path, extra: list[str], proxy_cmd: str | None) -> None:
    cmd = [sys.executable, str(BENCH), "--label", label, "--workloads", workloads, "--out", str(out), *extra]
    if proxy_cmd is None:
        cmd.append("--direct")
    else:
        cmd += ["--proxy-cmd", proxy_cmd, "--proxy-cwd", str(ROOT)]
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=False, timeout=3600)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workloads", default="rtt,throughput,concurrent,integrity")
    ap.add_argument("--quick", action="store_true", help="smaller sizes (256 MiB bulk, 5,000 round trips)")
    ap.add_argument("--variant", action="append", default=[], metavar="LABEL=CMD",
                    help="extra proxy command templates to compare (e.g. latency flags)")
    ap.add_argument("--delay-ms", type=float, default=None, help="run the delay workload with --latency")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if not BENCH.exists():
        print(json.dumps({"error": f"{BENCH} not found"}))
        return 2
    out = args.out or Path(tempfile.mkstemp(suffix=".jsonl", prefix="sockscope-bench-")[1])
    extra = ["--size", "256MiB", "--rtt-n", "5000"] if args.quick else []
    variants: list[tuple[str, str | None]] = [("direct", None)]
    if shutil.which("socat"):
        variants.append(("socat", SOCAT))
    variants.append(("sockscope", SOCKSCOPE))
    for v in args.variant:
        label, _, tmpl = v.partition("=")
        variants.append((label, tmpl))
    workloads = args.workloads
    if args.delay_ms is not None:
        workloads = "delay"
        extra += ["--delay-ms", str(args.delay_ms)]
        variants = [("direct", None), ("sockscope", SOCKSCOPE + " --latency {delay_ms}")]
    for _ in range(args.rounds):
        for label, tmpl in variants:
            run(label, workloads, out, extra, tmpl)
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for wl, keys in METRICS.items():
        for label, _ in variants:
            runs = [r for r in rows if r.get("label") == label and r.get("workload") == wl]
            if not runs:
                continue
            med: dict[str, float] = {}
            for k in keys:
                vals = [r["metrics"][k] for r in runs
                        if isinstance((r.get("metrics") or {}).get(k), int | float | bool)]
                if vals:
                    med[k] = statistics.median(float(v) for v in vals)
            summary.setdefault(wl, {})[label] = med
    for by_label in summary.values():
        for base in ("direct", "socat"):
            if base not in by_label:
                continue
            for med in by_label.values():
                for k, v in list(med.items()):
                    b = by_label[base].get(k)
                    if b and not k.startswith("ratio") and k not in ("errors", "pass"):
                        med[f"ratio_{k}_vs_{base}"] = round(v / b, 3)
    print(json.dumps({"results_file": str(out), "rounds": args.rounds, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
