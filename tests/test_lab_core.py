"""The latency-compensation lab's computations (inspector/lab), Qt-free, on sessions with known answers.

Sessions are built as the engine publishes them: a message record when a message reaches the proxy (scheduled
when the conditions delay it) and an update when it is forwarded, in time order, with len32 + msgpack or JSON
payloads in the wire format of docs/examples/game (the lab spec: ``{"t": "input", "seq", "x", "y"}`` up,
``{"t": "state", "tick", "time", "ack", "x", "y"}`` down). Expected figures are either worked out by hand or
computed by a brute-force oracle straight from the definitions.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import msgpack
import pytest

from inspector.lab import Hints, analyse, analyse_store
from inspector.lab.analysis import LabAnalysis
from inspector.lab.core import Digest, SeqSpace, interpolation_advice
from inspector.store import MessageStore
from proxy.model import DelayReason, Direction, Message, MessageState, MessageUpdated, Origin, Record

MS = 1_000_000
C2S, S2C = Direction.C2S, Direction.S2C


def frame(value: Any, fmt: str = "msgpack") -> bytes:
    payload = msgpack.packb(value) if fmt == "msgpack" else json.dumps(value).encode()
    return struct.pack(">I", len(payload)) + payload


@dataclass
class Session:
    """Records as the engine would publish them, from messages with arrival times and added delays."""

    fmt: str = "msgpack"
    events: list[tuple[float, int, Record]] = field(default_factory=list)
    next_id: int = 1
    seqs: dict[tuple[int, Direction], int] = field(default_factory=dict)

    def send(self, d: Direction, value: Any, at_ms: float, delay_ms: float = 0.0, *, conn: int = 1,
             held: bool = False, dropped: bool = False, origin: Origin = Origin.LIVE, raw: bytes | None = None
             ) -> int:
        mid = self.next_id
        self.next_id += 1
        seq = self.seqs.get((conn, d), 0)
        self.seqs[(conn, d)] = seq + 1
        data = raw if raw is not None else frame(value, self.fmt)
        a = round(at_ms * MS)
        r = round((at_ms + delay_ms) * MS)
        delays = ((DelayReason.LATENCY, r - a),) if r > a else ()
        order = len(self.events)
        if held:
            self.events.append((at_ms, order, Message(mid, conn, d, seq, data, a, None, origin, MessageState.HELD)))
        elif dropped:
            self.events.append((at_ms, order, Message(mid, conn, d, seq, data, a, None, origin,
                                                      MessageState.DROPPED)))
        elif r == a:
            self.events.append((at_ms, order, Message(mid, conn, d, seq, data, a, a, origin)))
        else:
            self.events.append((at_ms, order, Message(mid, conn, d, seq, data, a, r, origin, MessageState.SCHEDULED,
                                                      delays)))
            self.events.append((at_ms + delay_ms, order, MessageUpdated(mid, conn, d, MessageState.FORWARDED, r, r,
                                                                        None, delays)))
        return mid

    def release(self, mid: int, conn: int, d: Direction, at_ms: float) -> None:
        """A held message forwarded by the user at ``at_ms``."""
        t = round(at_ms * MS)
        self.events.append((at_ms, len(self.events), MessageUpdated(mid, conn, d, MessageState.FORWARDED, t, t)))

    def records(self) -> list[Record]:
        return [r for _, _, r in sorted(self.events, key=lambda e: (e[0], e[1]))]

    def store(self) -> MessageStore:
        s = MessageStore()
        s.apply(self.records())
        return s


# ------------------------------------------------------------------------------------------ by hand


def hand_session(fmt: str = "msgpack") -> Session:
    """Three inputs at 0, 10, 20 ms (100 ms up), two states at 105 and 125 ms (50 ms down)."""
    s = Session(fmt)
    s.send(S2C, {"t": "welcome", "id": 1}, 0)
    s.send(C2S, {"t": "input", "seq": 1, "dx": 1, "dy": 0, "x": 4, "y": 0}, 0, 100)
    s.send(C2S, {"t": "input", "seq": 2, "dx": 1, "dy": 0, "x": 8, "y": 0}, 10, 100)
    s.send(C2S, {"t": "input", "seq": 3, "dx": 1, "dy": 0, "x": 12, "y": 0}, 20, 100)
    s.send(S2C, {"t": "state", "tick": 1, "time": 105, "ack": 1, "x": 4, "y": 0}, 105, 50)
    s.send(S2C, {"t": "state", "tick": 2, "time": 125, "ack": 3, "x": 10, "y": 0}, 125, 50)
    return s


@pytest.mark.parametrize("fmt", ["msgpack", "json"])
def test_a_session_worked_out_by_hand(fmt: str) -> None:
    report = analyse(hand_session(fmt).records())
    o = report.overall
    assert (o.inputs, o.acked, o.unacked, o.states) == (3, 3, 0, 2)
    # seq 1: acknowledged by the state delivered at 155 ms; seq 2 and 3 by the one delivered at 175 ms
    assert sorted([155.0, 165.0, 155.0]) == [o.input_ack_ms.min, o.input_ack_ms.p50, o.input_ack_ms.max]
    assert o.added_ms.min == o.added_ms.max == 150.0  # 100 up + 50 down, for every input
    assert (o.in_flight.count, o.in_flight.min, o.in_flight.max, o.max_in_flight) == (3, 1, 3, 3)
    assert o.snapshot_interval_ms.count == 1 and o.snapshot_interval_ms.max == 20.0
    # seq 1 predicted (4, 0) and the server agreed; seq 3 predicted (12, 0), the server said (10, 0)
    assert (o.corrections_px.count, o.corrections_px.min, o.corrections_px.max) == (2, 0.0, 2.0)
    assert set(report.connections) == {1}
    roles = {(t, r): (f, src) for t, r, f, src in report.hints}
    assert roles[("c2s input", "seq")] == ("seq", "inferred")
    assert roles[("c2s input", "predicted")] == ("x, y", "inferred")
    assert roles[("s2c state", "ack")] == ("ack", "inferred")
    assert roles[("s2c state", "pos")] == ("x, y", "inferred")
    assert {r for t, r in roles if t == "s2c state"} == {"ack", "tick", "time", "pos"}
    assert not report.problems
    json.dumps(report.to_dict())  # JSON-friendly for a plugin's failure report
    assert "input → ack" in report.text() and "corrections" in report.text()


def test_the_tracker_series_are_what_the_plots_draw() -> None:
    a = LabAnalysis(hand_session().store())
    a.run_to_end(finish=True)
    c = a.tracker.conns[1]
    assert [t / MS for t in c.delay.t] == [0, 10, 20] and list(c.delay.y) == [155, 165, 155]
    assert list(c.delay.extra) == [150, 150, 150]
    # in flight after each send (1, 2, 3), then after each acknowledgement reaches the client (2, 0)
    assert [(t / MS, y) for t, y in zip(c.in_flight.t, c.in_flight.y, strict=True)] == \
        [(0, 1), (10, 2), (20, 3), (155, 2), (175, 0)]
    assert [(t / MS, y) for t, y in zip(c.corrections.t, c.corrections.y, strict=True)] == [(155, 0), (175, 2)]
    assert list(c.corrections.extra) == [1, 3]  # the input each correction is for
    assert list(c.intervals.y) == [20]


def test_a_state_counts_when_it_reaches_the_client_not_when_it_was_planned() -> None:
    """A state is held (intercept) for a second: the acknowledgement reaches the client only when released."""
    s = Session()
    s.send(C2S, {"t": "input", "seq": 1}, 0, 10)
    held = s.send(S2C, {"t": "state", "ack": 1}, 20, held=True)
    s.send(S2C, {"t": "state", "ack": 1}, 40, 980)  # behind the held one (TCP order): out when it is
    s.send(C2S, {"t": "input", "seq": 2}, 500)
    s.release(held, 1, S2C, 1020)
    s.send(S2C, {"t": "state", "ack": 2}, 1030)
    a = LabAnalysis(MessageStore())
    store = a.store
    recs = s.records()
    store.apply(recs[:-2])  # the hold is not released yet
    a.update(1.0)
    c = a.tracker.conns[1]
    assert c.acked == 0 and len(c.pending) == 2 and c.in_flight.y[-1] == 2
    store.apply(recs[-2:])
    a.update(1.0)
    a.run_to_end(finish=True)
    assert list(c.delay.y) == [1020.0, 530.0]  # seq 1 at 0 -> 1020; seq 2 at 500 -> 1030
    assert c.interval_d.count == 2 and c.interval_d.hi == 10.0  # 1020 -> 1020 (the queued one) -> 1030


def test_dropped_states_never_reach_the_client_and_injected_inputs_are_not_the_clients() -> None:
    s = Session()
    s.send(C2S, {"t": "input", "seq": 1}, 0)
    s.send(C2S, {"t": "input", "seq": 99}, 1, origin=Origin.INJECTED)  # typed into Compose by the user
    s.send(S2C, {"t": "state", "ack": 1}, 10, dropped=True)
    s.send(S2C, {"t": "state", "ack": 1}, 40)
    o = analyse(s.records()).overall
    assert (o.inputs, o.acked, o.states) == (1, 1, 1)
    assert o.input_ack_ms.max == 40.0


# ------------------------------------------------------------------------------------------ a simulated game


@dataclass
class Game:
    """A labspec game over the proxy: inputs at ``input_hz`` (a fixed step right), states at ``tick_hz`` to each
    client, ``up_ms``/``down_ms`` added each way plus optional jitter (TCP order kept)."""

    input_hz: float = 60
    tick_hz: float = 30
    up_ms: float = 0
    down_ms: float = 0
    jitter_ms: float = 0
    seconds: float = 3
    clients: int = 1
    wrap: int | None = None
    """Sequence numbers modulo this (a byte: 256)."""
    mispredict_every: int = 0
    seed: int = 1

    def run(self) -> tuple[Session, dict[int, dict[str, Any]]]:
        rnd = random.Random(self.seed)
        s = Session()
        truth: dict[int, dict[str, Any]] = {}
        for conn in range(1, self.clients + 1):
            inputs: list[tuple[float, float, int]] = []  # (arrival, release at server, seq)
            predicted: dict[int, tuple[int, int]] = {}
            t, seq, last_rel = conn * 0.7, 0, 0.0
            while t < self.seconds * 1000:
                seq += 1
                x = 4 * seq  # the move rule: 4 px right per input
                off = 3 if self.mispredict_every and seq % self.mispredict_every == 0 else 0
                predicted[seq] = (x + off, off and 4)
                rel = max(last_rel, t + self.up_ms + rnd.uniform(0, 2 * self.jitter_ms))
                last_rel = rel
                raw = seq % self.wrap if self.wrap else seq
                s.send(C2S, {"t": "input", "seq": raw, "dx": 1, "dy": 0, "x": x + off, "y": off and 4}, t, rel - t,
                       conn=conn)
                inputs.append((t, rel, seq))
                t += 1000 / self.input_hz
            states: list[tuple[float, int]] = []
            tick, last_rel = 0, 0.0
            while True:
                tick += 1
                at = tick * 1000 / self.tick_hz + conn * 0.3
                if at >= self.seconds * 1000 + 500:
                    break
                ack = max((q for _, r, q in inputs if r <= at), default=0)
                rel = max(last_rel, at + self.down_ms + rnd.uniform(0, 2 * self.jitter_ms))
                last_rel = rel
                raw = ack % self.wrap if self.wrap else ack
                s.send(S2C, {"t": "state", "tick": tick, "time": round(at), "ack": raw, "x": 4 * ack, "y": 0}, at,
                       rel - at, conn=conn)
                states.append((rel, ack))
            # the oracle, straight from the definitions (brute force)
            delays = [min(r for r, k in states if k >= q) - a for a, _, q in inputs
                      if any(k >= q for _, k in states)]
            in_flight = []
            for a, _, _q in inputs:
                seen = max((k for r, k in states if r <= a), default=0)
                in_flight.append(sum(1 for a2, _, q2 in inputs if a2 <= a and q2 > seen))
            rels = sorted(r for r, _ in states)
            gaps = [b - a for a, b in itertools.pairwise(rels)]
            corr = []
            done: set[int] = set()
            for _, k in sorted(states):
                if k and k not in done:
                    done.add(k)
                    px, py = predicted[k]
                    corr.append(math.hypot(px - 4 * k, py))
            truth[conn] = {"delays": delays, "in_flight": in_flight, "gaps": gaps, "corrections": corr,
                           "inputs": len(inputs)}
        return s, truth


def nearest_rank(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[max(1, math.ceil(q * len(v))) - 1]


@pytest.mark.parametrize("game", [
    Game(),
    Game(up_ms=100, down_ms=100),
    Game(up_ms=40, down_ms=120, jitter_ms=15),
    Game(up_ms=75, down_ms=25, mispredict_every=7, clients=3),
    Game(input_hz=20, tick_hz=60, up_ms=30, down_ms=30),
    Game(up_ms=50, down_ms=50, wrap=256, seconds=6),  # a byte's sequence numbers wrap around several times
], ids=["no lag", "100 each way", "jitter", "three clients mispredicting", "more ticks than inputs", "wraparound"])
def test_a_simulated_game_matches_the_brute_force_oracle(game: Game) -> None:
    s, truth = game.run()
    report = analyse(s.records())
    assert not report.problems, report.problems
    for conn, want in truth.items():
        r = report.connections[conn]
        assert r.inputs == want["inputs"]
        assert r.input_ack_ms.count == len(want["delays"])
        for q, got in ((0.5, r.input_ack_ms.p50), (0.99, r.input_ack_ms.p99), (1.0, r.input_ack_ms.max)):
            assert got == pytest.approx(nearest_rank(want["delays"], q), abs=1e-6)
        assert r.input_ack_ms.min == pytest.approx(min(want["delays"]), abs=1e-6)
        assert r.in_flight.max == max(want["in_flight"])
        assert r.in_flight.mean == pytest.approx(sum(want["in_flight"]) / len(want["in_flight"]))
        assert r.snapshot_interval_ms.p99 == pytest.approx(nearest_rank(want["gaps"], 0.99), abs=1e-6)
        assert r.corrections_px.count == len(want["corrections"])
        assert r.corrections_px.max == pytest.approx(max(want["corrections"]))
        assert r.added_ms.min >= game.up_ms + game.down_ms - 1e-6


def test_lag_shows_up_in_the_delay_and_the_inputs_in_flight() -> None:
    """The lesson: 200 ms of added round trip costs ~200 ms more input-to-ack delay and keeps ~12 more of a 60 Hz
    client's inputs in flight."""
    base = analyse(Game().run()[0].records()).overall
    lag = analyse(Game(up_ms=100, down_ms=100).run()[0].records()).overall
    assert lag.input_ack_ms.p50 - base.input_ack_ms.p50 == pytest.approx(200, abs=17)
    assert lag.in_flight.p50 - base.in_flight.p50 == pytest.approx(12, abs=2)
    assert lag.added_ms.p50 == pytest.approx(200)
    assert base.added_ms.max == 0


