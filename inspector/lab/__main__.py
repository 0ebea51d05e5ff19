"""``python -m inspector.lab SESSION [--hints FILE] [--json]``: the lab's figures for a saved session, printed.

Role: a script's (or a CI job's) way to the same numbers as the window's Lab dock, without Qt.
Must not import: Qt, ``inspector.ui``, ``inspector.bridge``.
Thread: main thread.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from inspector.lab.analysis import analyse_session
from inspector.lab.hints import HintsError


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m inspector.lab",
                                description="input-to-ack delay, inputs in flight, snapshot intervals and the "
                                            "interpolation delay, corrections: for a saved session (docs/lab.md)")
    p.add_argument("session", help="a session file (--record, File > Save)")
    p.add_argument("--hints", metavar="FILE", help="which fields are which (TOML); default: inferred from names")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    args = p.parse_args(argv)
    from proxy.session import SessionError

    try:
        report = analyse_session(args.session, args.hints)
    except HintsError as e:
        for line in e.errors:
            print(f"error: {line}", file=sys.stderr)
        return 2
    except SessionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=1) if args.json else report.text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
