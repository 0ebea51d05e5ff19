"""The headless command line: ``python -m proxy`` / ``sockscope-proxy``.

Role: parse flags, start the engine on this process's main thread, print one line per message, and stop
cleanly on Ctrl+C / SIGTERM (exit 0). ``--demo`` starts the tutorial's exercise around the proxy. What the
control flags ask for (``--control``, ``--record``, ``--parent-watch``) is started by :func:`start_extras`: the
command line uses ``proxy.control``, never the reverse.
Errors the user can fix (port in use, bad address, non-loopback listen without ``--allow-remote``) are one
line on stderr and exit status 2; no traceback.
Must not import: Qt, ``inspector``.
Thread: main thread; the engine's event loop runs here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from proxy.demo import UDP_INTERVAL, DemoClient, DemoServer, UdpDemoClient, UdpDemoServer
from proxy.framing import FramingError, parse_framing
from proxy.loop import new_event_loop, tune_allocator
from proxy.options import (
    TOKEN_ENV,
    TOKEN_HOW,
    UsageError,
    add_addon_arguments,
    add_address_arguments,
    add_engine_arguments,
    add_token_arguments,
    add_transport_arguments,
    conditions_from_args,
    parse_hostport,
    parse_payload_rate,
    parse_size,
    token_from_args,
    transports_from_args,
)
from proxy.printer import Printer, TerminalLogHandler, close_terminals, say
from proxy.server import ProxyConfig, ProxyError, ProxyServer, is_loopback
from proxy.tasks import spawn

if TYPE_CHECKING:
    from proxy.conditions import Conditions

# Re-exported for the modules that still import them from here (proxy.control, inspector.bridge); new code
# imports them from proxy.options.
__all__ = ["TOKEN_ENV", "TOKEN_HOW", "UsageError", "add_token_arguments", "build_parser", "conditions_from_args",
           "config_from_args", "console_safe", "main", "parse_hostport", "parse_size", "token_from_args"]

DEMO_ATTACH_WAIT = 10.0  # seconds --demo waits for a first control subscriber before the client connects


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sockscope-proxy",
        description="sockscope's headless proxy: relays TCP (and, with --udp, UDP) between your client and "
                    "server and prints every message.",
        epilog="example: sockscope-proxy --listen 127.0.0.1:5556 --target 127.0.0.1:5555  "
               "(then point your client at port 5556)")
    add_address_arguments(p)
    add_transport_arguments(p)
    add_engine_arguments(p)
    add_addon_arguments(p)
    g = p.add_argument_group("demo and process")
    g.add_argument("--demo", action="store_true",
                   help="start the tutorial's exercise server and client with the proxy between them (with --udp "
                        "or --udp-only: a UDP game loop instead, position updates 10 times a second)")
    g.add_argument("--demo-pings", type=int, default=None, metavar="N",
                   help="with --demo: the client pings N times (UDP: sends N updates), then the demo ends "
                        "(default: until Ctrl+C)")
    g.add_argument("--demo-interval", type=float, default=None, metavar="S", help=argparse.SUPPRESS)
    # For the proxy a window starts (inspector.bridge.ChildProcessLink): the conditions in force from the first
    # byte (the window's own set_conditions would race the demo's welcome), and where its numbering goes on.
    g.add_argument("--conditions-json", default=None, help=argparse.SUPPRESS)
    g.add_argument("--first-ids", default=None, metavar="CONN,MSG", help=argparse.SUPPRESS)
    g.add_argument("--parent-watch", action="store_true",
                   help="exit when standard input reaches end of file (a parent process that holds the pipe "
                        "went away)")
    from proxy.scenario import add_scenario_argument

    add_scenario_argument(p.add_argument_group("scenario"))
    return p


# ------------------------------------------------------------------------------------------ the control endpoint


def _default_stop() -> None:
    # Goes through the CLI's own SIGINT handling (a clean shutdown); works on Windows too.
    signal.raise_signal(signal.SIGINT)


async def start_extras(server: ProxyServer, args: argparse.Namespace,
                       on_parent_gone: Callable[[], None] | None = None) -> list[object]:
    """Start what the flags of :func:`add_control_arguments` ask for; returns the objects to pass to
    :func:`stop_extras`.

    Call after ``await server.start()``. Prints ``sockscope: control on HOST:PORT token TOKEN`` (one line) when
    ``--control`` is given, or ``... (token from $SOCKSCOPE_TOKEN)`` / ``(token from --token-file)`` when the user
    chose the token. ``on_parent_gone`` runs on the loop when ``--parent-watch`` sees
    EOF (default: raise SIGINT, which the CLI turns into a clean stop). Errors are ``ProxyError``.
    """
    # Imported here, not at the top: the window imports this module for its flag helpers, and needs no endpoint.
    from proxy.control.endpoint import DEFAULT_PAYLOAD_RATE, ControlServer

    started: list[object] = []
    loop = asyncio.get_running_loop()
    try:
        record = getattr(args, "record", None)
        if record:
            from proxy.recorder import Recorder

            try:
                started.append(Recorder(record, server))
            except OSError as e:
                raise ProxyError(f"--record {record}: cannot create the file: {e.strerror or e}") from None
        control = getattr(args, "control", None)
        wait_attach = getattr(args, "wait_attach", None)
        if wait_attach is not None and (not control or wait_attach < 0):
            raise ProxyError("--wait-attach needs --control (something must be able to attach), and a wait of "
                             "0 or more seconds")
        if control:
            try:
                host, port = parse_hostport(control, "--control")
                token, source = token_from_args(args)
            except UsageError as e:
                raise ProxyError(str(e)) from None
            try:
                rate_text = getattr(args, "control_payload_rate", None)
                rate = DEFAULT_PAYLOAD_RATE if rate_text is None else parse_payload_rate(rate_text)
                cs = ControlServer(server, host, port, token=token, payload_rate=rate,
                                   allow_remote=bool(getattr(args, "allow_remote", False)))
            except ValueError as e:
                raise ProxyError(str(e)) from None
            chost, cport = await cs.start()
            started.append(cs)
            # loading an addon runs its code here: only for control clients on this machine
            server.addons_over_control = is_loopback(chost)
            shown = f"[{chost}]" if ":" in chost else chost
            # A generated token is shown here, on the terminal (never on a command line); one the user gave is not.
            say(f"sockscope: control on {shown}:{cport} " + (f"(token from {source})" if token else
                                                             f"token {cs.token}"))
        if getattr(args, "parent_watch", False):
            started.append(watch_stdin(loop, on_parent_gone or _default_stop))
    except BaseException:
        await stop_extras(started)
        raise
    return started


async def stop_extras(started: list[object]) -> None:
    """Close what :func:`start_extras` started, newest first. Call after ``server.shutdown()`` so the
    recording and the subscribers see the last records."""
    from proxy.control.endpoint import ControlServer
    from proxy.recorder import Recorder

    for obj in reversed(started):
        if isinstance(obj, ControlServer):
            await obj.close()
        elif isinstance(obj, Recorder):
            obj.close()
    started.clear()


def watch_stdin(loop: asyncio.AbstractEventLoop, stop_callback: Callable[[], None]) -> threading.Thread:
    """Call ``stop_callback`` on ``loop`` when standard input reaches EOF (the parent closed its pipe or died).

    A blocking read on a daemon thread: works with pipes on Windows, macOS and Linux, where ``add_reader`` on
    stdin would not. Whatever arrives on stdin is read and ignored.
    """

    def run() -> None:
        stream: Any = sys.stdin.buffer if sys.stdin is not None else None
        if stream is None:
            say("sockscope: --parent-watch: there is no standard input to watch", err=True)
            return
        try:
            while stream.read1(65536):
                pass
        except (OSError, ValueError):
            pass  # a closed or broken stdin means the parent is gone as surely as EOF
        try:
            loop.call_soon_threadsafe(stop_callback)
        except RuntimeError:
            pass  # the loop already closed: the process is stopping anyway

    t = threading.Thread(target=run, name="sockscope-parent-watch", daemon=True)
    t.start()
    return t


def config_from_args(args: argparse.Namespace) -> ProxyConfig:
    listen_host, listen_port = parse_hostport(args.listen, "--listen")
    target_host, target_port = parse_hostport(args.target, "--target")
    if not is_loopback(listen_host) and not args.allow_remote:
        raise UsageError(f"--listen {args.listen}: {listen_host} is reachable from the network; "
                         "add --allow-remote if that is what you want (default is loopback only)")
    max_frame = parse_size(args.max_frame, "--max-frame")
    try:
        framing = parse_framing(args.framing, max_frame)
    except FramingError as e:
        raise UsageError(f"--framing: {e}") from None
    if args.connect_timeout <= 0:
        raise UsageError("--connect-timeout must be positive; e.g. --connect-timeout 5")
    conditions = conditions_from_args(args)
    if getattr(args, "conditions_json", None):
        conditions = _conditions_json(args.conditions_json)
    first_ids = _first_ids(args.first_ids) if getattr(args, "first_ids", None) else (1, 1)
    tcp, udp = transports_from_args(args)
    return ProxyConfig(listen_host, listen_port, target_host, target_port, framing, args.connect_timeout,
                       conditions, args.seed, first_ids, tcp, udp, args.udp_idle_timeout, args.udp_max_flows)


def _conditions_json(text: str) -> Conditions:
    import json

    from proxy.conditions import Conditions, ConditionsError

    try:
        return Conditions.from_dict(json.loads(text))
    except (ValueError, TypeError, ConditionsError) as e:
        raise UsageError(f"--conditions-json: {e}") from None


def _first_ids(text: str) -> tuple[int, int]:
    try:
        conn, msg = (int(x) for x in text.split(","))
    except ValueError:
        raise UsageError(f"--first-ids {text!r}: expected two numbers, CONN,MSG") from None
    if conn < 1 or msg < 1:
        raise UsageError(f"--first-ids {text!r}: numbers start at 1")
    return conn, msg


async def _serve(args: argparse.Namespace, config: ProxyConfig) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    demo_server: DemoServer | None = None
    udp_server: UdpDemoServer | None = None
    if args.demo:
        if not config.udp:
            demo_server = DemoServer().start()
        else:
            udp_server = UdpDemoServer().start()
        port = demo_server.port if demo_server is not None else udp_server.port if udp_server is not None else 0
        config.target_host, config.target_port = "127.0.0.1", port
        if args.listen == "127.0.0.1:5556":
            config.listen_port = 0  # the demo must not collide with a real game on 5556
    server = ProxyServer(config, loop)
    server.subscribe(Printer(server.clock, show_messages=not args.quiet), messages=not args.quiet)
    scenario = getattr(args, "loaded_scenario", None)
    await _load_addons(server, getattr(args, "scripts", []))
    wait_attach = getattr(args, "wait_attach", None)
    host, port = await server.start(accept=wait_attach is None)
    from proxy.control.endpoint import ControlServer

    try:
        extras = await start_extras(server, args, stop.set)
    except ProxyError:
        await server.shutdown()
        raise
    if config.tcp:
        say(f"sockscope: listening on {host}:{port} → {config.target_host}:{config.target_port} "
            f"(framing {config.framing})")
    if config.udp:
        say(f"sockscope: UDP on {host}:{port} → {config.target_host}:{config.target_port} (a flow per client "
            f"address, idle timeout {config.udp_idle_timeout:g} s, at most {config.udp_max_flows} flows)")
    if not config.conditions.is_passthrough:
        say(f"sockscope: conditions {config.conditions.describe()}")
    _install_signal_handlers(loop, stop)
    if wait_attach is not None:
        endpoint = next(e for e in extras if isinstance(e, ControlServer))
        say(f"sockscope: waiting for a control client to attach before accepting connections"
            f"{f' (at most {wait_attach:g} s)' if wait_attach else ''}")
        waiting = spawn(endpoint.attached.wait(), name="sockscope-wait-attach")
        stopping = spawn(stop.wait(), name="sockscope-wait-stop")
        await asyncio.wait([waiting, stopping], timeout=wait_attach or None, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        stopping.cancel()
        if not stop.is_set():
            await server.start_accepting()
    if scenario is not None:
        from proxy.scenario import EngineRunner

        EngineRunner(server, scenario).start()  # steps are printed as notices when they take effect
    client: DemoClient | None = None
    udp_client: UdpDemoClient | None = None
    if args.demo:
        endpoints = [e for e in extras if isinstance(e, ControlServer)]
        if endpoints:
            # The demo's first messages (the welcome and "Ping received!") are the point: when a window is
            # about to attach, let it attach first (bounded, so a demo without a window still runs).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(endpoints[0].attached.wait(), DEMO_ATTACH_WAIT)
        if demo_server is not None:
            client = DemoClient(host, port, args.demo_pings,
                                1.0 if args.demo_interval is None else args.demo_interval).start()
            loop.run_in_executor(None, client.thread.join).add_done_callback(lambda _: stop.set())
        if udp_server is not None:
            udp_client = UdpDemoClient(host, port, args.demo_pings,
                                       UDP_INTERVAL if args.demo_interval is None else args.demo_interval).start()
            if client is None:
                loop.run_in_executor(None, udp_client.thread.join).add_done_callback(lambda _: stop.set())
    elif config.tcp:
        warning = await server.probe_target()
        if warning:
            say(f"sockscope: warning: {warning}", err=True)
    await stop.wait()
    if client is not None and server.handlers:
        # the demo client has finished: give the server's own FIN a moment to pass through before stopping
        await asyncio.wait([h.done for h in server.handlers.values()], timeout=1.0)
    say("sockscope: stopping (flushing pending messages)")
    if client is not None:
        client.stop()
    if udp_client is not None:
        udp_client.stop()
    await server.shutdown()
    await stop_extras(extras)
    if demo_server is not None:
        demo_server.stop()
    if udp_server is not None:
        udp_server.stop()
    failed = any(c is not None and c.error is not None for c in (client, udp_client))
    return 1 if failed else 0


async def _load_addons(server: ProxyServer, paths: list[str]) -> None:
    """``-s FILE``: load each addon before the first connection is accepted; one that cannot be loaded stops the
    proxy with its error (and the file's line)."""
    for path in paths:
        try:
            await server.load_addon(path)
        except ValueError as e:  # AddonLoadError
            if server.addons is not None:
                server.addons.close()
            raise ProxyError(f"-s {path}: {e}") from None


def _install_signal_handlers(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    for name in ("SIGINT", "SIGTERM", "SIGBREAK"):
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            # Windows' loops have no add_signal_handler: a plain handler hops onto the loop instead.
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))