def test_the_interpolation_delay_covers_the_gaps() -> None:
    # 98 gaps of 50 ms and two of 150 ms (a lost snapshot, twice)
    s = Session()
    t = 0.0
    for i in range(101):
        s.send(S2C, {"t": "state", "tick": i}, t)
        t += 150 if i in (40, 80) else 50
    o = analyse(s.records()).overall
    ip = o.interpolation
    assert (ip.intervals, ip.median_ms, ip.two_intervals_ms, ip.p99_ms) == (100, 50, 100, 150)
    assert ip.recommended_ms == 150  # two intervals (100) would run dry at each lost snapshot
    assert o.snapshot_rate_hz == pytest.approx(100 / 5.2)  # 100 intervals over 5.2 s
    steady = interpolation_advice([0] * 33 + [100])  # 100 intervals of 33 ms: Valve's two intervals win
    assert (steady.p99_ms, steady.recommended_ms) == (33, 66)
    assert math.isnan(interpolation_advice([0] * 10).recommended_ms)


def test_jitter_widens_the_snapshot_intervals_and_the_advice() -> None:
    calm = analyse(Game(down_ms=50).run()[0].records()).overall.interpolation
    rough = analyse(Game(down_ms=50, jitter_ms=30).run()[0].records()).overall.interpolation
    assert calm.p99_ms <= 35 and calm.recommended_ms == pytest.approx(2 * calm.median_ms)
    assert rough.p99_ms > calm.p99_ms + 20 and rough.recommended_ms > calm.recommended_ms


