"""Decoded values for addons: the ``sockscope.value_decoders`` entry point (see pyproject.toml).

Role: :func:`make_value_decoder` is the factory the engine's addon host (``proxy/addonhost.py``) loads through that
entry point (``proxy`` never imports ``inspector``); the function it returns gives ``proxy.addons.Decoded`` for a
message's bytes: the decoder the registry picks (``auto``) and its decoded top-level values, within the deadline
it is given. It backs ``msg.decoded`` in an addon's hooks.
Must not import: Qt. ``inspector.decode`` is imported by :func:`make_value_decoder`, not when this module is.
Thread: an addon's worker thread (the decode runs there, never on the relay's).
"""

from __future__ import annotations

from collections.abc import Callable

from proxy.addons import Decoded
from proxy.model import Direction


def make_value_decoder() -> Callable[[bytes, Direction, int, int], Decoded | None]:
    """The decoder behind ``msg.decoded``; builds the default registry (its plugins included) now."""
    from inspector.decode import DecodeContext, default_registry

    registry = default_registry()

    def decode(data: bytes, direction: Direction, conn_id: int, deadline_ns: int) -> Decoded | None:
        view = registry.decode(data, DecodeContext(direction, conn_id, detail=False, deadline_ns=deadline_ns))
        return Decoded(view.decoder, tuple(view.values), view.error)

    return decode
