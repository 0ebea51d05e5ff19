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
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from proxy.conditions import Conditions, conditions_from_cli
from proxy.demo import DemoClient, DemoServer
from proxy.framing import DEFAULT_MAX_FRAME, FramingError, parse_framing
from proxy.loop import new_event_loop, tune_allocator
from proxy.printer import Printer, TerminalLogHandler, close_terminals, say
from proxy.server import ProxyConfig, ProxyError, ProxyServer, is_loopback

DEMO_ATTACH_WAIT = 10.0  # seconds --demo waits for a first control subscriber before the client connects


class UsageError(Exception):
    """A bad flag value: printed as one line with the flag and an example."""


# ------------------------------------------------------------------------------------------ the control token
# A token on a command line is visible to every user of the machine (``ps``, /proc/<pid>/cmdline), so no
# sockscope command takes one there: it comes from the environment (readable by the same user only) or a file.

TOKEN_ENV = "SOCKSCOPE_TOKEN"
TOKEN_HOW = f"put it in the {TOKEN_ENV} environment variable or in a file given with --token-file PATH"


class _RefuseToken(argparse.Action):
    """``--token T`` exits with one line saying how to pass the token instead."""

    def __init__(self, option_strings: list[str], dest: str, **kw: object) -> None:
        super().__init__(option_strings, dest, nargs="?", help=argparse.SUPPRESS)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        parser.exit(2, f"{parser.prog}: error: --token on the command line is visible to every user of this "
                       f"machine (ps); {TOKEN_HOW}\n")


def add_token_arguments(parser: argparse.ArgumentParser, purpose: str) -> None:
    """``--token-file PATH`` (and a ``--token`` that refuses, saying why). ``purpose`` ends the help sentence."""
    parser.add_argument("--token-file", default=None, metavar="PATH",
                        help=f"a file holding the control token {purpose} (default: ${TOKEN_ENV}; a token is "
                             "never given on the command line, where other users could read it)")
    parser.add_argument("--token", action=_RefuseToken)


def token_from_args(args: argparse.Namespace) -> tuple[str | None, str]:
    """The token from ``--token-file`` or ``$SOCKSCOPE_TOKEN`` (in that order) and where it came from;
    ``(None, "")`` if neither gives one. ``UsageError`` for a file that cannot be read or holds no token."""
    path = getattr(args, "token_file", None)
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                token = f.read(4096).strip()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"--token-file {path}: cannot read it: {getattr(e, 'strerror', None) or e}") from None
        if not token or any(c.isspace() for c in token):
            raise UsageError(f"--token-file {path}: expected one token (a line without spaces), found "
                             f"{'nothing' if not token else 'several words'}")
        return token, "--token-file"
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token, f"${TOKEN_ENV}"
    return None, ""


