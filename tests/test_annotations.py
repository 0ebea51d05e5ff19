"""Teaching annotations: each fires on a crafted stream and stays quiet on a clean one.

Streams are records fed to a real :class:`MessageStore` (times are chosen, so Nagle's timing is exact), plus one
real socket stream through the proxy for coalescing.
"""

from __future__ import annotations

import json
import pickle
import socket
from typing import Any

import msgpack

from inspector.store import MessageStore
from inspector.timeline.annotations import LESSONS, Kind, incomplete_tail
from inspector.timeline.stats import Analysis
from proxy.model import CloseReason, ConnectionClosed, Direction, Message, MessageState, MessageUpdated
from tests.conftest import EchoServer, Recorder, connect, recv_exact

MS = 1_000_000
C2S, S2C = Direction.C2S, Direction.S2C


class Feed:
    def __init__(self) -> None:
        self.store = MessageStore()
        self.next_id = 1
        self.seq = {C2S: 0, S2C: 0}

    def add(self, d: Direction, data: bytes, t_ms: float, conn: int = 1, **kw: Any) -> int:
        mid = self.next_id
        self.next_id += 1
        t = int(t_ms * MS)
        self.store.apply([Message(mid, conn, d, self.seq[d], data, t, kw.pop("release", t), **kw)])
        self.seq[d] += 1
        return mid

    def kinds(self) -> dict[int, set[Kind]]:
        a = Analysis(self.store)
        a.run_to_end()
        out: dict[int, set[Kind]] = {}
        for row in range(len(self.store)):
            ks = {n.kind for n in a.annotator.for_row(self.store, row)}
            if ks:
                out[int(self.store.ids[row])] = ks
        return out


def clean_game() -> Feed:
    """60 Hz JSON states and pings with one value per read, text pongs, an honest close: nothing to teach."""
    f = Feed()
    for i in range(120):
        f.add(C2S, json.dumps({"type": "input", "seq": i}).encode(), i * 16.7)
        f.add(S2C, json.dumps({"type": "state", "tick": i, "name": "ü"}).encode(), i * 16.7 + 3)
        if i % 10 == 0:
            f.add(C2S, f"ping {i}".encode(), i * 16.7 + 5)
            f.add(S2C, f"pong {i}".encode(), i * 16.7 + 6)
            f.add(C2S, msgpack.packb({"command": "move", "x": i}), i * 16.7 + 7)
    return f


def test_clean_stream_has_no_annotations() -> None:
    assert clean_game().kinds() == {}


def test_coalesced_json_msgpack_and_lines() -> None:
    f = Feed()
    a = f.add(C2S, b'{"type":"move","x":1}{"type":"move","x":2}', 0)
    b = f.add(S2C, msgpack.packb({"t": 1}) + msgpack.packb({"t": 2}) + msgpack.packb({"t": 3}), 10)
    c = f.add(C2S, b"hello\nworld\n", 2000)
    d = f.add(C2S, b"just one line\n", 3000)
    k = f.kinds()
    assert Kind.COALESCED in k[a] and Kind.COALESCED in k[b] and Kind.COALESCED in k[c]
    assert d not in k


def test_split_json_msgpack_pickle_and_utf8_across_reads() -> None:
    f = Feed()
    whole = json.dumps({"type": "state", "players": list(range(50))}).encode()
    j1 = f.add(S2C, whole[:40], 0)
    j2 = f.add(S2C, whole[40:], 1)
    packed = msgpack.packb({"command": "state", "blob": "x" * 100})
    m1 = f.add(C2S, packed[:30], 0)
    m2 = f.add(C2S, packed[30:], 1)
    pk = pickle.dumps({"a": list(range(30))}, protocol=4)
    p1 = f.add(S2C, pk[:20], 2000, conn=2)
    p2 = f.add(S2C, pk[20:], 2001, conn=2)
    text = "Hello from the exercise server! 🚀".encode()
    cut = text.index("🚀".encode()) + 2
    u1 = f.add(S2C, text[:cut], 0, conn=3)
    u2 = f.add(S2C, text[cut:], 1, conn=3)
    k = f.kinds()
    for mid in (j1, j2, m1, m2, p1, p2, u1, u2):
        assert Kind.SPLIT in k.get(mid, set()), mid
    assert incomplete_tail(whole) is None and incomplete_tail(whole[:40]) == ("json", 0)


