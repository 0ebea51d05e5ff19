"""``sockscope run [--port 5555 ...] [proxy flags] -- python my_game.py [args]``: watch a Python program's traffic
without editing it.

Role: start one in-process proxy (``proxy.runner.ProxyThread``) per redirected port, each listening on a free
loopback port, TCP and UDP (the same port number), and targeting ``127.0.0.1:PORT`` (the original destination),
with the terminal printer
subscribed; then run the program as a child process whose Python start-up hook (``inspector/_hook/``, put first
on its ``PYTHONPATH``) sends its connects to those ports through the proxies (see ``docs/run.md``). The child's
stdin/stdout/stderr are inherited untouched; sockscope's own lines go to stderr so the program's stdout stays
exactly what it would be without sockscope. The proxy's flags are the proxy's own (``proxy.options``): framing
(``auto`` by default) and conditions apply to every proxy; with one ``--port``, ``--record`` records the session
and ``--control`` opens the control endpoint and prints the command that attaches the window to it
(``--wait-attach``: the program starts once a client attached). Messages are printed decoded
(``inspector.summary``, run on the terminal's writer thread, never on a proxy's).

The program's own source files are read once at start, on a thread of their own (``inspector.layouts``: ``ast``
only, never imported or run), for the struct layouts it packs and unpacks: when a connection carries fixed-size
records, the terminal offers the layouts that fit them in one line, and decodes them with the one that does when
there is a single one (else a guess from their bytes is offered, and only offered).

``--window`` opens the window on the program's traffic: it attaches to this run's proxy over the control
protocol (a control endpoint on loopback with a fresh token, unless ``--control`` names one), gets the source's
layouts, and the program starts once it has attached. The window then lives on the main thread until it is
closed; the program's end does not close it.

``--any-address`` also captures connections to a ``--port`` on addresses that are not loopback (a hard-coded LAN
address): the hook asks :class:`TargetBroker`, a small loopback server of this process, which points that port's
proxy at the address the program asked for (one such address per port and run) and answers with the proxy's
address.

Exit status: the child's (128+N if it died of signal N), or 2 for a usage error or a program that cannot be
hooked.
Must not import at module level: Qt (PySide6), the window (``inspector.app``, ``inspector.ui``): it is a terminal
command; ``--window`` uses the window's entry point that ``inspector.app`` hands to :func:`main`.
Thread: the main thread waits for the child (with ``--window``, it runs the window, and a thread of ours starts and
waits for the child); each proxy's engine runs on its own thread, where the printer is
called (it only queues lines: the terminal's writer thread makes them); :class:`TargetBroker` answers on a thread
of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hmac
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TextIO

from inspector.layouts import SourceScan
from inspector.summary import make_summariser
from proxy.conditions import Conditions
from proxy.framing import FramingError, FramingSpec, parse_framing
from proxy.options import (
    UsageError,
    add_engine_arguments,
    conditions_from_args,
    parse_hostport,
    parse_payload_rate,
    parse_size,
    token_from_args,
)
from proxy.printer import Printer, close_terminals, terminal
from proxy.runner import ProxyThread
from proxy.server import ProxyConfig, ProxyError

HOOK_DIR = Path(__file__).resolve().parent / "_hook"
REDIRECT_ENV = "SOCKSCOPE_REDIRECT"
REDIRECT_UDP_ENV = "SOCKSCOPE_REDIRECT_UDP"
UDP_TWIN_ATTEMPTS = 5
"""Free TCP ports tried for a proxy whose UDP twin port is taken."""
ANY_ADDRESS_ENV = "SOCKSCOPE_ANY_ADDRESS"
PROXY_HOST = "127.0.0.1"
TARGET_HOST = "127.0.0.1"

NON_PYTHON_HELP = """\
sockscope run: {program!r} is not a Python program, so sockscope cannot redirect its connections.
sockscope run works by adding a start-up hook to the Python interpreter; other programs need the port-change
route instead. Start the proxy on its own:

    sockscope-proxy --listen 127.0.0.1:{listen} --target 127.0.0.1:{port}

