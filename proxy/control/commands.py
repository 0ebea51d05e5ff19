"""The control protocol's commands: one table from wire name to argument checks to engine call.

Role: :data:`COMMANDS` maps every command a client may send (docs/protocol.md lists exactly these; a test checks)
to a :class:`Command`: ``run``, a plain function of ``(server, args)`` that checks its arguments and calls the
engine, and, for a command that changes state every client shows, ``announce``, which builds the event the
endpoint then sends to every client (``conditions_changed``, ``rules_changed``, ...). A client's ``type`` reaches
code only through this table. A bad argument raises :class:`CommandError` (a ``ValueError``); the endpoint sends
its text back in the reply, prefixed with the command's name. A result may be awaitable (``replay``): the reply
waits for it.

The argument checks are :mod:`proxy.codec`'s field checks (the same ones that check records read from files).
Must not import: Qt, ``inspector``.
Thread: the engine's event-loop thread (the endpoint calls ``run`` there).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from proxy.codec import (
    bytes_field,
    direction_field,
    framing_to_dict,
    int_field,
    number_field,
    opt_int_field,
    opt_number_field,
    shown,
)
from proxy.conditions import Conditions
from proxy.framing import normalise_name, parse_framing
from proxy.model import Origin
from proxy.presets import find_preset
from proxy.rules import Rule
from proxy.server import REPLAY_MODES, ProxyServer

__all__ = ["COMMANDS", "Command", "CommandError"]

Args = Mapping[str, Any]


class CommandError(ValueError):
    """A command's arguments are wrong; the message is sent back as the reply's ``error``."""


@dataclass(frozen=True, slots=True)
class Command:
    run: Callable[[ProxyServer, Args], object]
    """Check the arguments, call the engine, return the reply's result (plain msgpack values, or an awaitable)."""
    announce: Callable[[ProxyServer, Args, Any], dict[str, Any]] | None = None
    """After ``run`` succeeded: the event (its ``type`` and fields) every client is sent, from the server, the
    arguments and the result. For state every client shows (conditions, rules, framing, capture, armed holds)."""


# ------------------------------------------------------------------------------------------------ the commands


def ping(server: ProxyServer, a: Args) -> object:
    return {"mono_ns": time.monotonic_ns(), "wall_ns": time.time_ns(), "echo": a.get("echo")}


def set_conditions(server: ProxyServer, a: Args) -> dict[str, Any]:
    conn_id = opt_int_field(a, "conn_id")
    preset = a.get("preset")
    conditions: Conditions | None
    if preset is not None:
        if not isinstance(preset, str):
            raise CommandError(f"preset: expected a name, got {shown(preset)}")
        conditions = find_preset(preset).conditions
    else:
        if "conditions" not in a:
            raise CommandError("needs 'conditions' (a map with c2s/s2c) or 'preset' (a name)")
        raw = a["conditions"]
        if raw is None and conn_id is None:
            raise CommandError("conditions: nil only clears a connection's override (give conn_id)")
        conditions = None if raw is None else Conditions.from_dict(raw)
    server.set_conditions(conditions, conn_id)
    return {"conn_id": conn_id, "conditions": server.conditions_for(conn_id).to_dict()}


def set_rules(server: ProxyServer, a: Args) -> dict[str, Any]:
    raw = a.get("rules")
    if not isinstance(raw, list):
        raise CommandError(f"rules: expected a list of rule maps, got {type(raw).__name__}")
    parsed = []
    for i, r in enumerate(raw):
        try:
            parsed.append(Rule.from_dict(r))
        except (KeyError, TypeError, ValueError) as e:
            raise CommandError(f"rules[{i}]: {exception_text(e)}") from None
    server.set_rules(parsed)
    return {"rules": len(parsed)}


def hold_next(server: ProxyServer, a: Args) -> None:
    count = opt_int_field(a, "count")
    if count is None:
        count = 1
    if count < 1:
        raise CommandError(f"count: must be at least 1, got {count}")
    server.hold_next(direction_field(a), opt_int_field(a, "conn_id"), count)


def cancel_hold_next(server: ProxyServer, a: Args) -> None:
    server.cancel_hold_next()


def held(server: ProxyServer, a: Args) -> list[int]:
    return server.held()


def release(server: ProxyServer, a: Args) -> None:
    server.release(int_field(a, "msg_id"))


def edit(server: ProxyServer, a: Args) -> None:
    server.release(int_field(a, "msg_id"), bytes_field(a, "data"))


def drop(server: ProxyServer, a: Args) -> None:
    server.drop(int_field(a, "msg_id"))


