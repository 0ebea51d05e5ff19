"""Messages framed with a length prefix (``--framing len16/len32``) decode as their body, and edit back exactly."""

from __future__ import annotations

import pickle
import struct

import msgpack
import pytest

from inspector.decode import default_registry

BODIES = {
    "msgpack": msgpack.packb({"command": "move", "x": 3, "y": -1.5}),
    "pickle": pickle.dumps({"x": 1.5, "y": 2.0, "name": "p1"}, protocol=4),
}


@pytest.mark.parametrize("fmt", [">I", "<I", ">H", "<H"])
@pytest.mark.parametrize("kind", sorted(BODIES))
def test_prefixed_body_decodes_and_round_trips(kind: str, fmt: str) -> None:
    body = BODIES[kind]
    data = struct.pack(fmt, len(body)) + body
    reg = default_registry()
    view = reg.decode(data)
    assert view.decoder == kind and view.error is None
    assert view.summary.startswith(f"[len {len(body)}]")
    prefix, *rest = view.fields
    assert (prefix.name, prefix.start, prefix.end) == ("length prefix", 0, struct.calcsize(fmt))
    assert all(f.start is None or f.start >= struct.calcsize(fmt) for f in rest)
    assert view.editable is not None
    assert reg.encode(kind, view.editable) == data


def test_plain_text_is_not_mistaken_for_a_prefix() -> None:
    view = default_registry().decode(b"\x00\x05hello")  # a prefix, but the body is only text
    assert view.decoder in ("text", "hex")
