"""Regression guard for the relay, control and window paths: a commit against the working tree, interleaved.

Run by hand from the repository root (not collected by pytest), with nothing else running:

    python tests/bench/bench_relay_ab.py REV [--rounds 5] [--workloads rtt,concurrent]

``REV`` is checked out into a temporary git worktree; each round runs ../shared/bench/proxybench.py's
small-message workloads against direct loopback, socat (when installed), the plain uvloop relay peer
(../shared/bench/peers/asyncio_proxy.py --uvloop: the floor for a Python relay), ``python -m proxy`` at REV and
``python -m proxy`` from the working tree, in that order, each in a fresh process. One JSON object on stdout:
medians per variant, the working tree's ratio to REV, and ratios to direct and socat. A ratio near 1.00 (within
the rounds' spread) means no regression.
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
PROXY = "{python} -m proxy --listen 127.0.0.1:{listen} --target 127.0.0.1:{target} --quiet"
PEER = ROOT.parent / "shared" / "bench" / "peers" / "asyncio_proxy.py"
PLAIN = "{python} " + str(PEER) + " --listen 127.0.0.1:{listen} --target 127.0.0.1:{target} --uvloop"
SOCAT = "socat TCP-LISTEN:{listen},bind=127.0.0.1,reuseaddr,fork TCP:127.0.0.1:{target}"
KEYS = {"rtt": ("p50_us", "p99_us"), "concurrent": ("msgs_per_s", "p99_us"), "throughput": ("up_MBps", "down_MBps")}


def _run(label: str, workloads: str, out: Path, extra: list[str], cmd: str | None, tree: Path | None) -> None:
    argv = [sys.executable, str(BENCH), "--label", label, "--workloads", workloads, "--out", str(out), *extra]
    if cmd is None:
        argv.append("--direct")
    else:
        argv += ["--proxy-cmd", cmd]
    if tree is not None:
        argv += ["--proxy-cwd", str(tree), "--proxy-env", f"PYTHONPATH={tree}"]
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=False, timeout=3600)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("rev", help="the commit to compare the working tree against (e.g. HEAD~1, main)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workloads", default="rtt,concurrent")
    ap.add_argument("--rtt-n", default="5000")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if not BENCH.exists():
        print(json.dumps({"error": f"{BENCH} not found"}))
        return 2
    base = Path(tempfile.mkdtemp(prefix="sockscope-ab-")) / "base"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.rev], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rev = subprocess.run(["git", "-C", str(base), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()
    out = args.out or Path(tempfile.mkstemp(suffix=".jsonl", prefix="sockscope-ab-")[1])
    proxy = PROXY
    variants: list[tuple[str, str | None, Path | None]] = [("direct", None, None)]
    if shutil.which("socat"):
        variants.append(("socat", SOCAT, None))
    if PEER.exists():
        variants.append(("plain uvloop relay", PLAIN, None))
    variants += [(f"base {rev}", proxy, base), ("working tree", proxy, ROOT)]
    extra = ["--rtt-n", args.rtt_n]
    try:
        for _ in range(args.rounds):
            for label, cmd, tree in variants:
                _run(label, args.workloads, out, extra, cmd, tree)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    summary: dict[str, dict[str, dict[str, float | list[float]]]] = {}
    for wl in args.workloads.split(","):
        for label, _, _ in variants:
            runs = [r for r in rows if r.get("label") == label and r.get("workload") == wl]
            med: dict[str, float | list[float]] = {}
            for k in KEYS.get(wl, ()):
                vals = [float(r["metrics"][k]) for r in runs
                        if isinstance((r.get("metrics") or {}).get(k), int | float)]
                if vals:
                    med[k] = round(statistics.median(vals), 2)
                    med[f"{k}_rounds"] = [round(v, 1) for v in vals]
            summary.setdefault(wl, {})[label] = med
        by = summary.get(wl, {})
        new, old = by.get("working tree", {}), by.get(f"base {rev}", {})
        for k in KEYS.get(wl, ()):
            if isinstance(new.get(k), float) and isinstance(old.get(k), float) and old[k]:
                new[f"ratio_{k}_vs_base"] = round(new[k] / old[k], 3)  # type: ignore[operator]
            for ref in ("direct", "socat", "plain uvloop relay"):
                r = by.get(ref, {}).get(k)
                if isinstance(r, float) and r:
                    for lab in ("working tree", f"base {rev}"):
                        v = by.get(lab, {}).get(k)
                        if isinstance(v, float):
                            by[lab][f"ratio_{k}_vs_{ref}"] = round(v / r, 3)
    print(json.dumps({"base": rev, "rounds": args.rounds, "results_file": str(out), "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