def release_all(server: ProxyServer, a: Args) -> None:
    server.release_all(opt_int_field(a, "conn_id"))


def inject(server: ProxyServer, a: Args) -> None:
    """Bytes (for a UDP flow: one datagram) into a connection, through the receive path. ``origin`` is
    ``injected`` (the default) or ``replayed`` (a recorded message sent again)."""
    origin = a.get("origin", "injected")
    if origin not in ("injected", "replayed"):
        raise CommandError(f"origin: expected 'injected' or 'replayed', got {shown(origin)}")
    server.inject(int_field(a, "conn_id"), direction_field(a), bytes_field(a, "data"), Origin(origin))


def replay(server: ProxyServer, a: Args) -> Awaitable[dict[str, int]]:
    conn_id = int_field(a, "conn_id")
    mode = a.get("mode", "timing")
    if mode not in REPLAY_MODES:
        raise CommandError(f"mode: expected one of {', '.join(REPLAY_MODES)}, got {shown(mode)}")
    messages = a.get("messages")
    if messages is not None and (not isinstance(messages, list) or not all(isinstance(m, bytes) for m in messages)):
        raise CommandError("messages: expected a list of bytes (or nil for the recorded client side)")
    transport = a.get("transport")
    if transport not in (None, "tcp", "udp"):
        raise CommandError(f"transport: expected 'tcp' or 'udp' (nil: as the connection was), got {shown(transport)}")
    return _new_conn(server.replay(conn_id, messages, mode, transport=transport))


async def _new_conn(started: Awaitable[int]) -> dict[str, int]:
    return {"conn_id": await started}


def _close(server: ProxyServer, a: Args, reset: bool) -> None:
    after_s = opt_number_field(a, "after_s")
    if after_s is not None and after_s < 0:
        raise CommandError(f"after_s: must be >= 0, got {after_s}")
    server.close_connection(int_field(a, "conn_id"), reset, after_s=after_s or 0.0)


def close(server: ProxyServer, a: Args) -> None:
    _close(server, a, False)


def reset(server: ProxyServer, a: Args) -> None:
    _close(server, a, True)


def spike(server: ProxyServer, a: Args) -> None:
    direction = None if a.get("direction") is None else direction_field(a)
    add_ms, for_s = number_field(a, "add_ms"), number_field(a, "for_s")
    if add_ms < 0 or for_s <= 0:
        raise CommandError("add_ms must be >= 0 and for_s > 0")
    server.spike_now(direction, add_ms, for_s, opt_int_field(a, "conn_id"))


def fault(server: ProxyServer, a: Args) -> None:
    kind = a.get("kind")
    if kind not in ("drop", "duplicate"):
        raise CommandError(f"kind: expected 'drop' or 'duplicate', got {shown(kind)}")
    count = opt_int_field(a, "count")
    server.arm_fault(direction_field(a), kind, 1 if count is None else count, opt_int_field(a, "conn_id"))


def disconnect_all(server: ProxyServer, a: Args) -> dict[str, int]:
    """Reset (or, ``reset`` false, close) every open connection and end every UDP flow (a scenario's disconnect)."""
    reset = a.get("reset", True)
    if not isinstance(reset, bool):
        raise CommandError(f"reset: expected true or false, got {shown(reset)}")
    from proxy.scenario import disconnect_all as run

    return {"connections": run(server, reset, "by a client")}


def refuse_connections(server: ProxyServer, a: Args) -> dict[str, int]:
    """While ``on``, each new TCP connection is reset as soon as it is accepted (a scenario's outage)."""
    on = a.get("on")
    if not isinstance(on, bool):
        raise CommandError(f"on: expected true or false, got {shown(on)}")
    server.refusing = on
    return {"refused": server.refused}


def set_framing(server: ProxyServer, a: Args) -> dict[str, Any]:
    text = a.get("framing")
    if not isinstance(text, str):
        raise CommandError(f"framing: expected text such as 'lines' or 'c2s=len16,s2c=raw', got {shown(text)}")
    spec = parse_framing(text, opt_int_field(a, "max_frame") or server.framing.max_frame)
    server.set_framing(spec)
    return framing_to_dict(spec)


def set_connection_framing(server: ProxyServer, a: Args) -> dict[str, Any]:
    conn_id = int_field(a, "conn_id")
    text = a.get("framing")
    if not isinstance(text, str):
        raise CommandError(f"framing: expected a framing name such as 'lines', 'len16' or 'auto', got {shown(text)}")
    direction = None if a.get("direction") is None else direction_field(a)
    server.set_connection_framing(conn_id, text, direction)
    directions = ["c2s", "s2c"] if direction is None else [direction.label]
    # each direction's framing_inferred record (cause "user") tells every client when it takes effect
    return {"conn_id": conn_id, "framing": normalise_name(text), "directions": directions}