then change {port} to {listen} in your client (only in the client: the server keeps listening on {port}).
If this command does start Python (a wrapper such as `uv run` or `poetry run`), add --assume-python."""

ISOLATED_HELP = """\
sockscope run: `{flag}` makes Python skip PYTHONPATH or site start-up, so sockscope's hook cannot load and
nothing would be redirected. Run the program without {flag}, or use the port-change route
(sockscope-proxy --listen 127.0.0.1:5556 --target 127.0.0.1:5555, then connect your client to 5556)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sockscope run",
        usage="sockscope run [--port 5555 ...] [options] -- python my_game.py [args]",
        description="Run a Python program with its connections to PORT sent through sockscope's proxy, which "
                    "prints every message (on stderr: the program's own output is unchanged). No code changes: "
                    "the program still connects to PORT. See docs/run.md.",
        epilog="example: sockscope run --port 5555 --latency 150 -- python my_game.py")
    g = p.add_argument_group("ports")
    g.add_argument("--port", type=int, action="append", metavar="PORT",
                   help="a loopback port whose connections go through the proxy (repeatable; default 5555)")
    g.add_argument("--listen-port", type=int, default=0, metavar="PORT",
                   help="where the proxy listens (default 0: a free port; only with one --port)")
    g.add_argument("--any-address", action="store_true",
                   help="also capture connections to each --port on addresses that are not loopback, such as a "
                        "hard-coded LAN address (192.168.1.20:5555); the proxy then connects to the address the "
                        "program asked for (one such address per port)")
    g.add_argument("--assume-python", action="store_true",
                   help="treat the command as Python even if it does not look like it (e.g. `uv run`)")
    add_engine_arguments(p)
    g = p.add_argument_group("window")
    g.add_argument("--window", action="store_true",
                   help="open the window on the program's traffic (it attaches to this run's proxy, over a control "
                        "endpoint on loopback unless --control names one; one --port only); the program starts "
                        "once the window is attached, and the window stays open after it ends")
    return p


# ------------------------------------------------------------------------------------------ the command