# ------------------------------------------------------------------------------------------ hostile and odd values


def test_odd_values_are_counted_and_skipped_never_raised() -> None:
    s = Session("json")
    s.send(C2S, {"t": "input", "seq": 1, "x": 0, "y": 0}, 0)
    for i, bad in enumerate(["abc", 2 ** 70, -5, 1.5, True, None, float("inf"), float("nan"), [1], {"a": 1}]):
        s.send(C2S, {"t": "input", "seq": bad, "x": 0, "y": 0}, 1 + i)
    s.send(C2S, {"t": "input", "x": 0}, 20)  # no seq at all
    s.send(C2S, {"t": "input", "seq": 2, "x": "left", "y": 0}, 21)  # a position that is not one
    s.send(C2S, {"t": "input", "seq": 3, "x": 1e308 * 10, "y": 2 ** 80}, 22)
    s.send(S2C, {"t": "state", "ack": 0, "x": 0, "y": 0}, 29)
    s.send(S2C, {"t": "state", "ack": "x", "x": 0, "y": 0}, 30)
    s.send(S2C, {"t": "state", "ack": 3, "x": 0, "y": 0}, 40)
    s.send(S2C, {"t": "state", "ack": 1, "x": 0, "y": 0}, 50)  # goes back
    s.send(C2S, b"", 60, raw=b"\x00\x00\x00\x05\xc1\xc1\xc1\xc1\xc1")  # msgpack that does not decode
    s.send(C2S, b"", 61, raw=b"\xff" * 64)
    report = analyse(s.records())
    o = report.overall
    assert (o.inputs, o.acked) == (3, 3)
    problems = dict(report.problems)
    text = "\n".join(problems)
    for why in ("seq not a number", "seq out of range", "seq not a whole number", "seq missing",
                "ack not a number", "acknowledgement went back", "predicted (x, y) not a number",
                "predicted (x, y) not finite or out of range"):
        assert why in text, (why, text)
    assert o.corrections_px.count == 0  # ack 3 (the only one) is for an input whose position was not one


