"""``python -m inspector.dump SESSION [--filter EXPR] [--decode-as NAME] [--struct FMT]``: decoded messages, no Qt.

Role: the headless reader of recordings: streams a session file (``proxy.session``), or follows a live proxy's
control endpoint (``--follow HOST:PORT``, the token in ``$SOCKSCOPE_TOKEN`` or ``--token-file``), applies the
shared filter language and prints one decoded line per message (and the decoded tree with ``--tree``). Each message
is decoded within ``--decode-budget`` milliseconds: one the decoder gave up on is reported on stderr in one line
naming it, printed with its first bytes in hex, and the dump goes on with the next. Times are wall-clock times
(``HH:MM:SS.mmm``, local time, as the proxy's terminal and the window show them), converted with the recording's
(or the live proxy's) clock anchor; the date is said once on stderr.
Must not import: Qt (PySide6).
Thread: main thread.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from inspector.decode import View, default_registry, gave_up, gave_up_summary
from inspector.filters import FilterError, parse_filter
from proxy.model import Clock, ConnectionClosed, ConnectionOpened, Direction, Message, Notice, Record
from proxy.session import SessionError, open_session


def main(argv: Sequence[str] | None = None) -> int:
    from proxy.cli import console_safe
    from proxy.options import UsageError, add_token_arguments, token_from_args

    console_safe()
    ap = argparse.ArgumentParser(prog="python -m inspector.dump", description="Print decoded messages of a session.")
    ap.add_argument("session", nargs="?", help="a session file written by --record")
    ap.add_argument("--follow", metavar="HOST:PORT", help="follow a live proxy's control endpoint instead")
    add_token_arguments(ap, "of the proxy given with --follow")
    ap.add_argument("--filter", default="", metavar="EXPR", help='e.g. c2s and json.type == "ping"')
    ap.add_argument("--decode-as", default=None, metavar="NAME", help="text, json, msgpack, pickle, struct, hex")
    ap.add_argument("--struct", default=None, metavar="FMT", help='struct format with names: "<Hff x y"')
    ap.add_argument("--tree", action="store_true", help="print each message's decoded fields")
    ap.add_argument("--decode-budget", type=float, default=1000.0, metavar="MS",
                    help="most time one message's decode may take; past it the message is shown in hex "
                         "(default 1000)")
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

    if not args.decode_budget >= 0:
        print("dump: error: --decode-budget must be a number of milliseconds >= 0", file=sys.stderr)
        return 2
    budget_ns = int(args.decode_budget * 1e6)

    def view_of(m: Message) -> View:
        return registry.decode_message(m, detail=False, deadline_ns=time.monotonic_ns() + budget_ns)

    if bool(args.session) == bool(args.follow):
        print("dump: error: give a session file, or --follow HOST:PORT (with the token in $SOCKSCOPE_TOKEN)",
              file=sys.stderr)
        return 2
    try:
        token, _ = token_from_args(args) if args.follow else (None, "")
    except UsageError as e:
        print(f"dump: error: {e}", file=sys.stderr)
        return 2
    shown = 0
    truncated = False
    try:
        records: Any
        if args.follow:
            clock, records = _follow(args.follow, token)
        else:
            records = open_session(args.session)
            clock = records.header.clock
        stamp = _stamper(clock)
        udp: set[int] = set()
        observe: Callable[[Message], None] | None = None
        for r in records:
            if isinstance(r, Message):
                if r.conn_id in udp and observe is not None:
                    # every datagram, in capture order and before the filter: an ENet message sent in fragments is
                    # decoded whole on its last one (as the window and the terminal do)
                    observe(r)
                if not flt.matches(r, view_of):  # type: ignore[arg-type]
                    continue
                v = registry.decode_message(r, detail=args.tree, deadline_ns=time.monotonic_ns() + budget_ns)
                summary = v.summary
                if gave_up(v):
                    summary = gave_up_summary(v, r.data, budget_ns)
                    sys.stdout.flush()
                    print(f"dump: gave up decoding message #{r.id} (conn #{r.conn_id} {r.direction.label}, "
                          f"{r.size} bytes): {(v.error or '')[len('gave up: '):]}; shown in hex", file=sys.stderr)
                arrow = "→" if r.direction is Direction.C2S else "←"
                print(f"{stamp(r.arrival_ns)} #{r.conn_id} {arrow} {r.direction.label} {r.size:>6} B "
                      f"[{v.decoder}] {summary}")
                if args.tree:
                    for line in v.text.splitlines():
                        print(f"        {line}")
                shown += 1
            elif isinstance(r, ConnectionOpened):
                if r.transport == "udp":
                    udp.add(r.conn_id)
                    if observe is None:
                        from inspector.decode._enet import observe_datagram as observe
                (ch, cp), (th, tp) = r.client_addr, r.target_addr
                print(f"{stamp(r.time_ns)} #{r.conn_id} opened {ch}:{cp} → {th}:{tp}")
            elif isinstance(r, ConnectionClosed):
                print(f"{stamp(r.time_ns)} #{r.conn_id} closed: {r.reason.value} ({r.detail})")
            elif isinstance(r, Notice):
                print(f"{stamp(r.time_ns)} {r.level}: {r.text}")
            sys.stdout.flush()
        truncated = bool(getattr(records, "truncated", False))
        if truncated:
            print("dump: note: the file ends inside a record (cut by a crash?); everything before it is shown",
                  file=sys.stderr)
    except (SessionError, ConnectionError, OSError) as e:
        print(f"dump: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        return 0
    print(f"dump: {shown} message(s) shown", file=sys.stderr)
    return 0


def _stamper(clock: Clock | None) -> Callable[[int], str]:
    """Engine times (monotonic ns) as local wall-clock ``HH:MM:SS.mmm``; the date is said once, on stderr."""
    said: list[str] = []

    def stamp(mono_ns: int) -> str:
        if clock is None:
            return f"{mono_ns / 1e9:.3f}s"
        wall = clock.to_wall_ns(mono_ns)
        t = time.localtime(wall / 1e9)
        day = time.strftime("%Y-%m-%d", t)
        if not said or said[-1] != day:
            said.append(day)
            sys.stdout.flush()
            print(f"dump: times are local wall-clock times on {day}", file=sys.stderr, flush=True)
        return time.strftime("%H:%M:%S", t) + f".{(wall // 1_000_000) % 1000:03d}"

    return stamp


def _follow(address: str, token: str | None) -> tuple[Clock | None, Iterator[Record]]:
    """The live proxy's clock anchor, and its records until it goes away."""
    from proxy.control.client import ControlClient, ControlError
    from proxy.options import TOKEN_HOW, UsageError, parse_hostport

    try:
        host, port = parse_hostport(address, "--follow")
    except UsageError as e:
        raise ConnectionError(str(e)) from None
    if not token:
        raise ConnectionError(f"--follow needs the proxy's token (it prints it: 'control on ... token T'): "
                              f"{TOKEN_HOW}")
    try:
        client = ControlClient(host, port, token)
    except ControlError as e:
        raise ConnectionError(f"cannot attach to {address}: {e}") from None
    hello = client.hello
    anchor = hello.get("clock") if isinstance(hello, dict) else None
    clock = (Clock(int(anchor["mono_ns"]), int(anchor["wall_ns"]))
             if isinstance(anchor, dict) and "mono_ns" in anchor and "wall_ns" in anchor else None)

    def records() -> Iterator[Record]:
        try:
            for event in client.iter_events():
                record = event.get("record")
                if record is not None:
                    yield record
        finally:
            client.close()

    return clock, records()


if __name__ == "__main__":
    sys.exit(main())
