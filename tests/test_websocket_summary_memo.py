"""A WebSocket direction's binary messages skip ranking every decoder while one decoder surely wins them, and that
memory never outlives what it was true of: a decoder registered later, a setting changed, the settings cleared."""

from __future__ import annotations

import msgpack

from inspector.decode import DecodeContext, DecoderRegistry, View, builtin_decoders
from proxy.model import Direction, Message
from proxy.websocket import build_frame


class Surer:
    """A user's decoder of the game's own msgpack states, surer of them than msgpack."""

    name = "game-state"

    def confidence(self, data: bytes, ctx: DecodeContext) -> float:
        return 0.99 if b"state" in data else 0.0

    def decode(self, data: bytes, ctx: DecodeContext) -> View:
        return View(decoder=self.name, summary=f"state of {len(data)} bytes", values=(len(data),))


def _frames(n: int) -> list[Message]:
    out = []
    for i in range(n):
        data = build_frame(True, 2, msgpack.packb({"t": "state", "tick": i, "x": i * 1.5}), False)
        out.append(Message(i, 1, Direction.S2C, i, data, 0, 0))
    return out


def _registry() -> DecoderRegistry:
    reg = DecoderRegistry(builtin_decoders())
    reg.set_framing("websocket", 1, Direction.S2C)
    return reg


def test_a_decoder_registered_later_is_asked() -> None:
    reg = _registry()
    msgs = _frames(6)
    for m in msgs[:3]:
        assert reg.decode_message(m, detail=False).summary.startswith("binary msgpack {'t': 'state'")
    reg.register(Surer())
    for m in msgs[3:]:
        view = reg.decode_message(m, detail=False)
        assert view.summary.startswith("binary game-state state of "), view.summary


def test_settings_cleared_or_changed_void_the_memory() -> None:
    reg = _registry()
    msgs = _frames(4)
    reg.decode_message(msgs[0], detail=False)
    reg.struct_formats.set("<I", 1, Direction.S2C)  # a layout: confidences follow sizes, every message ranks
    assert reg.decode_message(msgs[1], detail=False).summary.startswith("binary msgpack")
    reg.struct_formats.set(None, 1, Direction.S2C)
    reg.decode_message(msgs[2], detail=False)
    reg.clear_settings()
    reg.set_framing("websocket", 1, Direction.S2C)
    reg.register(Surer())
    assert reg.decode_message(msgs[3], detail=False).summary.startswith("binary game-state")