def split_command(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``[our flags] -- program args`` -> (our flags, program argv); raises UsageError without ``--``."""
    args = list(argv)
    if "--" not in args:
        raise UsageError("put the program after `--`, e.g. sockscope run --port 5555 -- python my_game.py")
    i = args.index("--")
    if i + 1 >= len(args):
        raise UsageError("no program after `--`, e.g. sockscope run --port 5555 -- python my_game.py")
    return args[:i], args[i + 1:]


def _is_python_name(path: str) -> bool:
    name = re.split(r"[\\/]", path)[-1].lower()  # either separator: a Windows path is still a Windows path
    for ext in (".exe", ".bat", ".cmd"):
        name = name.removesuffix(ext)
    # python, python3, python3.12, pythonw, python3.12-dbg, pypy3, and the Windows launcher py
    return name.startswith(("python", "pypy")) or name == "py"


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _shebang(path: str) -> str:
    try:
        with open(path, "rb") as f:
            first = f.readline(256)
    except OSError:
        return ""
    return first[2:].decode("utf-8", "replace").strip() if first.startswith(b"#!") else ""


def resolve_python_command(command: Sequence[str]) -> list[str] | None:
    """The command to run if it starts a Python interpreter, else None.

    A bare script (``my_game.py``) is run with this interpreter, since Windows cannot start a ``.py`` directly.
    """
    program = command[0]
    found = shutil.which(program) or (program if os.path.isfile(program) else None)
    if _is_python_name(program) or (found is not None and sys.executable and _same_file(found, sys.executable)):
        return list(command)
    if found is not None and "python" in _shebang(found).lower():
        return list(command)
    if program.lower().endswith((".py", ".pyw")) and os.path.isfile(program):
        return [sys.executable, *command]
    return None


def isolating_flag(command: Sequence[str]) -> str | None:
    """``-S``, ``-E`` or ``-I`` among the interpreter's own options (they stop the hook loading), if any."""
    i = 1
    while i < len(command):
        arg = command[i]
        if arg in ("-", "--") or not arg.startswith("-") or arg.startswith("--"):
            return None
        letters = arg[1:]
        for j, ch in enumerate(letters):
            if ch in "SEI":
                return f"-{ch}"
            if ch in "cm":  # -c CODE / -m MODULE: what follows is the program's, not the interpreter's
                return None
            if ch in "WX":  # -W arg / -X opt: the rest of this word, or the next word, is the argument
                if j == len(letters) - 1:
                    i += 1
                break
        i += 1
    return None


def redirect_env(redirects: dict[int, tuple[str, int]], base: dict[str, str] | None = None,
                 any_address: str | None = None) -> dict[str, str]:
    """The child's environment: the hook first on PYTHONPATH, the port -> proxy mapping, and with
    ``--any-address`` where the hook asks about other addresses (:meth:`TargetBroker.env_value`)."""
    env = dict(os.environ if base is None else base)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(HOOK_DIR) + (os.pathsep + old if old else "")
    env[REDIRECT_ENV] = ",".join(f"{port}={host}:{pport}" for port, (host, pport) in sorted(redirects.items()))
    env[REDIRECT_UDP_ENV] = "1"  # the proxies relay UDP on the same port numbers
    env.pop(ANY_ADDRESS_ENV, None)
    if any_address is not None:
        env[ANY_ADDRESS_ENV] = any_address
    return env


# ------------------------------------------------------------------------------------------ --any-address

_HOST_CHARS = re.compile(r"[A-Za-z0-9._:%-]{1,253}")


def _shown(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class TargetBroker:
    """``--any-address``: decides, for the hook, whether a connect to ``HOST:PORT`` on an address that is not
    loopback goes through the proxy of ``PORT``, and points that proxy at ``HOST`` (the address the program asked
    for) before answering, so the connection the hook then makes reaches that address.

    One line per question on a loopback TCP connection: ``TOKEN PORT HOST`` -> ``OK PROXY_HOST PROXY_PORT`` or
    ``NO``. The token (random, in the child's environment only) keeps other local programs from re-pointing the
    proxy. Each port's proxy targets one address per run: the first non-loopback address the program connects to
    (loopback connects to that port then reach it too: a server that listens on every address answers on both);
    a second, different one goes straight through, and a line says so.
    """

    def __init__(self, proxies: dict[int, ProxyThread], say: Callable[[str], None]) -> None:
        self.proxies = proxies
        self.say = say
        self.token = secrets.token_urlsafe(18)
        self._targets: dict[int, str] = {}
        self._refused: set[tuple[str, int]] = set()
        self._sock = socket.create_server((PROXY_HOST, 0))
        self.address: tuple[str, int] = self._sock.getsockname()[:2]
        self._thread = threading.Thread(target=self._serve, name="sockscope-any-address", daemon=True)

    def start(self) -> TargetBroker:
        self._thread.start()
        return self

    def env_value(self) -> str:
        return f"{self.token}@{self.address[0]}:{self.address[1]}"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
        self._thread.join(5.0)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            with conn:
                try:
                    conn.settimeout(2.0)
                    line = b""
                    while not line.endswith(b"\n") and len(line) < 600:
                        chunk = conn.recv(600)
                        if not chunk:
                            break
                        line += chunk
                    reply = self.answer(line.decode("utf-8", "replace"))
                    conn.sendall(reply.encode("ascii"))
                except OSError:
                    continue  # the asker went away (its connect goes straight through)

    def answer(self, line: str) -> str:
        """The reply to one question (see the class); re-points a proxy the first time a port is asked about."""
        words = line.split()
        if len(words) != 3 or not hmac.compare_digest(words[0].encode(), self.token.encode()):
            return "NO\n"
        port_text, host = words[1], words[2].lower()
        p = self.proxies.get(int(port_text)) if port_text.isdigit() else None
        if p is None or not _HOST_CHARS.fullmatch(host):
            return "NO\n"
        port = p.config.target_port
        decided = self._targets.get(port)
        if decided is None:
            p.call(_retarget, p.server.config, host)
            self._targets[port] = host
            self.say(f"sockscope: the program connects to {_shown(host, port)}: the proxy of port {port} now targets "
                     "that address (--any-address)")
        elif decided != host:
            if (host, port) not in self._refused:
                self._refused.add((host, port))
                self.say(f"sockscope: the program connects to {_shown(host, port)} too: that connection goes "
                         f"straight through, not through sockscope, because port {port} already goes to {decided} "
                         "in this run (one address per port)")
            return "NO\n"
        return f"OK {PROXY_HOST} {p.port}\n"


def _retarget(config: ProxyConfig, host: str) -> None:
    """On the engine's thread: connections accepted from now on connect to ``host`` (the engine reads its config's
    target for each new connection)."""
    config.target_host = host


# ------------------------------------------------------------------------------------------ the proxies


def start_proxies(ports: Sequence[int], listen_port: int, framing: FramingSpec, conditions: Conditions,
                  connect_timeout: float, seed: int | None, quiet: bool, out: TextIO,
                  scan: SourceScan | None = None) -> list[ProxyThread]:
    """One running proxy per port; on failure the ones already started are stopped and the error re-raised.
    ``scan``: the program's source layouts, which the terminal offers for fixed-size records."""
    summariser = make_summariser if scan is None else functools.partial(make_summariser, scan)
    proxies: list[ProxyThread] = []
    try:
        for port in ports:
            # TCP and UDP on one port number, so the hook sends both to the same address (docs/run.md). A free TCP
            # port may have its UDP twin taken: another pick then (a port asked for with --listen-port is not
            # changed).
            for attempt in range(UDP_TWIN_ATTEMPTS):
                config = ProxyConfig(PROXY_HOST, listen_port, TARGET_HOST, port, framing, connect_timeout,
                                     conditions, seed, udp=True)
                p = ProxyThread(config)
                # Subscribed before the engine starts, so this runs on our thread before any record exists. The
                # summariser is this package's own (no entry point to look up); it is made and run on the
                # terminal's writer thread.
                p.server.subscribe(Printer(p.server.clock, out, show_messages=not quiet,
                                           prefix=f"[{port}] " if len(ports) > 1 else "", summariser=summariser),
                                   messages=not quiet)
                try:
                    proxies.append(p.start())
                except ProxyError as e:
                    if listen_port or "UDP port" not in str(e) or attempt == UDP_TWIN_ATTEMPTS - 1:
                        raise
                    continue
                break
    except BaseException:
        stop_proxies(proxies)
        raise
    return proxies


def stop_proxies(proxies: Sequence[ProxyThread], extras: Sequence[object] = ()) -> None:
    """Stop the proxies; ``extras`` (of :func:`start_extras`, on ``proxies[0]``) close once its connections
    are flushed, so the recording and the control clients see the last records."""
    if extras and proxies:
        p = proxies[0]

        async def shutdown_then_close() -> None:
            await p.server.shutdown()
            await close_extras(extras)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown_then_close(), p.loop).result(15.0)
    for p in proxies:
        with contextlib.suppress(Exception):
            p.stop()


def start_extras(p: ProxyThread, args: argparse.Namespace, out: TextIO, *, announce: bool = True) -> list[Any]:
    """What ``--record`` and ``--control`` ask for, on the proxy ``p`` (running); lines go to ``out`` (stderr),
    never to stdout, which is the program's (``announce`` False: not the control endpoint's, which ``--window``
    opened for itself). Returns the objects for :func:`close_extras`. ``UsageError`` for a
    bad value, ``ProxyError`` when the file or the endpoint cannot be opened; nothing stays open then."""
    started: list[Any] = []
    try:
        if args.record:
            from proxy.recorder import Recorder

            try:
                started.append(p.call(Recorder, args.record, p.server))
            except OSError as e:
                raise ProxyError(f"--record {args.record}: cannot create the file: {e.strerror or e}") from None
            print(f"sockscope: recording to {args.record}", file=out, flush=True)
        if args.control:
            host, port = parse_hostport(args.control, "--control")
            token, source = token_from_args(args)
            rate = None if args.control_payload_rate is None else parse_payload_rate(args.control_payload_rate)
            cs = asyncio.run_coroutine_threadsafe(
                _open_control(p, host, port, token, rate, args.allow_remote), p.loop).result(10.0)
            started.append(cs)
            chost, cport = cs.address
            shown = f"[{chost}]" if ":" in chost else chost
            if not announce:
                return started
            # A generated token is shown here, on the terminal (never on a command line); one the user gave is not.
            print(f"sockscope: control on {shown}:{cport} "
                  + (f"(token from {source})" if token else f"token {cs.token}"), file=out, flush=True)
            print(f"sockscope: to watch and shape this traffic in the window, run in another terminal: "
                  f"{attach_command(f'{shown}:{cport}', None if token else cs.token, args.token_file)}",
                  file=out, flush=True)
    except BaseException:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close_extras(started), p.loop).result(10.0)
        raise
    return started