def load_addon(server: ProxyServer, a: Args) -> Awaitable[dict[str, Any]]:
    """Load (or load again) an addon file on the proxy's machine (docs/addons.md): it runs in the proxy's process,
    so only a control endpoint on loopback accepts it."""
    path = a.get("path")
    if not isinstance(path, str) or not path:
        raise CommandError(f"path: expected the path of a Python file, got {shown(path)}")
    if not server.addons_over_control:
        raise CommandError("refused: this proxy's control endpoint accepts remote clients, and an addon's code would "
                           "run in the proxy's process; start the proxy with -s FILE instead")
    return _loaded(server, path)


async def _loaded(server: ProxyServer, path: str) -> dict[str, Any]:
    try:
        names = await server.load_addon(path)
    except ValueError as e:  # AddonLoadError: the file's error, with its line
        raise CommandError(str(e)) from None
    host = server.addons
    return {"path": path, "addons": names,
            "loaded": [x for x in host.loaded() if x["name"] in names] if host is not None else []}


def unload_addon(server: ProxyServer, a: Args) -> dict[str, Any]:
    path = a.get("path")
    if not isinstance(path, str) or not path:
        raise CommandError(f"path: expected the path of a loaded addon file, got {shown(path)}")
    return {"path": path, "addons": server.unload_addon(path)}


def pause_capture(server: ProxyServer, a: Args) -> None:
    server.pause_capture()


def resume_capture(server: ProxyServer, a: Args) -> None:
    server.resume_capture()


def snapshot(server: ProxyServer, a: Args) -> dict[str, object]:
    return server.snapshot()


# ------------------------------------------------------------------------------------------------ announcements


def _conditions_changed(server: ProxyServer, a: Args, result: dict[str, Any]) -> dict[str, Any]:
    return {"type": "conditions_changed", **result}


def _rules_changed(server: ProxyServer, a: Args, result: object) -> dict[str, Any]:
    return {"type": "rules_changed", "rules": [r.to_dict() for r in server.shared.rules]}


def _hold_changed(server: ProxyServer, a: Args, result: object) -> dict[str, Any]:
    c2s, s2c = server.shared.hold_next
    armed = None
    if "direction" in a:  # hold_next (its arguments were checked by run); cancel_hold_next has none
        armed = {"direction": direction_field(a).label, "conn_id": a.get("conn_id"), "count": a.get("count") or 1}
    return {"type": "hold_changed", "hold_next": {"c2s": c2s, "s2c": s2c}, "armed": armed}


def _framing_changed(server: ProxyServer, a: Args, result: dict[str, Any]) -> dict[str, Any]:
    return {"type": "framing_changed", "framing": result}


def _capture(server: ProxyServer, a: Args, result: object) -> dict[str, Any]:
    return {"type": "capture", "paused": not server.capturing}


# ------------------------------------------------------------------------------------------------ the table

COMMANDS: Final[Mapping[str, Command]] = MappingProxyType({
    "ping": Command(ping),
    "set_conditions": Command(set_conditions, _conditions_changed),
    "set_rules": Command(set_rules, _rules_changed),
    "hold_next": Command(hold_next, _hold_changed),
    "cancel_hold_next": Command(cancel_hold_next, _hold_changed),
    "held": Command(held),
    "release": Command(release),
    "edit": Command(edit),
    "drop": Command(drop),
    "release_all": Command(release_all),
    "inject": Command(inject),
    "replay": Command(replay),
    "close": Command(close),
    "reset": Command(reset),
    "spike": Command(spike),
    "fault": Command(fault),
    "disconnect_all": Command(disconnect_all),
    "refuse_connections": Command(refuse_connections),
    "set_framing": Command(set_framing, _framing_changed),
    "set_connection_framing": Command(set_connection_framing),
    "load_addon": Command(load_addon),
    "unload_addon": Command(unload_addon),
    "pause_capture": Command(pause_capture, _capture),
    "resume_capture": Command(resume_capture, _capture),
    "snapshot": Command(snapshot),
})
"""Wire name -> command: the only way a client's ``type`` reaches code."""


def exception_text(e: BaseException) -> str:
    """An engine exception's message as written (``str(KeyError("x"))`` adds quotes)."""
    if isinstance(e, KeyError) and len(e.args) == 1 and isinstance(e.args[0], str):
        return e.args[0]
    return str(e) or type(e).__name__