def test_a_sequence_that_starts_again_resets_the_inputs_in_flight() -> None:
    s = Session()
    for i in range(1, 301):
        s.send(C2S, {"t": "input", "seq": i}, i)
    s.send(S2C, {"t": "state", "ack": 250}, 400)
    for i in range(1, 4):  # the client restarted its numbering without reconnecting
        s.send(C2S, {"t": "input", "seq": i}, 500 + i)
    s.send(S2C, {"t": "state", "ack": 2}, 600)
    a = LabAnalysis(s.store())
    a.run_to_end(finish=True)
    c = a.tracker.conns[1]
    assert len(c.pending) == 1 and c.in_flight.y[-1] == 1
    assert any("went back from 300 to" in p for p in a.tracker.problems)


def test_seq_space_unwraps_bytes_and_16_bits() -> None:
    s = SeqSpace()
    got = [s.input(v) for v in [250, 251, 255, 0, 1, 200, 255, 3]]
    assert got == [250, 251, 255, 256, 257, 456, 511, 515]
    assert s.ack(254) == 510 and s.ack(2) == 514
    s16 = SeqSpace()
    got = [s16.input(v) for v in [65534, 65535, 0, 1]]
    assert got == [65534, 65535, 65536, 65537] and s16.ack(65535) == 65535
    big = SeqSpace()
    assert big.input(2 ** 62) == 2 ** 62 and big.input(5) == 5  # not a wrap: far less than half of 2**63 apart