def attach_command(address: str, token: str | None, token_file: str | None) -> str:
    """The command that attaches the window to a control endpoint: with the token it printed (``token``), or
    the one the user chose (from a file, or ``$SOCKSCOPE_TOKEN``, which the command then needs as well)."""
    if token_file:
        return f"sockscope --attach {address} --token-file {token_file}"
    if token is None:
        return f"(with the same SOCKSCOPE_TOKEN) sockscope --attach {address}"
    if sys.platform == "win32":  # PowerShell, the default Windows terminal's shell
        return f'$env:SOCKSCOPE_TOKEN="{token}"; sockscope --attach {address}'
    return f"SOCKSCOPE_TOKEN={token} sockscope --attach {address}"


async def _open_control(p: ProxyThread, host: str, port: int, token: str | None, rate: int | None,
                        allow_remote: bool) -> Any:
    from proxy.control.endpoint import ControlServer

    kw: dict[str, Any] = {} if rate is None else {"payload_rate": rate}
    try:
        cs = ControlServer(p.server, host, port, token=token, allow_remote=allow_remote, **kw)
    except ValueError as e:
        raise UsageError(str(e)) from None
    await cs.start()
    return cs


async def close_extras(started: Sequence[Any]) -> None:
    """Close what :func:`start_extras` opened, newest first (on the proxy's loop)."""
    for obj in reversed(started):
        close = obj.close()
        if asyncio.iscoroutine(close):
            await close