def console_safe() -> None:
    """Never die on a character the console cannot show: Windows gives a redirected or piped stdout its ANSI
    code page (cp1252), which has no "→" and no emoji. Such characters are written as escapes instead."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(Exception):
                reconfigure(errors="backslashreplace")


def _raise_fd_limit() -> None:
    """Many concurrent game clients need more file descriptors than some defaults allow (Linux: 1024)."""
    try:
        import resource
    except ImportError:  # Windows has no such limit to raise
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, 65536), hard))


def main(argv: Sequence[str] | None = None) -> int:
    console_safe()
    args = build_parser().parse_args(argv)
    if args.list_presets:
        from proxy.presets import list_presets_text

        print(list_presets_text())
        return 0
    try:
        config = config_from_args(args)
    except UsageError as e:
        print(f"sockscope-proxy: error: {e}", file=sys.stderr)
        return 2
    if args.scenario:
        from proxy.scenario import ScenarioError, load

        try:
            args.loaded_scenario = load(args.scenario)
        except ScenarioError as e:
            for problem in e.problems:
                print(f"sockscope-proxy: error: --scenario {problem}", file=sys.stderr)
            return 2
    _raise_fd_limit()
    tune_allocator()
    logging.basicConfig(level=logging.WARNING, handlers=[TerminalLogHandler()])
    loop = new_event_loop()
    try:
        return loop.run_until_complete(_serve(args, config))
    except ProxyError as e:
        print(f"sockscope-proxy: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        with contextlib.suppress(Exception):
            loop.close()
        close_terminals()  # bounded: a terminal that does not read never keeps the proxy from exiting


if __name__ == "__main__":
    sys.exit(main())
