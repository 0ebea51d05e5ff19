"""``python -m inspector.dump SESSION [--filter EXPR] [--decode-as NAME] [--struct FMT]``: decoded messages, no Qt.

Role: the headless reader of recordings: streams a session file (``proxy.session``), applies the shared filter
language and prints one decoded line per message (and the decoded tree with ``--tree``).
Must not import: Qt (PySide6).
Thread: main thread.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from inspector.decode import default_registry
from inspector.filters import FilterError, parse_filter
from proxy.model import ConnectionClosed, ConnectionOpened, Direction, Message, Notice
from proxy.session import SessionError, open_session


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m inspector.dump", description="Print decoded messages of a session.")
    ap.add_argument("session", help="a session file written by --record")
    ap.add_argument("--filter", default="", metavar="EXPR", help='e.g. c2s and json.type == "ping"')
    ap.add_argument("--decode-as", default=None, metavar="NAME", help="text, json, msgpack, pickle, struct, hex")
    ap.add_argument("--struct", default=None, metavar="FMT", help='struct format with names: "<Hff x y"')
    ap.add_argument("--tree", action="store_true", help="print each message's decoded fields")
    args = ap.parse_args(argv)
    registry = default_registry()
    if args.decode_as and args.decode_as not in registry:
        print(f"dump: error: --decode-as {args.decode_as!r}: known decoders are {', '.join(registry)}",
              file=sys.stderr)
        return 2
    if args.struct:
        registry.set_struct_format(args.struct)
    registry.set_decode_as(args.decode_as)
    try:
        flt = parse_filter(args.filter)
    except FilterError as e:
        print(f"dump: error: --filter: {e}\n  {args.filter}\n  {' ' * e.column}^", file=sys.stderr)
        return 2

    def view_of(m: Message) -> object:
        return registry.decode_message(m)

    shown = 0
    try:
        reader = open_session(args.session)
        for r in reader:
            if isinstance(r, Message):
                if not flt.matches(r, view_of):  # type: ignore[arg-type]
                    continue
                v = registry.decode_message(r)
                arrow = "→" if r.direction is Direction.C2S else "←"
                print(f"{r.arrival_ns / 1e9:14.6f} #{r.conn_id} {arrow} {r.direction.label} {r.size:>6} B "
                      f"[{v.decoder}] {v.summary}")
                if args.tree:
                    for line in v.text.splitlines():
                        print(f"        {line}")
                shown += 1
            elif isinstance(r, ConnectionOpened):
                (ch, cp), (th, tp) = r.client_addr, r.target_addr
                print(f"#{r.conn_id} opened {ch}:{cp} → {th}:{tp}")
            elif isinstance(r, ConnectionClosed):
                print(f"#{r.conn_id} closed: {r.reason.value} ({r.detail})")
            elif isinstance(r, Notice):
                print(f"{r.level}: {r.text}")
        if reader.truncated:
            print("dump: note: the file ends inside a record (cut by a crash?); everything before it is shown",
                  file=sys.stderr)
    except SessionError as e:
        print(f"dump: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    print(f"dump: {shown} message(s) shown", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