def wait_for_attach(p: ProxyThread, endpoint: Any, bound: float, out: TextIO) -> None:
    """``--wait-attach``: block until a control client has attached to ``endpoint`` (at most ``bound`` seconds
    when it is positive); the program starts after that, so the client sees its connections from their first
    byte."""
    print("sockscope: waiting for a control client to attach before starting the program"
          + (f" (at most {bound:g} s)" if bound else ""), file=out, flush=True)

    async def attached() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(endpoint.attached.wait(), bound or None)

    fut = asyncio.run_coroutine_threadsafe(attached(), p.loop)
    try:
        fut.result()
    finally:
        fut.cancel()


# ------------------------------------------------------------------------------------------ the child


def wait_child(proc: subprocess.Popen[bytes]) -> int:
    """Wait for the child, letting it handle Ctrl+C itself (the terminal sends it to both of us).

    A second Ctrl+C terminates it, a third kills it; SIGTERM to sockscope is passed on.
    """
    def forward_term(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(OSError):
            proc.terminate()

    previous = None
    with contextlib.suppress(ValueError, OSError, AttributeError):  # not the main thread, or no SIGTERM
        previous = signal.signal(signal.SIGTERM, forward_term)
    interrupts = 0
    try:
        while True:
            try:
                rc = proc.wait()
                break
            except KeyboardInterrupt:
                interrupts += 1
                with contextlib.suppress(OSError):
                    if interrupts == 2:
                        proc.terminate()
                    elif interrupts >= 3:
                        proc.kill()
    finally:
        if previous is not None:
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signal.SIGTERM, previous)
    return 128 - rc if rc < 0 else rc  # killed by signal N: report 128+N like a shell


def _config(args: argparse.Namespace, ports: list[int]) -> tuple[FramingSpec, Conditions]:
    for port in ports:
        if not 0 < port < 65536:
            raise UsageError(f"--port {port} is out of range (1-65535)")
    if len(set(ports)) != len(ports):
        raise UsageError("--port: each port once")
    if not 0 <= args.listen_port < 65536:
        raise UsageError(f"--listen-port {args.listen_port} is out of range (0-65535)")
    if args.listen_port and len(ports) > 1:
        raise UsageError("--listen-port works with one --port only (with several, each proxy picks a free port)")
    if args.listen_port in ports:
        raise UsageError(f"--listen-port {args.listen_port} is the port being redirected; pick another or 0")
    if args.connect_timeout <= 0:
        raise UsageError("--connect-timeout must be positive; e.g. --connect-timeout 5")
    if args.window and len(ports) > 1:
        raise UsageError("--window works with one --port only (the window watches one proxy)")
    for flag, value in (("--record", args.record), ("--control", args.control)):
        if value and len(ports) > 1:
            raise UsageError(f"{flag} works with one --port only (one proxy, one session)")
    if args.wait_attach is not None and (not args.control or args.wait_attach < 0):
        raise UsageError("--wait-attach needs --control (something must be able to attach), and a wait of "
                         "0 or more seconds")
    if args.control:
        parse_hostport(args.control, "--control")
        token_from_args(args)  # a bad --token-file is a usage error before anything starts
        if args.control_payload_rate is not None:
            parse_payload_rate(args.control_payload_rate)
    try:
        framing = parse_framing(args.framing, parse_size(args.max_frame, "--max-frame"))
    except FramingError as e:
        raise UsageError(f"--framing: {e}") from None
    return framing, conditions_from_args(args)


