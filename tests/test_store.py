"""The Qt-free message store: batches, updates by id, visible rows, the memory policy, a million rows."""

from __future__ import annotations

import os

import pytest

from inspector.store import MessageStore
from proxy.model import (
    CloseReason,
    ConnectionClosed,
    ConnectionOpened,
    Direction,
    HalfClosed,
    Message,
    MessageState,
    MessageUpdated,
    Notice,
    Origin,
    Side,
    UpstreamConnected,
)

C2S, S2C = Direction.C2S, Direction.S2C


def msg(i: int, d: Direction = C2S, data: bytes = b"ping", conn: int = 1, state: MessageState = MessageState.FORWARDED,
        arrival: int | None = None) -> Message:
    t = i * 1_000_000 if arrival is None else arrival
    return Message(i, conn, d, i, data, t, None if state is MessageState.HELD else t + 500, Origin.LIVE, state)


def opened(conn: int = 1) -> ConnectionOpened:
    return ConnectionOpened(conn, ("127.0.0.1", 50312), ("127.0.0.1", 5555), 0)


def test_apply_appends_and_counts() -> None:
    s = MessageStore()
    r = s.apply([opened(), UpstreamConnected(1, ("127.0.0.1", 5555), 1), msg(1), msg(2, S2C, b"pong!")])
    assert len(s) == 2 and s.visible_count == 2
    assert r.first_new_row == 0 and r.first_new_visible == 0
    assert r.connections_added == [1]
    assert s.payload(1) == b"pong!" and s.direction(1) is S2C and s.sizes[1] == 5
    c = s.connections[1]
    assert c.msgs == [1, 1] and c.bytes == [4, 5] and c.state_text == "open"
    assert s.message(0) == msg(1)
    r2 = s.apply([msg(3)])
    assert r2.first_new_row == 2 and r2.first_new_visible == 2 and not r2.connections_added


def test_update_by_id_changes_state_release_and_data() -> None:
    s = MessageStore()
    s.apply([opened(), msg(1), msg(2, state=MessageState.HELD), msg(3)])
    assert s.held == {2: 1} and s.connections[1].held == 1 and s.release_ns(1) is None
    r = s.apply([MessageUpdated(2, 1, C2S, MessageState.FORWARDED, 99, release_ns=7_000_000, data=b"PING")])
    assert r.changed_rows == [1] and r.held_changed
    assert s.held == {} and s.connections[1].held == 0
    assert s.state(1) is MessageState.FORWARDED and s.payload(1) == b"PING" and s.original_payload(1) == b"ping"
    assert s.origin(1) is Origin.EDITED and s.added_delay_ns(1) == 5_000_000
    r = s.apply([MessageUpdated(12345, 1, C2S, MessageState.DROPPED, 1)])
    assert r.ignored == 1 and not r.changed_rows


def test_update_in_same_batch_as_append_is_not_a_change() -> None:
    s = MessageStore()
    r = s.apply([msg(1, state=MessageState.SCHEDULED), MessageUpdated(1, 1, C2S, MessageState.FORWARDED, 5, 6)])
    assert r.changed_rows == [] and s.state(0) is MessageState.FORWARDED


def test_out_of_order_ids_fall_back_to_a_dict() -> None:
    s = MessageStore()
    s.apply([msg(5), msg(3), msg(9)])
    assert s.row_of(3) == 1 and s.row_of(9) == 2 and s.row_of(4) is None


def test_connection_lifecycle_and_placeholders() -> None:
    s = MessageStore()
    r = s.apply([msg(1, conn=7)])  # attached late: no ConnectionOpened seen
    assert r.connections_added == [7] and s.connections[7].client_addr == ("?", 0)
    s.apply([opened(2), HalfClosed(2, Side.CLIENT, 5)])
    assert s.connections[2].state_text.startswith("connecting") or "half" in s.connections[2].state_text
    r = s.apply([ConnectionClosed(2, CloseReason.CLIENT_RESET, "reset", 9, 0, 0, 0, 0), Notice("warning", "x", 1)])
    assert s.connections[2].state_text == "client reset" and not s.connections[2].is_open
    assert r.connections_changed == {2} and [n.text for n in r.notices] == ["x"]


