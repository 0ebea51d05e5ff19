"""Framing inference over the game corpus: what each program's traffic is inferred as, with zero configuration.

Run by hand from the repository root (not collected by pytest):

    python tests/bench/bench_inference.py [--n 20] [--via thread|cli] [--games ndjson,realpython]

Each game of tests/games plays ``--n`` exchanges through a proxy with ``--framing auto`` (the engine on a thread
of this process by default; ``--via cli`` runs ``python -m proxy`` and reads its session file). One JSON object
on stdout: per program and direction the framing inferred and the one expected, the messages of that framing and
the reads needed before the decision, the milliseconds from the direction's first byte at the proxy to the
decision, the decoder sockscope picks for the first framed message, and whether the game played unchanged (every
byte each side sent arrived exactly, and the recorded messages are exactly those bytes); then a summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from inspector.decode import decode  # noqa: E402
from tests.games import GAMES  # noqa: E402
from tests.games.harness import run_game  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20, help="exchanges per game (default 20)")
    ap.add_argument("--via", choices=["thread", "cli"], default="thread")
    ap.add_argument("--games", default=",".join(GAMES))
    args = ap.parse_args()
    rows = []
    started = time.perf_counter()
    for name in args.games.split(","):
        r = run_game(name, args.n, via=args.via)
        rows.append({
            "game": name,
            "unchanged": r.unchanged and r.records_exact,
            "error": r.error,
            "inferred": r.framing,
            "expected": r.expected,
            "right": r.framing == r.expected,
            "messages_needed": r.messages,
            "reads_needed": r.reads,
            "ms_to_infer": r.ms,
            "decoder": {d: decode(data).decoder for d, data in r.samples.items()},
            "connections": r.connections,
            "warnings": r.warnings,
        })
    directions = [(row, d) for row in rows for d in ("c2s", "s2c")]
    summary = {
        "games": len(rows),
        "unchanged": sum(row["unchanged"] for row in rows),
        "directions_right": sum(row["inferred"].get(d) == row["expected"][d] for row, d in directions),
        "directions": len(directions),
        "within_3_messages": sum(row["messages_needed"].get(d, 99) <= 3 or row["inferred"].get(d) == "raw"
                                 for row, d in directions),
        "max_messages_needed": max((row["messages_needed"].get(d, 0) for row, d in directions), default=0),
        "max_ms_to_infer": max((row["ms_to_infer"].get(d, 0.0) for row, d in directions), default=0.0),
        "seconds": round(time.perf_counter() - started, 2),
        "via": args.via,
        "n": args.n,
    }
    print(json.dumps({"summary": summary, "programs": rows}, indent=1))
    return 0 if summary["unchanged"] == len(rows) and summary["directions_right"] == len(directions) else 1


if __name__ == "__main__":
    raise SystemExit(main())