class WindowOpener(Protocol):
    """What ``--window`` needs of the window's entry point (``inspector.app``, which calls :func:`main` and hands
    itself in: this module never imports it, so the two cannot form an import cycle)."""

    def missing_x11_libraries(self) -> list[str]: ...

    def run_attached_window(self, attach: tuple[str, int, str], *, source_layouts: Sequence[object] = ()) -> int: ...


def main(argv: list[str], window: WindowOpener | None = None) -> int:
    """``sockscope run`` (``argv`` without the ``run``): returns the exit status. ``window``: how ``--window``
    opens the window (None: ``--window`` is refused with a one-line error)."""
    from proxy.cli import console_safe

    console_safe()
    err = sys.stderr
    parser = build_parser()
    if "--" not in argv:
        # --help and --list-presets need no program; anything else does.
        ours, rest = parser.parse_known_args(argv)
        if ours.list_presets and not rest:
            from proxy.presets import list_presets_text

            print(list_presets_text())
            return 0
    try:
        ours_argv, command = split_command(argv)
    except UsageError as e:
        print(f"{parser.format_usage().rstrip()}\nsockscope run: error: {e}\n(sockscope run --help lists every "
              "flag; see docs/run.md)", file=err)
        return 2
    args = parser.parse_args(ours_argv)
    if args.list_presets:
        from proxy.presets import list_presets_text

        print(list_presets_text())
        return 0
    ports: list[int] = args.port or [5555]
    announce = True
    if args.window and not args.control:
        args.control = f"{PROXY_HOST}:0"  # the window's own endpoint: loopback, a fresh token
        announce = False
    try:
        framing, conditions = _config(args, ports)
    except UsageError as e:
        print(f"sockscope run: error: {e}", file=err)
        return 2
    resolved = list(command) if args.assume_python else resolve_python_command(command)
    if resolved is None:
        if shutil.which(command[0]) is None and not os.path.exists(command[0]):
            print(f"sockscope run: error: cannot find the program {command[0]!r}", file=err)
        else:
            print(NON_PYTHON_HELP.format(program=command[0], port=ports[0], listen=ports[0] + 1), file=err)
        return 2
    flag = isolating_flag(resolved)
    if flag is not None:
        print(ISOLATED_HELP.format(flag=flag), file=err)
        return 2

    if args.window:
        if window is None:
            print("sockscope run: --window is available through the sockscope command", file=err)
            return 2
        missing = window.missing_x11_libraries()
        if missing:
            print("sockscope run: --window needs system libraries that are not installed: " + " ".join(missing)
                  + f"\n  on Debian/Ubuntu: sudo apt-get install {' '.join(missing)}"
                  + "\n  or run without --window (the terminal shows the traffic)", file=err)
            return 2
    scan = SourceScan(resolved).start()  # the program's struct layouts, read while everything starts
    try:
        proxies = start_proxies(ports, args.listen_port, framing, conditions, args.connect_timeout, args.seed,
                                args.quiet, err, scan)
    except ProxyError as e:
        print(f"sockscope run: error: {e}", file=err)
        return 2
    extras: list[Any] = []
    broker: TargetBroker | None = None
    try:
        try:
            extras = start_extras(proxies[0], args, err, announce=announce)
        except (UsageError, ProxyError) as e:
            print(f"sockscope run: error: {e}", file=err)
            return 2
        redirects = {port: (PROXY_HOST, p.port) for port, p in zip(ports, proxies, strict=True)}
        for port, (host, pport) in redirects.items():
            print(f"sockscope: connections to localhost:{port} go through {host}:{pport} → {TARGET_HOST}:{port} "
                  f"(framing {framing})", file=err, flush=True)
        if args.any_address:
            broker = TargetBroker(dict(zip(ports, proxies, strict=True)), terminal(err).line).start()
            print(f"sockscope: connections to port{'s' if len(ports) > 1 else ''} {', '.join(map(str, ports))} on "
                  "any other address go through it too; the proxy then connects to the address the program asked "
                  "for (--any-address)", file=err, flush=True)
        if not conditions.is_passthrough:
            print(f"sockscope: conditions {conditions.describe()}", file=err, flush=True)
        env = redirect_env(redirects, any_address=None if broker is None else broker.env_value())
        if args.window:
            assert window is not None  # checked above, before anything started
            return run_with_window(window, proxies[0], extras[-1], scan, resolved, env, args.wait_attach, err)
        if args.wait_attach is not None:
            try:
                wait_for_attach(proxies[0], extras[-1], args.wait_attach, err)
            except KeyboardInterrupt:
                return 130
        try:
            proc = subprocess.Popen(resolved, env=env)
        except OSError as e:
            print(f"sockscope run: error: cannot start {resolved[0]!r}: {e.strerror or e}", file=err)
            return 2
        rc = wait_child(proc)
    finally:
        if broker is not None:
            broker.close()
        # A short program may end before its source is read: the last offers of layouts (made as connections
        # close, when the proxies stop) wait for the scan, so let it finish first (it is bounded).
        scan.wait(SCAN_EXIT_WAIT)
        # The child has exited, so its sockets are closed: stopping flushes what the proxies still hold.
        stop_proxies(proxies, extras)
        close_terminals()  # the printer's last lines, waiting a short bound at most
    return rc


