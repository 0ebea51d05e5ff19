"""The command-line flag groups shared by ``sockscope-proxy``, ``sockscope`` (the window) and ``sockscope run``.

Role: one definition of each flag (option strings, metavar, default, help text) and of the helpers that turn
flag text into values (addresses, sizes, the control token, network conditions). Each command picks the groups
that apply to it, so a flag means the same thing, reads the same in ``--help`` and fails with the same one-line
message everywhere:

- :func:`add_address_arguments`: ``--listen``, ``--target`` (proxy, window);
- :func:`add_connection_arguments`: ``--connect-timeout``, ``--allow-remote`` (proxy, run);
- :func:`add_framing_arguments`: ``--framing``, ``--max-frame`` (proxy, window, run);
- :func:`add_condition_arguments`: ``--latency``, ``--jitter``, ``--bandwidth``, ``--spike``, ``--preset``,
  ``--loss``, ``--duplicate``, ``--reorder``, ``--corrupt``, ``--mtu``, ``--jitter-reorders``,
  ``--bandwidth-burst``, ``--bandwidth-queue``, ``--seed``, ``--list-presets`` (proxy, window, run);
- :func:`add_transport_arguments`: ``--udp``, ``--udp-only``, ``--udp-idle-timeout``, ``--udp-max-flows``
  (proxy);
- :func:`add_output_arguments`: ``--quiet`` (proxy, run);
- :func:`add_recording_arguments`: ``--record`` (proxy, run);
- :func:`add_control_arguments`: ``--control``, ``--token-file``, ``--control-payload-rate``, ``--wait-attach``
  (proxy, run); the window's ``--attach`` takes ``--token-file`` too (:func:`add_token_arguments`).

(``sockscope run`` has ``--port``/``--listen-port`` instead of ``--listen``/``--target``: the target is the
port the program connects to.) ``tests/test_cli.py`` checks that the three parsers agree.

Errors the user can fix are :class:`UsageError`: one line naming the flag, with an example.
Must not import: Qt, ``inspector``, asyncio or the engine's shell (``proxy.server``, ``proxy.runner``): the
window and ``sockscope run`` parse their flags before anything heavy loads.
Thread: the caller's (the main thread, before the engine starts).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from proxy.framing import DEFAULT_MAX_FRAME
from proxy.model import Direction

if TYPE_CHECKING:
    from proxy.conditions import Conditions

__all__ = [
    "DEFAULT_FRAMING",
    "DEFAULT_LISTEN",
    "DEFAULT_TARGET",
    "TOKEN_ENV",
    "TOKEN_HOW",
    "UsageError",
    "add_address_arguments",
    "add_condition_arguments",
    "add_connection_arguments",
    "add_control_arguments",
    "add_framing_arguments",
    "add_output_arguments",
    "add_recording_arguments",
    "add_token_arguments",
    "add_transport_arguments",
    "conditions_from_args",
    "conditions_from_cli",
    "conditions_given",
    "parse_hostport",
    "parse_payload_rate",
    "parse_size",
    "token_from_args",
    "transports_from_args",
]

DEFAULT_LISTEN = "127.0.0.1:5556"
DEFAULT_TARGET = "127.0.0.1:5555"
DEFAULT_FRAMING = "auto"
"""``--framing`` when none is given: inferred per connection and direction (docs/framing.md)."""


class UsageError(Exception):
    """A bad flag value: printed as one line with the flag and an example."""


# ------------------------------------------------------------------------------------------ values from flag text


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
    """``16MiB``, ``64KB``, ``1000``: a positive number of bytes (``KiB``/``MiB`` are powers of two)."""
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


def conditions_from_cli(
    latency: str | None = None,
    jitter: str | None = None,
    bandwidth: str | None = None,
    spike: str | Sequence[str] | None = None,
    preset: str | None = None,
    *,
    now_ns: int = 0,
    loss: str | None = None,
    duplicate: str | None = None,
    reorder: str | None = None,
    corrupt: str | None = None,
    mtu: str | None = None,
    jitter_reorders: bool = False,
    bandwidth_burst: str | None = None,
    bandwidth_queue: str | None = None,
) -> Conditions:
    """Build start-up conditions from the flags' text: the preset first (if any), then each flag overrides
    only the directions it names; ``--spike`` may be repeated and adds to the preset's spikes.

    ``now_ns`` is the monotonic time the shell starts at, so one-shot spikes begin then. Bad text raises
    :class:`~proxy.conditions.ConditionsError` (a ``ValueError``) naming the flag.
    """
    # imported here, not with this module: the window and ``sockscope run`` parse their flags first, and most
    # starts give no condition at all
    from proxy.conditions import PASSTHROUGH, Conditions, DirectionConditions, parse_bytes, set_from_text
    from proxy.presets import find_preset

    base = PASSTHROUGH if preset is None else find_preset(preset).conditions
    per: dict[Direction, DirectionConditions] = {d: base.for_direction(d) for d in Direction}
    specs = [spike] if isinstance(spike, str) else list(spike or ())
    for name, text in (("latency", latency), ("jitter", jitter), ("bandwidth", bandwidth),
                       *(("spike", spec) for spec in specs), ("loss", loss), ("duplicate", duplicate),
                       ("reorder", reorder), ("corrupt", corrupt), ("mtu", mtu)):
        if text is not None:
            set_from_text(per, name, text, now_ns=now_ns)
    if jitter_reorders:
        per = {d: replace(c, jitter_reorders=True) for d, c in per.items()}
    if bandwidth_burst is not None:
        for d, n in parse_bytes("--bandwidth-burst", bandwidth_burst).items():
            per[d] = replace(per[d], burst_bytes=n)
    if bandwidth_queue is not None:
        for d, n in parse_bytes("--bandwidth-queue", bandwidth_queue).items():
            if n < 1:
                raise UsageError("--bandwidth-queue: must be at least 1 byte; e.g. --bandwidth-queue 64KB")
            per[d] = replace(per[d], queue_bytes=n)
    return Conditions(c2s=per[Direction.C2S], s2c=per[Direction.S2C])


def conditions_from_args(args: argparse.Namespace) -> Conditions:
    """The conditions the flags of :func:`add_condition_arguments` ask for; ``UsageError`` names the bad flag."""
    try:
        return conditions_from_cli(args.latency, args.jitter, args.bandwidth, args.spike, args.preset,
                                   now_ns=time.monotonic_ns(), loss=args.loss, duplicate=args.duplicate,
                                   reorder=args.reorder, corrupt=args.corrupt, mtu=args.mtu,
                                   jitter_reorders=args.jitter_reorders, bandwidth_burst=args.bandwidth_burst,
                                   bandwidth_queue=args.bandwidth_queue)
    except ValueError as e:
        raise UsageError(str(e)) from None


def conditions_given(args: argparse.Namespace) -> bool:
    """Whether any flag of :func:`add_condition_arguments` that shapes traffic was given."""
    return any((args.latency, args.jitter, args.bandwidth, args.spike, args.preset, args.loss, args.duplicate,
                args.reorder, args.corrupt, args.mtu, args.jitter_reorders, args.bandwidth_burst,
                args.bandwidth_queue))


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


def add_token_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, purpose: str) -> None:
    """``--token-file PATH`` (and a ``--token`` that refuses, saying why). ``purpose`` ends the help sentence:
    the proxy's token is the one clients must send, a client's is the one of the proxy it attaches to."""
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


# ------------------------------------------------------------------------------------------ the groups
# Group titles are part of the contract: tests find each command's groups by them.

ADDRESS_GROUP = "addresses"
CONNECTION_GROUP = "connections"
FRAMING_GROUP = "framing"
CONDITIONS_GROUP = "network conditions (see docs/conditions.md)"
OUTPUT_GROUP = "terminal output"
RECORDING_GROUP = "recording (see docs/session-format.md)"
CONTROL_GROUP = "control endpoint (see docs/protocol.md)"


def add_address_arguments(p: argparse.ArgumentParser, *, target_default: str | None = DEFAULT_TARGET) -> None:
    """``--listen`` and ``--target``. The window passes ``target_default=None``: without ``--target`` its start
    page asks (with the same default filled in)."""
    g = p.add_argument_group(ADDRESS_GROUP)
    g.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                   help=f"where your client connects (default {DEFAULT_LISTEN}; port 0 picks a free one)")
    g.add_argument("--target", default=target_default, metavar="HOST:PORT",
                   help=f"your server (default {DEFAULT_TARGET}; the window asks on its start page when this is "
                        "not given)")


def add_connection_arguments(p: argparse.ArgumentParser) -> None:
    """``--connect-timeout`` and ``--allow-remote``."""
    g = p.add_argument_group(CONNECTION_GROUP)
    g.add_argument("--connect-timeout", type=float, default=5.0, metavar="S",
                   help="seconds the proxy waits for the server per connection (default 5)")
    g.add_argument("--allow-remote", action="store_true",
                   help="allow listening on a non-loopback address, reachable from the network (default: "
                        "loopback only)")


def add_framing_arguments(p: argparse.ArgumentParser) -> None:
    """``--framing`` and ``--max-frame`` (turned into a ``FramingSpec`` by ``proxy.framing.parse_framing``)."""
    g = p.add_argument_group(FRAMING_GROUP)
    g.add_argument("--framing", default=DEFAULT_FRAMING, metavar="F",
                   help="what one message is: auto (inferred from the first messages of each connection and "
                        "direction: the default), raw (each read), lines, delim:ESC (a terminator of your own, "
                        r"e.g. delim:EOT\x00), len8, len16/len32/len64[be|le] (a length prefix; add -incl when "
                        "it counts itself), header16json (a 2-byte header length, a JSON header with the body's "
                        "content-length, the body: the Real Python tutorial's format), fixed:N, msgpack, json, "
                        "websocket (the HTTP Upgrade, then one message per frame); per "
                        "direction as c2s=fixed:12,s2c=lines (docs/framing.md)")
    g.add_argument("--max-frame", default=str(DEFAULT_MAX_FRAME), metavar="SIZE",
                   help="largest frame before that direction falls back to raw (default 16MiB)")


def add_condition_arguments(p: argparse.ArgumentParser) -> None:
    """The network-condition flags (:func:`conditions_from_args` reads them) and ``--list-presets``."""
    g = p.add_argument_group(CONDITIONS_GROUP)
    g.add_argument("--latency", metavar="MS", help="one-way delay: 100 (both ways) or c2s=30,s2c=120")
    g.add_argument("--jitter", metavar="MS[:DIST]",
                   help="extra random delay that never reorders: 20, 20:normal, 20:exponential")
    g.add_argument("--bandwidth", metavar="RATE", help="link rate: 64KB/s, 1MB/s, 500kbit, c2s=64KB/s,s2c=1MB/s")
    g.add_argument("--spike", action="append", metavar="SPEC",
                   help="lag spikes: every=30s,add=800ms,for=2s (periodic) or add=500ms,for=1s (now); repeatable")
    g.add_argument("--preset", metavar="NAME", help='a named network profile, e.g. "Mobile 4G" (--list-presets)')
    g.add_argument("--loss", metavar="PCT",
                   help="packet loss: 10, c2s=5,s2c=1, or bursts as netem's gemodel:P:R[:1-H[:1-K]]; UDP datagrams "
                        "are lost, TCP messages are resent (felt as delay)")
    g.add_argument("--duplicate", metavar="PCT[:MS]",
                   help="send this share of messages twice, the copy MS later: 5, 5:20ms")
    g.add_argument("--reorder", metavar="PCT[:GAP]",
                   help="UDP: this share of datagrams skips --latency and overtakes (netem's reorder; GAP: at "
                        "least GAP-1 delayed in between): 25, 25:5")
    g.add_argument("--corrupt", metavar="PCT", help="UDP: flip one random bit in this share of datagrams: 1")
    g.add_argument("--mtu", metavar="BYTES[:ACTION]",
                   help="UDP: drop (or :truncate) datagrams larger than BYTES: 1200, 1200:truncate")
    g.add_argument("--jitter-reorders", action="store_true",
                   help="UDP: let --jitter reorder datagrams (by default jitter keeps their order, as on TCP)")
    g.add_argument("--bandwidth-burst", metavar="SIZE",
                   help="UDP: token bucket depth for --bandwidth: bytes that may leave back to back (default 0)")
    g.add_argument("--bandwidth-queue", metavar="SIZE",
                   help="UDP: bytes that may wait for --bandwidth before tail drop (default one second of the "
                        "rate, at least 64KiB)")
    g.add_argument("--seed", type=int, metavar="N",
                   help="seed the random parts (jitter, loss, duplicate, reorder, corrupt) to reproduce a run")
    g.add_argument("--list-presets", action="store_true", help="print the presets with their sources and exit")


TRANSPORT_GROUP = "transports (see docs/udp.md)"


def add_transport_arguments(p: argparse.ArgumentParser) -> None:
    """``--udp``, ``--udp-only``, ``--udp-idle-timeout``, ``--udp-max-flows`` (:func:`transports_from_args`)."""
    g = p.add_argument_group(TRANSPORT_GROUP)
    g.add_argument("--udp", action="store_true",
                   help="relay UDP too, on the same port number: one flow per client address, a datagram is a "
                        "message")
    g.add_argument("--udp-only", action="store_true", help="relay UDP only (no TCP listener)")
    g.add_argument("--udp-idle-timeout", type=float, default=60.0, metavar="S",
                   help="a UDP flow ends after S seconds without a datagram either way (default 60)")
    g.add_argument("--udp-max-flows", type=int, default=4096, metavar="N",
                   help="UDP flows open at once; datagrams from more client addresses are dropped and counted "
                        "(default 4096)")


def transports_from_args(args: argparse.Namespace) -> tuple[bool, bool]:
    """``(tcp, udp)`` from :func:`add_transport_arguments`'s flags; ``UsageError`` for bad values."""
    udp_only = bool(getattr(args, "udp_only", False))
    udp = udp_only or bool(getattr(args, "udp", False))
    if udp:
        if not args.udp_idle_timeout > 0:
            raise UsageError(f"--udp-idle-timeout: must be above 0 seconds, got {args.udp_idle_timeout:g}; "
                             "e.g. --udp-idle-timeout 60")
        if args.udp_max_flows < 1:
            raise UsageError(f"--udp-max-flows: must be at least 1, got {args.udp_max_flows}; "
                             "e.g. --udp-max-flows 4096")
    return not udp_only, udp