def parse_hostport(text: str, flag: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``PORT``; IPv6 as ``[::1]:PORT``."""
    t = text.strip()
    host, port_s = default_host, t
    if t.startswith("["):
        end = t.find("]")
        if end < 0 or not t[end + 1:].startswith(":"):
            raise UsageError(f"{flag}: bad address {text!r}; e.g. {flag} [::1]:5556")
        host, port_s = t[1:end], t[end + 2:]
    elif ":" in t:
        host, _, port_s = t.rpartition(":")
        host = host or default_host
    try:
        port = int(port_s)
    except ValueError:
        raise UsageError(f"{flag}: bad port in {text!r}; e.g. {flag} 127.0.0.1:5556") from None
    if not 0 <= port <= 65535:
        raise UsageError(f"{flag}: port {port} is out of range (0-65535)")
    return host, port


def parse_size(text: str, flag: str) -> int:
    t = text.strip().lower().replace("_", "")
    mult = 1
    for suffix, m in (("mib", 1 << 20), ("kib", 1 << 10), ("mb", 10**6), ("kb", 10**3), ("m", 1 << 20),
                      ("k", 1 << 10), ("b", 1)):
        if t.endswith(suffix):
            t, mult = t[: -len(suffix)], m
            break
    try:
        value = int(float(t) * mult)
    except ValueError:
        raise UsageError(f"{flag}: bad size {text!r}; e.g. {flag} 16MiB") from None
    if value <= 0:
        raise UsageError(f"{flag}: must be positive; e.g. {flag} 16MiB")
    return value


def add_condition_arguments(p: argparse.ArgumentParser, *, seed: bool = True) -> None:
    """The network-condition flags, shared by ``sockscope-proxy``, ``sockscope`` and ``sockscope run``."""
    g = p.add_argument_group("network conditions (see docs/conditions.md)")
    g.add_argument("--latency", metavar="MS", help="one-way delay: 100 (both ways) or c2s=30,s2c=120")
    g.add_argument("--jitter", metavar="MS[:DIST]",
                   help="extra random delay that never reorders: 20, 20:normal, 20:exponential")
    g.add_argument("--bandwidth", metavar="RATE", help="link rate: 64KB/s, 1MB/s, 500kbit, c2s=64KB/s,s2c=1MB/s")
    g.add_argument("--spike", action="append", metavar="SPEC",
                   help="lag spikes: every=30s,add=800ms,for=2s (periodic) or add=500ms,for=1s (now)")
    g.add_argument("--preset", metavar="NAME", help='a named network profile, e.g. "Mobile 4G" (--list-presets)')
    if seed:
        g.add_argument("--seed", type=int, metavar="N",
                       help="seed the random parts (jitter, loss) to reproduce a run")


def conditions_from_args(args: argparse.Namespace) -> Conditions:
    """The conditions the flags of :func:`add_condition_arguments` ask for; ``UsageError`` names the bad flag."""
    try:
        return conditions_from_cli(args.latency, args.jitter, args.bandwidth, args.spike, args.preset,
                                   now_ns=time.monotonic_ns())
    except ValueError as e:
        raise UsageError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sockscope-proxy",
        description="sockscope's headless proxy: relays TCP between your client and server and prints "
                    "every message.",
        epilog="example: sockscope-proxy --listen 127.0.0.1:5556 --target 127.0.0.1:5555  "
               "(then point your client at port 5556)")
    p.add_argument("--listen", default="127.0.0.1:5556", metavar="HOST:PORT",
                   help="where your client connects (default 127.0.0.1:5556; port 0 picks a free one)")
    p.add_argument("--target", default="127.0.0.1:5555", metavar="HOST:PORT",
                   help="your server (default 127.0.0.1:5555)")
    p.add_argument("--framing", default="raw", metavar="F",
                   help="what one message is: raw (each read), lines, len16/len32[be|le], fixed:N, msgpack, "
                        "json; per direction as c2s=fixed:12,s2c=lines (default raw)")
    p.add_argument("--max-frame", default=str(DEFAULT_MAX_FRAME), metavar="SIZE",
                   help="largest frame before that direction falls back to raw (default 16MiB)")
    p.add_argument("--connect-timeout", type=float, default=5.0, metavar="S",
                   help="seconds to wait for the server per connection (default 5)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow listening on a non-loopback address (reachable from the network)")
    p.add_argument("--quiet", action="store_true", help="do not print messages (connection events still print)")
    add_condition_arguments(p)
    p.add_argument("--list-presets", action="store_true", help="print the presets with their sources and exit")
    p.add_argument("--demo", action="store_true",
                   help="start the tutorial's exercise server and client with the proxy between them")
    p.add_argument("--demo-pings", type=int, default=None, metavar="N",
                   help="with --demo: the client pings N times, then the demo ends (default: until Ctrl+C)")
    p.add_argument("--demo-interval", type=float, default=1.0, metavar="S", help=argparse.SUPPRESS)
    add_control_arguments(p)
    return p


# ------------------------------------------------------------------------------------------ the control endpoint


def add_control_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--control``, ``--token-file``, ``--record``, ``--parent-watch`` (and ``--allow-remote`` if missing)."""
    parser.add_argument("--control", default=None, metavar="HOST:PORT",
                        help="open the control endpoint (for the window or scripts) on HOST:PORT; port 0 picks a "
                             "free one; loopback only unless --allow-remote")
    add_token_arguments(parser, "clients must send (else a random one, printed at start)")
    parser.add_argument("--record", default=None, metavar="FILE",
                        help="append every message and connection event to a session file")
    parser.add_argument("--control-payload-rate", default=None, metavar="RATE",
                        help="payload bytes per second each control subscriber gets in full, e.g. 8MiB/s (the "
                             "default), 0 for no limit; past it big payloads arrive truncated, size kept (held "
                             "messages and --record always keep everything)")
    parser.add_argument("--wait-attach", nargs="?", type=float, const=0.0, default=None, metavar="S",
                        help="with --control: accept game connections only once a control client (the window, a "
                             "script) has attached, so it sees them from their first byte; waiting clients are "
                             "held in the listen queue, nothing is lost. S bounds the wait in seconds (default: "
                             "no bound, as with 0)")
    parser.add_argument("--parent-watch", action="store_true",
                        help="exit when standard input reaches end of file (a parent process that holds the pipe "
                             "went away)")
    if not any("--allow-remote" in a.option_strings for a in parser._actions):
        parser.add_argument("--allow-remote", action="store_true",
                            help="allow listening on a non-loopback address (reachable from the network)")


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
                rate = DEFAULT_PAYLOAD_RATE if rate_text is None else parse_rate(rate_text)
                cs = ControlServer(server, host, port, token=token, payload_rate=rate,
                                   allow_remote=bool(getattr(args, "allow_remote", False)))
            except ValueError as e:
                raise ProxyError(str(e)) from None
            chost, cport = await cs.start()
            started.append(cs)
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


def parse_rate(text: str) -> int:
    """``--control-payload-rate``: ``32MB/s``, ``1GiB/s``, ``0`` or ``unlimited`` (no limit); ValueError if bad."""
    from proxy.conditions import parse_bandwidth

    if text.strip() == "0":
        return 0
    bad = ValueError(f"--control-payload-rate: cannot read {text!r}; e.g. 8MiB/s, 1MB/s, 500kbit, "
                     "or 0 for no limit (one rate: it applies to each subscriber, both directions)")
    try:
        rates = set(parse_bandwidth(text).values())
    except ValueError:
        raise bad from None
    if len(rates) != 1:
        raise bad
    rate = rates.pop()
    return 0 if rate is None else max(1, int(rate))


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
    return ProxyConfig(listen_host, listen_port, target_host, target_port, framing, args.connect_timeout,
                       conditions, args.seed)


async def _serve(args: argparse.Namespace, config: ProxyConfig) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    demo_server: DemoServer | None = None
    if args.demo:
        demo_server = DemoServer().start()
        config.target_host, config.target_port = "127.0.0.1", demo_server.port
        if args.listen == "127.0.0.1:5556":
            config.listen_port = 0  # the demo must not collide with a real game on 5556
    server = ProxyServer(config, loop)
    server.subscribe(Printer(server.clock, show_messages=not args.quiet), messages=not args.quiet)
    wait_attach = getattr(args, "wait_attach", None)
    host, port = await server.start(accept=wait_attach is None)
    from proxy.control.endpoint import ControlServer

    try:
        extras = await start_extras(server, args, stop.set)
    except ProxyError:
        await server.shutdown()
        raise
    say(f"sockscope: listening on {host}:{port} → {config.target_host}:{config.target_port} "
        f"(framing {config.framing})")
    if not config.conditions.is_passthrough:
        say(f"sockscope: conditions {config.conditions.describe()}")
    _install_signal_handlers(loop, stop)
    if wait_attach is not None:
        endpoint = next(e for e in extras if isinstance(e, ControlServer))
        say(f"sockscope: waiting for a control client to attach before accepting connections"
            f"{f' (at most {wait_attach:g} s)' if wait_attach else ''}")
        waiting = asyncio.ensure_future(endpoint.attached.wait())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait([waiting, stopping], timeout=wait_attach or None, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        stopping.cancel()
        if not stop.is_set():
            await server.start_accepting()
    client: DemoClient | None = None
    if demo_server is not None:
        endpoints = [e for e in extras if isinstance(e, ControlServer)]
        if endpoints:
            # The demo's first messages (the welcome and "Ping received!") are the point: when a window is
            # about to attach, let it attach first (bounded, so a demo without a window still runs).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(endpoints[0].attached.wait(), DEMO_ATTACH_WAIT)
        client = DemoClient(host, port, args.demo_pings, args.demo_interval).start()
        loop.run_in_executor(None, client.thread.join).add_done_callback(lambda _: stop.set())
    else:
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
    await server.shutdown()
    await stop_extras(extras)
    if demo_server is not None:
        demo_server.stop()
    return 0 if client is None or client.error is None else 1


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
