"""``sockscope``: the window's command line and composition root.

Role: parse flags, create the ``QApplication``, build the :class:`~inspector.ui.main_window.MainWindow` with a link
(its own proxy, the demo, or ``--attach`` to a running proxy) and run the event loop. The proxy child (or the
in-process engine) is stopped when the window closes.

Start-up time matters (the window must show in well under a second), so heavy modules (the window, decoders,
filters, the engine) are imported only after the arguments are parsed, and the proxy starts after the window
is shown.

Must not import at module level: PySide6, ``inspector.ui``, ``proxy.server`` (start-up time).
Thread: main thread (Qt's GUI thread).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PySide6.QtWidgets import QApplication

    from inspector.bridge import LinkOptions
    from inspector.ui.main_window import MainWindow

T0 = time.perf_counter()

EPILOG = """examples:
  sockscope demo                                        watch the tutorial's client and server
  sockscope demo --udp                                  a UDP game loop: position updates 10 times a second
  sockscope --udp-only --listen 127.0.0.1:7001 --target 127.0.0.1:7000
                                                        a UDP game (--udp: TCP and UDP on the same port)
  sockscope game.sockscope                              open a saved session (or a .pcap/.pcapng capture)
  sockscope --listen 127.0.0.1:5556 --target 127.0.0.1:5555
                                                        then point your client at port 5556
  sockscope --target 127.0.0.1:5555 --latency 100 --jitter 20
  SOCKSCOPE_TOKEN=T sockscope --attach 127.0.0.1:7777   a proxy started with python -m proxy --control
  sockscope export game.sockscope --to game.pcapng      for Wireshark (or .jsonl, or replay.py)
  sockscope import capture.pcapng --framing lines -o game.sockscope
"""


# Qt's X11 plugin (xcb) loads these at start-up and aborts the process, with a hard-to-read message, when one is
# missing, which is common on fresh or minimal Linux installs. Debian/Ubuntu package -> library it provides.
_XCB_LIBRARIES = {
    "libxcb-cursor0": "libxcb-cursor.so.0", "libxcb-icccm4": "libxcb-icccm.so.4", "libxcb-image0": "libxcb-image.so.0",
    "libxcb-keysyms1": "libxcb-keysyms.so.1", "libxcb-randr0": "libxcb-randr.so.0",
    "libxcb-render-util0": "libxcb-render-util.so.0", "libxcb-shape0": "libxcb-shape.so.0",
    "libxcb-xkb1": "libxcb-xkb.so.1", "libxkbcommon-x11-0": "libxkbcommon-x11.so.0",
}


def missing_x11_libraries() -> list[str]:
    """The packages Qt's X11 plugin would miss, on Linux with an X display; empty elsewhere or when all load."""
    if not sys.platform.startswith("linux") or not os.environ.get("DISPLAY"):
        return []
    if os.environ.get("QT_QPA_PLATFORM", "xcb") != "xcb" or os.environ.get("WAYLAND_DISPLAY"):
        return []
    import ctypes

    missing = []
    for package, library in _XCB_LIBRARIES.items():
        try:
            ctypes.CDLL(library)
        except OSError:
            missing.append(package)
    return missing


def build_parser() -> argparse.ArgumentParser:
    from proxy.options import (
        add_addon_arguments,
        add_address_arguments,
        add_condition_arguments,
        add_framing_arguments,
        add_token_arguments,
        add_transport_arguments,
    )

    p = argparse.ArgumentParser(
        prog="sockscope", description="See, slow down and change your game's TCP and UDP traffic.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", nargs="?", metavar="demo | FILE",
                   help="demo: the tutorial's server and client; FILE: a saved session (.sockscope) or a capture "
                        "(.pcap, .pcapng) to open")
    add_address_arguments(p, target_default=None)
    add_transport_arguments(p)
    add_framing_arguments(p)
    add_condition_arguments(p)
    add_addon_arguments(p)  # passed to the proxy the window starts; also the Addons menu's Load addon…
    g = p.add_argument_group("attach (to a proxy started on its own, e.g. on the game server's machine)")
    g.add_argument("--attach", metavar="HOST:PORT", help="attach to a running proxy's control endpoint")
    add_token_arguments(g, "of the proxy given with --attach (it prints it: 'control on ... token T')")
    p.add_argument("--demo-interval", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--in-process", action="store_true",
                   help="run the proxy engine inside the window's process (no child process)")
    p.add_argument("--time-startup", action="store_true", help=argparse.SUPPRESS)
    from proxy.scenario import add_scenario_argument

    add_scenario_argument(p.add_argument_group("scenario"))
    lab = p.add_argument_group("latency-compensation lab (docs/lab.md)")
    lab.add_argument("--lab", action="store_true",
                     help="open the Lab: input-to-ack delay, inputs in flight, snapshot intervals, corrections")
    lab.add_argument("--lab-hints", metavar="FILE",
                     help="which fields are the input sequence, acknowledgement, tick/time and positions (TOML); "
                          "implies --lab")
    return p