# ------------------------------------------------------------------------------------------ --window

SCAN_EXIT_WAIT = 5.0
"""Seconds sockscope run waits at exit for the scan of the program's source, if it is still running."""
WINDOW_ATTACH_WAIT = 20.0
"""Seconds the program waits for the window to attach (``--wait-attach S`` sets it); past that it starts
anyway, and the window shows what comes after it attached."""
WINDOW_SCAN_WAIT = 3.0
"""Seconds the window waits for the source scan before it opens (without the layouts the scan finds later)."""


def run_with_window(app: WindowOpener, p: ProxyThread, endpoint: Any, scan: SourceScan, command: list[str],
                    env: dict[str, str], attach_wait: float | None, out: TextIO) -> int:
    """``--window``: open the window attached to ``endpoint`` (the run's control endpoint) with the source's
    layouts, start the program once it has attached (on a thread of ours, which then waits for it), and return
    the program's exit status once the window is closed and the program has ended."""

    host, port = endpoint.address
    box: list[subprocess.Popen[bytes] | str] = []
    ready = threading.Event()
    closed = threading.Event()
    bound = WINDOW_ATTACH_WAIT if not attach_wait else attach_wait

    def start_program() -> None:
        try:
            run_program()
        finally:
            ready.set()  # whatever happened, the main thread goes on

    def run_program() -> None:
        async def attached() -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(endpoint.attached.wait(), bound)

        with contextlib.suppress(Exception):  # the proxy stopping under us: start the program anyway
            asyncio.run_coroutine_threadsafe(attached(), p.loop).result(bound + 5.0)
        if not endpoint.attached.is_set():
            terminal(out).line(f"sockscope: the window did not attach within {bound:g} s; starting the program "
                               "anyway")
        try:
            proc = subprocess.Popen(command, env=env)
        except OSError as e:
            box.append(f"cannot start {command[0]!r}: {e.strerror or e}")
            return
        box.append(proc)
        ready.set()
        rc = proc.wait()
        rc = 128 - rc if rc < 0 else rc
        if not closed.is_set():
            terminal(out).line(f"sockscope: the program exited with status {rc}; the window stays open until you "
                               "close it")

    print(f"sockscope: opening the window on {host}:{port}; the program starts once it is attached", file=out,
          flush=True)
    starter = threading.Thread(target=start_program, name="sockscope-run-program", daemon=True)
    starter.start()
    try:
        app.run_attached_window((host, port, endpoint.token), source_layouts=scan.wait(WINDOW_SCAN_WAIT))
    except Exception as e:  # the program may be running: the terminal goes on showing its traffic
        terminal(out).line(f"sockscope run: the window failed: {type(e).__name__}: {e}")
    closed.set()
    ready.wait()
    what = box[0] if box else "the program could not be started"
    if isinstance(what, str):
        print(f"sockscope run: error: {what}", file=out)
        return 2
    if what.poll() is None:
        terminal(out).line("sockscope: the window is closed; the program goes on (Ctrl+C stops it)")
    return wait_child(what)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