def test_memory_stays_bounded_over_a_long_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """Work per message is O(1) and everything kept is capped: series, pending inputs, exact digest values (the
    caps made small so the test is quick; the code reads them at run time)."""
    from inspector.lab import core

    monkeypatch.setattr(core, "SERIES_CAP", 400)
    monkeypatch.setattr(core, "EXACT_CAP", 1000)
    monkeypatch.setattr(core, "PENDING_MAX", 300)
    SERIES_CAP, EXACT_CAP, PENDING_MAX = core.SERIES_CAP, core.EXACT_CAP, core.PENDING_MAX
    tr = core.LabTracker(Hints())
    n = 3 * SERIES_CAP
    for i in range(1, n + 1):
        tr.message(1, C2S, {"t": "input", "seq": i, "x": i, "y": 0}, i * MS, i * MS)
        if i % 2 == 0:
            tr.message(1, S2C, {"t": "state", "ack": i - 1, "x": i - 1, "y": 0}, i * MS, i * MS + 5 * MS)
    tr.finish()
    c = tr.conns[1]
    assert len(c.delay) <= SERIES_CAP and len(c.in_flight) <= SERIES_CAP and c.delay.added > SERIES_CAP
    assert tr.work == n + 2 * (n // 2)  # each message once, each state once more when it reaches the client
    assert c.delay_d.count == n - 1 and c.correction_d.count == n // 2
    # past EXACT_CAP values a digest keeps buckets: the percentiles stay within 1 %
    d = Digest()
    rnd = random.Random(3)
    vals = [rnd.uniform(1, 500) for _ in range(EXACT_CAP + 10_000)]
    for v in vals:
        d.add(v)
    assert d._exact is None and d._bins is not None and len(d._bins) < 1000
    assert d.quantile(0.99) == pytest.approx(nearest_rank(vals, 0.99), rel=0.01)
    assert (d.lo, d.hi) == (min(vals), max(vals))
    # inputs never acknowledged: the oldest are forgotten past PENDING_MAX
    tr2 = core.LabTracker(Hints())
    for i in range(PENDING_MAX + 10):
        tr2.message(1, C2S, {"seq": i}, i, i)
    assert len(tr2.conns[1].pending) == PENDING_MAX and tr2.problems


def test_a_peer_inventing_a_new_type_name_in_every_message_cannot_grow_the_hints() -> None:
    from inspector.lab.hints import MAX_TYPES

    s = Session()
    for i in range(MAX_TYPES + 200):
        s.send(S2C, {"t": f"kind{i}", "tick": i}, i)
    a = LabAnalysis(s.store())
    a.run_to_end()
    assert len(a.hints.seen) <= MAX_TYPES + 1 and len(a.hints.inferred) <= MAX_TYPES + 1


def test_the_store_being_cleared_starts_over() -> None:
    store = hand_session().store()
    a = LabAnalysis(store)
    a.run_to_end(finish=True)
    g = a.generation
    store.clear()
    a.update()
    assert a.generation == g + 1 and not a.tracker.conns and not a.hints.seen


def test_coalesced_reads_count_each_value() -> None:
    """Raw framing: one read holds three JSON inputs."""
    s = Session("json")
    raw = b"".join(json.dumps({"t": "input", "seq": i}).encode() for i in (1, 2, 3))
    s.send(C2S, None, 0, raw=raw)
    s.send(S2C, None, 30, raw=json.dumps({"t": "state", "ack": 3}).encode())
    o = analyse(s.records()).overall
    assert (o.inputs, o.acked, o.in_flight.max) == (3, 3, 3)


def test_the_lab_package_does_not_import_qt() -> None:
    code = ("import sys\nimport inspector.lab\nbad = [m for m in sys.modules if m.startswith(('PySide6', "
            "'pyqtgraph'))]\nassert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_analyse_store_takes_a_hints_file(tmp_path: Any) -> None:
    f = tmp_path / "h.toml"
    f.write_text('[c2s.input]\nseq = "seq"\npredicted = ""\n[s2c.state]\nack = "ack"\n')
    report = analyse_store(hand_session().store(), f)
    assert report.overall.corrections_px.count == 0  # the file said the inputs carry no prediction
    srcs = {(t, r): s for t, r, _, s in report.hints}
    assert srcs[("c2s input", "seq")] == "file" and srcs[("s2c state", "pos")] == "inferred"


def _write_session(path: Any, records: list[Record]) -> None:
    from proxy.codec import record_to_dict
    from proxy.model import Clock
    from proxy.session import encode_header, encode_record

    data = encode_header(clock=Clock(1, 2), listen=("127.0.0.1", 1), target=("127.0.0.1", 2),
                         framing={"c2s": "len32be", "s2c": "len32be", "max_frame": 1 << 20}, created_wall_ns=3)
    for r in records:
        data += encode_record(msgpack.packb(record_to_dict(r), use_bin_type=True))
    path.write_bytes(data)


def test_a_saved_session_gives_the_same_report_as_the_records(tmp_path: Any) -> None:
    from inspector.lab import analyse_session

    s, _truth = Game(up_ms=50, down_ms=50, mispredict_every=4).run()
    path = tmp_path / "game.sockscope"
    _write_session(path, s.records())
    assert analyse_session(path).to_dict() == analyse(s.records()).to_dict()


@pytest.mark.timeout(60)
def test_python_m_inspector_lab_prints_the_report(tmp_path: Any) -> None:
    path = tmp_path / "game.sockscope"
    _write_session(path, hand_session().records())
    out = subprocess.run([sys.executable, "-m", "inspector.lab", str(path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "input → ack: median 155 ms" in out.stdout and "corrections:" in out.stdout
    js = subprocess.run([sys.executable, "-m", "inspector.lab", str(path), "--json"], capture_output=True,
                        text=True, timeout=60)
    assert json.loads(js.stdout)["overall"]["inputs"] == 3
    bad = tmp_path / "h.toml"
    bad.write_text('[c2s.input]\nack = "ack"\n')
    err = subprocess.run([sys.executable, "-m", "inspector.lab", str(path), "--hints", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert err.returncode == 2 and err.stderr.startswith(f"error: {bad}:2: ")
    nosuch = subprocess.run([sys.executable, "-m", "inspector.lab", str(tmp_path / "nope")], capture_output=True,
                            text=True, timeout=60)
    assert nosuch.returncode == 2 and "cannot open" in nosuch.stderr