def attach_from_args(args: argparse.Namespace) -> tuple[str, int, str]:
    """``--attach HOST:PORT`` and its token (``$SOCKSCOPE_TOKEN`` or ``--token-file``); ``UsageError`` if bad."""
    from proxy.options import TOKEN_HOW, UsageError, parse_hostport, token_from_args

    host, port = parse_hostport(args.attach, "--attach")
    token, _ = token_from_args(args)
    if token is None:
        raise UsageError(f"--attach needs the proxy's token (it prints it: 'control on ... token T'): {TOKEN_HOW}")
    return host, port, token


def link_from_args(args: argparse.Namespace) -> tuple[LinkOptions | None, tuple[str, int, str] | None]:
    """What the window starts with: a proxy of its own (``LinkOptions``), a proxy to attach to (host, port,
    token), or neither (the start page asks). ``UsageError`` names a bad flag."""
    from inspector.bridge import LinkOptions
    from proxy.framing import DEFAULT_MAX_FRAME, FramingError, parse_framing
    from proxy.options import (
        UsageError,
        conditions_from_args,
        conditions_given,
        parse_hostport,
        parse_size,
        transports_from_args,
    )

    options: LinkOptions | None = None
    attach: tuple[str, int, str] | None = None
    conditions = conditions_from_args(args).to_dict() if conditions_given(args) else None
    # The rest of the proxy's flags go to the proxy the window starts as they were given.
    extra: list[str] = []
    max_frame = parse_size(args.max_frame, "--max-frame")
    if max_frame != DEFAULT_MAX_FRAME:
        extra += ["--max-frame", args.max_frame]
    if args.seed is not None:
        extra += ["--seed", str(args.seed)]
    for script in getattr(args, "scripts", []):  # -s FILE: loaded by the proxy the window starts, before it listens
        extra += ["-s", os.path.abspath(script)]
    tcp, udp = transports_from_args(args)
    transport = {"tcp": tcp, "udp": udp, "udp_idle_timeout": args.udp_idle_timeout,
                 "udp_max_flows": args.udp_max_flows}
    if args.attach:
        attach = attach_from_args(args)
    elif args.command == "demo" or args.target:
        try:
            parse_framing(args.framing, max_frame)
        except FramingError as e:
            raise UsageError(f"--framing: {e}") from None
        if args.command == "demo":
            # demo --udp is the UDP game loop alone (ten updates a second); the TCP demo pings twice a second
            interval = args.demo_interval
            if interval is None:
                if udp:
                    from proxy.demo import UDP_INTERVAL  # not before: it loads the terminal printer

                    interval = UDP_INTERVAL
                else:
                    interval = 0.5
            transport["tcp"] = not udp
            options = LinkOptions(demo=True, demo_interval=interval, framing=args.framing,
                                  conditions=conditions, extra_args=extra, **transport)  # type: ignore[arg-type]
        else:
            options = LinkOptions(listen=parse_hostport(args.listen, "--listen"),
                                  target=parse_hostport(args.target, "--target"), framing=args.framing,
                                  conditions=conditions, extra_args=extra, **transport)  # type: ignore[arg-type]
    return options, attach


OPENABLE = (".sockscope", ".session", ".pcap", ".pcapng", ".cap", ".gz")