def test_refilter_and_incremental_visible() -> None:
    s = MessageStore()
    s.apply([msg(i, C2S if i % 2 else S2C) for i in range(1, 11)])
    s.refilter(lambda row: s.direction(row) is S2C)
    assert list(s.visible) == [1, 3, 5, 7, 9]
    r = s.apply([msg(11, S2C), msg(12, C2S)])
    assert r.first_new_visible == 5 and list(s.visible) == [1, 3, 5, 7, 9, 10]
    assert s.visible_position(9) == 4 and s.visible_position(8) is None
    s.refilter(None)
    assert s.visible_count == 12


def test_refilter_steps_yield_progress() -> None:
    s = MessageStore()
    s.apply([msg(i) for i in range(1, 1001)])
    steps = list(s.refilter_steps(lambda r: r % 10 == 0, chunk=100))
    assert steps[-1] == 1.0 and len(steps) >= 10 and s.visible_count == 100


def test_summary_cache() -> None:
    s = MessageStore()
    s.apply([msg(1)])
    calls: list[int] = []

    def make(row: int) -> str:
        calls.append(row)
        return "ping"

    assert s.summary(0, make) == "ping" and s.summary(0, make) == "ping" and calls == [0]
    s.invalidate_summaries()
    s.summary(0, make)
    assert calls == [0, 0]


def test_pause_skips_live_but_keeps_held() -> None:
    s = MessageStore()
    s.paused = True
    s.apply([msg(1), msg(2, state=MessageState.HELD)])
    assert len(s) == 1 and s.skipped_while_paused == 1 and s.held == {2: 0}
    assert s.connections[1].msgs == [2, 0]


def test_payload_cap_evicts_oldest_but_keeps_rows_and_held() -> None:
    s = MessageStore(max_payload_bytes=1000)
    s.apply([msg(1, data=b"h" * 100, state=MessageState.HELD)])
    s.apply([msg(i, data=b"x" * 100) for i in range(2, 13)])
    assert len(s) == 12 and s.payload_bytes <= 1000
    assert s.payload(0) == b"h" * 100  # held: kept
    assert s.payload(1) == b"" and s.payload_evicted(1) and s.sizes[1] == 100
    assert s.payload(11) == b"x" * 100 and not s.payload_evicted(11)


def test_max_rows_refuses_and_counts() -> None:
    s = MessageStore(max_rows=3)
    s.apply([msg(i) for i in range(1, 6)])
    assert len(s) == 3 and s.rows_refused == 2


def test_clear_keeps_held_and_connections() -> None:
    s = MessageStore()
    s.apply([opened(), msg(1), msg(2, state=MessageState.HELD), msg(3)])
    s.clear()
    assert len(s) == 1 and s.held == {2: 0} and s.connections[1].msgs == [3, 0]
    s.apply([MessageUpdated(2, 1, C2S, MessageState.DROPPED, 5)])
    assert s.held == {} and s.state(0) is MessageState.DROPPED


def _rss_mb() -> float | None:
    """Current (not peak) resident memory: the peak belongs to whichever test ran before in this process."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)
    except OSError:
        return None


@pytest.mark.slow
def test_a_million_rows() -> None:
    before = _rss_mb()
    s = MessageStore()
    payload = bytes(range(64))
    batch = 50_000
    for start in range(0, 1_000_000, batch):
        s.apply([Message(i + 1, 1 + (i & 3), Direction(i & 1), i, payload[:63] + bytes([i & 0xFF]), i, i + 10)
                 for i in range(start, start + batch)])
    assert len(s) == 1_000_000 and s.visible_count == 1_000_000
    assert s.row_of(777_777) == 777_776
    s.apply([MessageUpdated(777_777, 2, C2S, MessageState.DROPPED, 1)])
    assert s.state(777_776) is MessageState.DROPPED
    s.refilter(lambda r: s.conn_ids[r] == 2)
    assert s.visible_count == 250_000
    after = _rss_mb()
    if before is not None and after is not None:  # Linux; the benchmark reports the figure everywhere
        assert after - before < 600, f"1,000,000 rows took {after - before:.0f} MB"


@pytest.mark.parametrize("n", [0, 1])
def test_empty_and_tiny_refilter(n: int) -> None:
    s = MessageStore()
    s.apply([msg(i + 1) for i in range(n)])
    s.refilter(lambda r: False)
    assert s.visible_count == 0