def add_output_arguments(p: argparse.ArgumentParser) -> None:
    """``--quiet``."""
    g = p.add_argument_group(OUTPUT_GROUP)
    g.add_argument("--quiet", action="store_true", help="do not print messages (connection events still print)")


def add_recording_arguments(p: argparse.ArgumentParser) -> None:
    """``--record FILE``."""
    g = p.add_argument_group(RECORDING_GROUP)
    g.add_argument("--record", default=None, metavar="FILE",
                   help="append every message and connection event to a session file")


def add_control_arguments(p: argparse.ArgumentParser) -> None:
    """``--control``, ``--token-file`` (and the refusing ``--token``), ``--control-payload-rate``,
    ``--wait-attach``. ``--allow-remote`` (in :func:`add_connection_arguments`) also opens ``--control`` up."""
    g = p.add_argument_group(CONTROL_GROUP)
    g.add_argument("--control", default=None, metavar="HOST:PORT",
                   help="open the control endpoint (for the window or scripts) on HOST:PORT; port 0 picks a "
                        "free one; loopback only unless --allow-remote")
    add_token_arguments(g, "clients must send (else a random one, printed at start)")
    g.add_argument("--control-payload-rate", default=None, metavar="RATE",
                   help="payload bytes per second each control subscriber gets in full, e.g. 8MiB/s (the "
                        "default), 0 for no limit; past it big payloads arrive truncated, size kept (held "
                        "messages and --record always keep everything)")
    g.add_argument("--wait-attach", nargs="?", type=float, const=0.0, default=None, metavar="S",
                   help="with --control: let game traffic through only once a control client (the window, a "
                        "script) has attached, so it sees every connection from its first byte (sockscope-proxy "
                        "holds new connections in the listen queue, sockscope run starts the program then); "
                        "nothing is lost. S bounds the wait in seconds (default: no bound, as with 0)")