def file_from_args(args: argparse.Namespace) -> str | None:
    """The file ``sockscope FILE`` opens, or None; ``UsageError`` for a word that is neither ``demo`` nor a file."""
    from proxy.options import UsageError

    word: str | None = args.command
    if word is None or word == "demo":
        return None
    if not os.path.isfile(word):
        hint = "" if word.lower().endswith(OPENABLE) else (
            "; give demo (the tutorial's client and server) or a session or capture file to open")
        raise UsageError(f"{word}: no such file{hint}")
    if args.target or args.attach:
        raise UsageError(f"{word}: open a file, or watch a proxy (--target, --attach), not both at once")
    return os.path.abspath(word)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:  # Qt-free: the program's own output is the point
        from inspector import run

        return run.main(argv[1:], window=sys.modules[__name__])  # type: ignore[arg-type]  # this module
    if argv[:1] in (["export"], ["import"]):  # Qt-free: session export, capture import (inspector/interop)
        from inspector.interop import cli as interop_cli

        return interop_cli.main(argv)
    args = build_parser().parse_args(argv)
    if args.list_presets:
        from proxy.presets import list_presets_text

        print(list_presets_text())
        return 0
    from proxy.options import UsageError

    try:
        path = file_from_args(args)
        options, attach = link_from_args(args)
    except UsageError as e:
        print(f"sockscope: error: {e}", file=sys.stderr)
        return 2
    lab_hints = None
    if args.lab_hints:
        from inspector.lab.hints import HintsError, load_hints

        try:
            lab_hints = load_hints(args.lab_hints)
        except HintsError as e:
            for line in e.errors:
                print(f"sockscope: error: {line}", file=sys.stderr)
            return 2
    if args.in_process:
        os.environ["SOCKSCOPE_IN_PROCESS"] = "1"
    if args.scenario:  # checked before any window: a wrong file is said on the terminal, line by line
        from proxy.scenario import ScenarioError, load

        try:
            load(args.scenario)
        except ScenarioError as e:
            for problem in e.problems:
                print(f"sockscope: error: --scenario {problem}", file=sys.stderr)
            return 2

    missing = missing_x11_libraries()
    if missing:
        print("sockscope: the window needs system libraries that are not installed: " + " ".join(missing)
              + f"\n  on Debian/Ubuntu: sudo apt-get install {' '.join(missing)}"
              + "\n  or run without a window: sockscope-proxy --demo", file=sys.stderr)
        return 2
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    window = create_window(app, options, attach, path, time_startup=args.time_startup,
                           addons=[os.path.abspath(x) for x in args.scripts])
    if args.scenario:  # plays from when the proxy starts (at once if it already runs)
        scenario_file = args.scenario
        QTimer.singleShot(0, lambda: window.scenario.load(scenario_file))
    if args.lab or lab_hints is not None:
        window.show_lab(hints=lab_hints)
    if args.time_startup and options is not None:
        # for the benchmark: when the first decoded client message (the tutorial's reply, then pings) is a row
        def first_row() -> None:
            if window.model.rowCount() and any(window.store.dirs[r] == 0 for r in range(len(window.store))):
                print(f"sockscope: first decoded client message after {(time.perf_counter() - T0) * 1000:.0f} ms",
                      flush=True)
            else:
                QTimer.singleShot(10, first_row)

        QTimer.singleShot(0, first_row)
    code = app.exec()
    window.stop_link()
    return int(code)


def create_window(app: QApplication, options: LinkOptions | None, attach: tuple[str, int, str] | None = None,
                  path: str | None = None, *, time_startup: bool = False,
                  source_layouts: Sequence[object] = (), addons: Sequence[str] = ()) -> MainWindow:
    """The window, shown, with its proxy (or attach, or file) started on the first event-loop turn.
    ``source_layouts``: the struct layouts ``sockscope run`` found in the program's source
    (``inspector.layouts.Layout``), kept as the window's ``source_layouts`` list. ``addons``: addon files
    (``-s FILE``) loaded into the window's proxy (a child proxy gets them on its command line too)."""
    from PySide6.QtCore import QTimer

    app.setApplicationName("sockscope")
    app.setOrganizationName("sockscope")
    from inspector.ui.main_window import MainWindow

    window = MainWindow(None)
    window.source_layouts = list(source_layouts)  # type: ignore[arg-type]  # Layout objects from inspector.layouts
    window.addons.preset(list(addons))
    window.show()
    if time_startup:
        app.processEvents()
        print(f"sockscope: window shown after {(time.perf_counter() - T0) * 1000:.0f} ms", flush=True)
    # Start the proxy once the window is on screen: the user sees the window at once.
    if attach is not None:
        QTimer.singleShot(0, lambda: window.attach(*attach))
    elif options is not None:
        QTimer.singleShot(0, lambda: window.start_link(options))
    elif path is not None:
        window.central.setCurrentWidget(window.main_view)
        QTimer.singleShot(0, lambda: window.sessions.open_file(path))
    else:
        window.central.setCurrentWidget(window.start_page)
    return window


def run_attached_window(attach: tuple[str, int, str], *, source_layouts: Sequence[object] = ()) -> int:
    """``sockscope run --window``: the window attached to the run's proxy, with ``source_layouts`` (see
    :func:`create_window`); returns once the window is closed. Ctrl+C closes it (Qt's loop would otherwise keep
    Python's handler from running)."""
    import signal

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    window = create_window(app, None, attach, source_layouts=source_layouts)
    # Python runs signal handlers between bytecodes: a timer gives it some while Qt waits; it also ends the loop
    # once this window is closed, whatever other top-level windows are left (quitOnLastWindowClosed would wait).
    tick = QTimer(window)
    tick.timeout.connect(lambda: None if window.isVisible() else app.quit())
    tick.start(200)
    previous = None
    with contextlib.suppress(ValueError):  # not the main thread
        previous = signal.signal(signal.SIGINT, lambda _signum, _frame: window.close())
    try:
        return int(app.exec())
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        tick.stop()
        window.stop_link()


if __name__ == "__main__":
    sys.exit(main())
