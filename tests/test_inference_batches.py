"""Framing inference on batched sends: a game that sends a batch of newline-terminated JSON messages per tick (a
server broadcasting every entity's position, a client flushing its queued inputs) puts 20-60 messages in each read.
Many messages per read is no sign of a wrong framing when the messages are of a sensible size; it was taken for one
(more than 16 messages per read, or 256 in all, was "degenerate"), so such a game stayed raw: one row per batch.
"""

from __future__ import annotations

import json

import pytest

from proxy.inference import AutoFramer


def _batch(tick: int, n: int) -> bytes:
    return b"".join(json.dumps({"type": "pos", "id": i, "x": tick * 3 + i, "y": tick}).encode() + b"\n"
                    for i in range(n))


@pytest.mark.parametrize("per_read", [1, 5, 20, 60])
def test_batches_of_json_lines_are_framed_as_lines(per_read: int) -> None:
    f = AutoFramer()
    reads = [_batch(t, per_read) for t in range(12)]
    for r in reads:
        assert f.feed(r) == [r] or f.decision is not None
        if f.decision is not None:
            break
    assert f.decision is not None and f.decision.framing == "lines", f.decision
    assert f.decision.reads <= 3


def test_many_tiny_pieces_per_read_are_still_not_a_framing() -> None:
    """What the rule was for: a one-byte "delimiter" that cuts text into scraps is not a framing."""
    f = AutoFramer()
    for _ in range(12):
        f.feed(b"a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\nm\nn\no\np\nq\nr\ns\nt\n" * 2)
        if f.decision is not None:
            break
    assert f.decision is None or f.decision.framing == "raw"
