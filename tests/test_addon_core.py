"""Holding messages for addons in the sans-IO cores (no sockets, no clock, no addon host).

While no addon modifies messages (``Shared.intercept`` False, the default) a message costs exactly what it cost
before addons existed: the relay's and the datagram core's fast path is one send and one record. While one does,
each message not held for the user is held (``MessageState.HELD``) and handed on with an ``Intercept`` command
right after its record; the decision comes back through the hold path (release, edit, drop).
"""

from __future__ import annotations

from proxy import commands as cmd
from proxy import events as ev
from proxy.datagram import DatagramCore, FlowOpened, HeldReleaseRequested, OpenFlow, SendToServer
from proxy.framing import FramingSpec
from proxy.model import Direction, Ids, Message, MessageState, Notice, Origin, Side
from proxy.relay import Relay, Shared
from proxy.rules import Match, Rule

CLIENT = ("127.0.0.1", 40000)
TARGET = ("127.0.0.1", 5555)


def relaying(shared: Shared) -> Relay:
    r = Relay(1, CLIENT, TARGET, FramingSpec(), Ids(), shared=shared)
    r.handle(ev.ClientAccepted(0))
    r.handle(ev.UpstreamOpened(0, TARGET))
    return r


def kinds(out: list[cmd.Command]) -> list[str]:
    """The commands, messages' records with their state; notices (a fault under raw framing) left out."""
    return [type(c).__name__ + (f"({c.record.state.value})" if isinstance(c, cmd.Publish)
                                and isinstance(c.record, Message) else "") for c in out
            if not (isinstance(c, cmd.Publish) and isinstance(c.record, Notice))]


def test_without_addons_the_relay_fast_path_is_one_send_and_one_record() -> None:
    shared = Shared()
    r = relaying(shared)
    assert not shared.active
    assert kinds(r.receive_data(Side.CLIENT, b"ping", 1)) == ["SendData", "Publish(forwarded)"]


def test_with_a_modifying_addon_the_relay_holds_each_message_and_hands_it_on() -> None:
    shared = Shared()
    shared.intercept = True
    shared.update()
    assert shared.active
    r = relaying(shared)
    out = r.receive_data(Side.CLIENT, b"ping", 1)
    assert kinds(out) == ["Publish(held)", "Intercept"]
    record = out[0].record  # type: ignore[attr-defined]
    assert out[1] == cmd.Intercept(record)
    assert r.held() == [record.id]
    # the next message waits behind it (TCP order), held for the addons too
    assert kinds(r.receive_data(Side.CLIENT, b"pong", 2)) == ["Publish(held)", "Intercept"]
    out = r.handle(ev.ReleaseRequested(3, record.id, b"PING"))
    assert [c.data for c in out if isinstance(c, cmd.SendData)] == [b"PING"]


def test_a_message_held_for_the_user_is_not_handed_to_addons() -> None:
    shared = Shared()
    shared.intercept = True
    shared.rules = (Rule(Match(direction=Direction.C2S), "hold"),)
    shared.update()
    r = relaying(shared)
    assert kinds(r.receive_data(Side.CLIENT, b"mine", 1)) == ["Publish(held)"]
    assert kinds(r.receive_data(Side.SERVER, b"theirs", 2)) == ["Publish(held)", "Intercept"]


def test_injected_messages_are_handed_to_addons_but_duplicates_are_not() -> None:
    shared = Shared()
    shared.intercept = True
    shared.update()
    r = relaying(shared)
    out = r.handle(ev.DataInjected(1, Direction.S2C, b"news", Origin.INJECTED))
    assert kinds(out) == ["Publish(held)", "Intercept"]
    r.handle(ev.FaultArmed(2, Direction.C2S, "duplicate"))
    out = r.receive_data(Side.CLIENT, b"twice", 3)
    assert kinds(out) == ["Publish(held)", "Intercept", "Publish(scheduled)"]  # the copy waits behind it


def test_the_datagram_core_holds_for_addons_only_while_one_modifies() -> None:
    shared = Shared()
    core = DatagramCore(Ids(), TARGET, shared=shared)
    out = core.client_datagram(CLIENT, b"first", 0)
    (opened,) = [c for c in out if isinstance(c, OpenFlow)]
    core.handle(FlowOpened(0, opened.flow, TARGET))
    assert kinds(core.client_datagram(CLIENT, b"fast", 1)) == ["SendToServer", "Publish(forwarded)"]
    shared.intercept = True
    shared.update()
    core.sync_shared()
    out = core.client_datagram(CLIENT, b"held", 2)
    assert kinds(out) == ["Publish(held)", "Intercept"]
    record = out[0].record  # type: ignore[attr-defined]
    assert record.state is MessageState.HELD and core.held_ids() == [record.id]
    out = core.handle(HeldReleaseRequested(3, record.id, b"HELD"))
    assert [c.data for c in out if isinstance(c, SendToServer)] == [b"HELD"]
    shared.intercept = False
    shared.update()
    core.sync_shared()
    assert kinds(core.client_datagram(CLIENT, b"fast again", 4)) == ["SendToServer", "Publish(forwarded)"]


def test_the_addon_api_is_a_light_import() -> None:
    """What an addon file imports (``proxy.addons``) loads neither the engine's shell, nor Qt, nor the inspector:
    an addon can be type-checked and unit-tested on its own."""
    import subprocess
    import sys

    code = ("import sys, proxy.addons\n"
            "heavy = ('asyncio', 'proxy.server', 'proxy.addonhost', 'inspector', 'PySide6')\n"
            "print(sorted(h for h in heavy if any(m == h or m.startswith(h + '.') for m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