def test_split_needs_the_next_read_to_complete_it() -> None:
    f = Feed()
    a = f.add(C2S, b'[not json at all', 0)
    b = f.add(C2S, b"something else", 1)
    assert f.kinds() == {} or (a not in f.kinds() and b not in f.kinds())


def test_pickle_is_flagged_with_the_safety_warning() -> None:
    f = Feed()
    mid = f.add(C2S, pickle.dumps({"type": "move", "x": 1}, protocol=4), 0)
    k = f.kinds()
    assert k[mid] == {Kind.PICKLE}
    assert "Unpickling bytes from the network" in LESSONS[Kind.PICKLE].explanation
    assert LESSONS[Kind.PICKLE].path.exists()


def test_closed_with_data_held() -> None:
    f = Feed()
    held = f.add(C2S, b"ping 1", 0, release=None, state=MessageState.HELD)
    ok = f.add(S2C, b"hello", 1)
    f.store.apply([MessageUpdated(held, 1, C2S, MessageState.DISCARDED, 5 * MS),
                   ConnectionClosed(1, CloseReason.CLIENT_RESET, "", 5 * MS, 6, 5, 1, 1, discarded=1)])
    k = f.kinds()
    assert k == {held: {Kind.DISCARDED}} and ok not in k


def test_nagle_small_writes_coalesced_after_delayed_ack() -> None:
    f = Feed()
    t = 0.0
    ids = []
    for _ in range(5):  # first small write alone, then the next three together ~40 ms later
        f.add(C2S, b'{"k":"w"}', t)
        t += 40
        ids.append(f.add(C2S, b'{"k":"a"}{"k":"s"}{"k":"d"}', t))
        t += 40
    k = f.kinds()
    assert all(Kind.NAGLE in k[i] for i in ids)


def test_nagle_not_on_a_fast_coalesced_burst_or_large_writes() -> None:
    f = Feed()
    a = f.add(C2S, b'{"k":1}', 0)
    b = f.add(C2S, b'{"k":1}{"k":2}', 1)  # no gap: coalesced, but not Nagle's pattern
    c = f.add(C2S, b'{"k":1}' + b" " * 5000 + b'{"k":2}', 100)  # large write
    k = f.kinds()
    assert a not in k and k[b] == {Kind.COALESCED} and k[c] == {Kind.COALESCED}


def test_lesson_pages_exist() -> None:
    for lesson in LESSONS.values():
        assert lesson.path.exists(), lesson.path
        assert lesson.title.split()[0].lower() in lesson.path.read_text().lower()


def test_coalescing_on_a_real_socket_through_the_proxy(start_proxy: Any, recorder: Recorder,
                                                       echo_server: EchoServer) -> None:
    p = start_proxy(echo_server.port)
    payload = b'{"type":"move","x":1}\n{"type":"move","x":2}\n'
    with connect(p.port) as c:
        c.sendall(payload)  # one write: under raw framing, one read at the proxy
        assert recv_exact(c, len(payload)) == payload
        c.shutdown(socket.SHUT_WR)
        recorder.wait_for(lambda r: isinstance(r, ConnectionClosed))
    f = Feed()
    f.store.apply(recorder.records)
    k = f.kinds()
    c2s_ids = [m.id for m in recorder.of(Message) if m.direction is C2S]
    assert any(Kind.COALESCED in k.get(i, set()) for i in c2s_ids)