def add_addon_arguments(p: argparse.ArgumentParser) -> None:
    """``-s FILE``: addons (docs/addons.md), for sockscope-proxy and the window (which passes them to its proxy)."""
    g = p.add_argument_group("addons (docs/addons.md)")
    g.add_argument("-s", "--script", action="append", default=[], metavar="FILE", dest="scripts",
                   help="load an addon: a Python file whose hooks see, change, drop, delay or inject messages "
                        "(repeat for several; a file is loaded again when it changes)")


def add_engine_arguments(p: argparse.ArgumentParser) -> None:
    """Every flag of the proxy engine that sockscope-proxy and sockscope run share, in their help's order:
    connections, framing, conditions, output, recording, control."""
    add_connection_arguments(p)
    add_framing_arguments(p)
    add_condition_arguments(p)
    add_output_arguments(p)
    add_recording_arguments(p)
    add_control_arguments(p)


def parse_payload_rate(text: str) -> int:
    """``--control-payload-rate``: ``32MB/s``, ``1GiB/s``, ``0`` or ``unlimited`` (0: no limit); ``UsageError``."""
    if text.strip() == "0":
        return 0
    bad = UsageError(f"--control-payload-rate: cannot read {text!r}; e.g. 8MiB/s, 1MB/s, 500kbit, "
                     "or 0 for no limit (one rate: it applies to each subscriber, both directions)")
    from proxy.conditions import parse_bandwidth

    try:
        rates = set(parse_bandwidth(text).values())
    except ValueError:
        raise bad from None
    if len(rates) != 1:
        raise bad
    rate = rates.pop()
    return 0 if rate is None else max(1, int(rate))
