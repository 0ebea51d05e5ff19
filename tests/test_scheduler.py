"""Tests for proxy.scheduler: TCP order, never early, bandwidth, delay accounting, live changes, faults, thaw."""

from __future__ import annotations

import math
import random

from hypothesis import given
from hypothesis import strategies as st

from proxy.conditions import DirectionConditions, Jitter, Spike
from proxy.model import DelayReason
from proxy.scheduler import DirectionScheduler, Scheduled

MS = 1_000_000
S = 1_000_000_000
LAT, JIT, SPK, QUE, BW, FRZ = (
    DelayReason.LATENCY,
    DelayReason.JITTER,
    DelayReason.SPIKE,
    DelayReason.QUEUE,
    DelayReason.BANDWIDTH,
    DelayReason.FREEZE,
)


def run(sched: DirectionScheduler, cond: DirectionConditions, arrivals: list[int], sizes: list[int]) -> list[Scheduled]:
    return [sched.schedule(a, n, cond) for a, n in zip(arrivals, sizes, strict=True)]


conds = st.builds(
    DirectionConditions,
    latency_ms=st.floats(0, 500),
    jitter=st.builds(
        Jitter,
        ms=st.floats(0, 300),
        distribution=st.sampled_from(["uniform", "normal", "exponential"]),
        cap_ms=st.none() | st.floats(0, 1000),
    ),
    bandwidth_bps=st.none() | st.floats(100, 1e8),
    spikes=st.lists(
        st.builds(
            lambda add, dur, period, start: Spike(add, dur, dur + period if period else None, start),
            st.floats(0, 2000),
            st.floats(0.001, 2),
            st.none() | st.floats(0, 5),
            st.integers(0, 5 * S),
        ),
        max_size=2,
    ).map(tuple),
    loss_pct=st.floats(0, 50),
)
traffic = st.lists(st.tuples(st.integers(0, 200 * MS), st.integers(0, 70_000)), min_size=1, max_size=60)


def arrivals_of(gaps: list[tuple[int, int]], t0: int = 10 * S) -> tuple[list[int], list[int]]:
    t, arrivals, sizes = t0, [], []
    for gap, size in gaps:
        t += gap
        arrivals.append(t)
        sizes.append(size)
    return arrivals, sizes


# ---------------------------------------------------------------------------------------------------------
# Properties


@given(cond=conds, gaps=traffic, seed=st.integers(0, 2**32 - 1))
def test_never_reorders_never_early_and_delays_add_up(
    cond: DirectionConditions, gaps: list[tuple[int, int]], seed: int
) -> None:
    arrivals, sizes = arrivals_of(gaps)
    out = run(DirectionScheduler(random.Random(seed)), cond, arrivals, sizes)
    releases = [s.release_ns for s in out]
    assert releases == sorted(releases), "TCP order broken"
    for a, s in zip(arrivals, out, strict=True):
        assert s.release_ns >= a + cond.latency_ns, "released before its latency"
        assert sum(ns for _, ns in s.delays) == s.release_ns - a
        assert s.added_ns == s.release_ns - a
        assert all(ns > 0 for _, ns in s.delays)
        assert len({r for r, _ in s.delays}) == len(s.delays)
        assert s.delay(LAT) == cond.latency_ns


@given(cond=conds, gaps=traffic, seed=st.integers(0, 2**32 - 1))
def test_respects_bandwidth_over_any_window(cond: DirectionConditions, gaps: list[tuple[int, int]], seed: int) -> None:
    bw = cond.bandwidth_bps or 10_000.0
    cond = DirectionConditions(
        latency_ms=cond.latency_ms, jitter=cond.jitter, bandwidth_bps=bw, spikes=cond.spikes, loss_pct=cond.loss_pct
    )
    arrivals, sizes = arrivals_of(gaps)
    out = run(DirectionScheduler(random.Random(seed)), cond, arrivals, sizes)
    # Bytes of messages i+1..k, all released within (release_i, release_k], fit in bandwidth × elapsed.
    for i in range(len(out)):
        sent = 0
        for k in range(i + 1, len(out)):
            sent += sizes[k]
            elapsed_s = (out[k].release_ns - out[i].release_ns) / S
            assert sent <= bw * elapsed_s * (1 + 1e-9) + 1e-6


def test_burst_drains_at_the_link_rate() -> None:
    # 100 messages of 1000 B at once through 64 KB/s with 50 ms latency: the last leaves 50 ms + 100/64 s later.
    cond = DirectionConditions(latency_ms=50, bandwidth_bps=64_000)
    out = run(DirectionScheduler(random.Random(0)), cond, [0] * 100, [1000] * 100)
    assert out[-1].release_ns == 50 * MS + math.ceil(1000 * S / 64_000) * 100
    # Bytes released by time t never exceed bandwidth × (t − first ready) + one message.
    for k, s in enumerate(out):
        assert (k + 1) * 1000 <= 64_000 * (s.release_ns - 50 * MS) / S + 1000
    assert out[-1].delay(QUE) == 99 * math.ceil(1000 * S / 64_000)


def test_same_seed_same_schedule() -> None:
    cond = DirectionConditions(latency_ms=20, jitter=Jitter(30, "exponential"), loss_pct=5)
    arrivals = [i * 7 * MS for i in range(500)]
    a = run(DirectionScheduler(random.Random(99)), cond, arrivals, [100] * 500)
    b = run(DirectionScheduler(random.Random(99)), cond, arrivals, [100] * 500)
    assert a == b


# ---------------------------------------------------------------------------------------------------------
# Jitter clumps instead of reordering


def test_jitter_clumps_rather_than_reorders() -> None:
    cond = DirectionConditions(latency_ms=100, jitter=Jitter(50))
    arrivals = [i * MS for i in range(2000)]  # 1 message per ms, jitter up to 100 ms
    out = run(DirectionScheduler(random.Random(5)), cond, arrivals, [10] * 2000)
    assert [s.release_ns for s in out] == sorted(s.release_ns for s in out)
    queued = [s for s in out if s.delay(QUE) > 0]
    assert len(queued) > 1000  # most messages wait behind an earlier, unluckier one
    assert len({s.release_ns for s in out}) < 1000  # ... and leave together with it (clumps)


def test_jitter_mean_shows_in_the_schedule() -> None:
    # Sparse traffic (1 s apart) never queues, so the average added delay is latency + J.
    cond = DirectionConditions(latency_ms=100, jitter=Jitter(20, "normal"))
    n = 20_000
    arrivals = [i * S for i in range(n)]
    out = run(DirectionScheduler(random.Random(11)), cond, arrivals, [10] * n)
    mean_ms = sum(s.release_ns - a for s, a in zip(out, arrivals, strict=True)) / n / MS
    assert abs(mean_ms - 120) < 5 * 10 / math.sqrt(n)
    assert all(s.delay(QUE) == 0 for s in out)


# ---------------------------------------------------------------------------------------------------------
# Spikes and loss


def test_spike_applies_by_arrival_time_and_what_follows_queues() -> None:
    spike = Spike(add_ms=800, for_s=2, every_s=30, start_ns=0)
    cond = DirectionConditions(latency_ms=10, spikes=(spike,))
    sched = DirectionScheduler(random.Random(0))
    inside = sched.schedule(1500 * MS, 10, cond)
    assert inside.release_ns == 2310 * MS
    assert inside.delays == ((LAT, 10 * MS), (SPK, 800 * MS))
    after = sched.schedule(2 * S + 1, 10, cond)  # just after the window: waits behind the spiked message
    assert after.release_ns == inside.release_ns
    assert after.delay(SPK) == 0 and after.delay(QUE) > 0
    later = sched.schedule(5 * S, 10, cond)
    assert later.delays == ((LAT, 10 * MS),)
    next_period = sched.schedule(31 * S, 10, cond)
    assert next_period.delay(SPK) == 800 * MS


def test_stacked_spikes_add_up() -> None:
    cond = DirectionConditions(spikes=(Spike(100, 1), Spike(50, 10, 20)))
    s = DirectionScheduler(random.Random(0)).schedule(500 * MS, 1, cond)
    assert s.delays == ((SPK, 150 * MS),)


def test_loss_is_a_retransmission_delay_with_head_of_line_blocking() -> None:
    cond = DirectionConditions(latency_ms=50, loss_pct=10)
    rto = 200 * MS  # max(200 ms, 2 × (2 × 50 ms))
    n = 20_000
    arrivals = [i * S for i in range(n)]  # sparse, so only retransmissions delay anything
    out = run(DirectionScheduler(random.Random(3)), cond, arrivals, [10] * n)
    spiked = [s.delay(SPK) for s in out if s.delay(SPK)]
    assert abs(len(spiked) / n - 0.10) < 5 * math.sqrt(0.1 * 0.9 / n)
    # A lost retransmission doubles the timeout: delays are rto, 3 × rto (rto + 2 rto), ...
    assert set(spiked) <= {rto, 3 * rto, 7 * rto, 15 * rto}
    assert sum(1 for d in spiked if d == 3 * rto) > 0

    sched = DirectionScheduler(random.Random(0))
    lossy = DirectionConditions(loss_pct=99.9, rto_ms=300)
    first = sched.schedule(0, 10, lossy)
    assert first.delay(SPK) >= 300 * MS
    follower = sched.schedule(1 * MS, 10, DirectionConditions())
    assert follower.release_ns == first.release_ns and follower.delay(QUE) > 0  # head-of-line blocking


def test_loss_is_bounded() -> None:
    cond = DirectionConditions(loss_pct=99.99, rto_ms=100)
    s = DirectionScheduler(random.Random(1)).schedule(0, 1, cond)
    assert s.delay(SPK) <= 100 * MS * (2**6 - 1)


# ---------------------------------------------------------------------------------------------------------
# Live changes


def test_live_change_keeps_already_scheduled_times() -> None:
    sched = DirectionScheduler(random.Random(0))
    slow = DirectionConditions(latency_ms=500, jitter=Jitter(100))
    before = run(sched, slow, [i * 10 * MS for i in range(20)], [100] * 20)
    snapshot = [(s.release_ns, s.delays) for s in before]
    fast = DirectionConditions(latency_ms=0)
    after = run(sched, fast, [200 * MS + i * MS for i in range(20)], [100] * 20)
    assert [(s.release_ns, s.delays) for s in before] == snapshot
    # Lowering the latency cannot let new messages overtake old ones: they queue behind the last slow one.
    assert after[0].release_ns == before[-1].release_ns
    assert after[0].delays == ((QUE, before[-1].release_ns - 200 * MS),)
    assert sched.last_release_ns == max(s.release_ns for s in after)


def test_is_idle_guards_the_fast_path() -> None:
    sched = DirectionScheduler(random.Random(0))
    assert sched.is_idle(0) and sched.last_release_ns is None
    s = sched.schedule(0, 10, DirectionConditions(latency_ms=100))
    assert not sched.is_idle(99 * MS)
    assert sched.is_idle(s.release_ns)
    sched.reset()
    assert sched.last_release_ns is None


def test_passthrough_schedules_at_arrival() -> None:
    sched = DirectionScheduler(random.Random(0))
    assert sched.schedule(123, 10_000, DirectionConditions()) == Scheduled(123, ())


# ---------------------------------------------------------------------------------------------------------
# Faults


def test_one_shot_faults_are_consumed_in_order() -> None:
    sched = DirectionScheduler(random.Random(0))
    cond = DirectionConditions(drop_next=2, duplicate_next=1)
    decisions = []
    for _ in range(5):
        fault, cond = sched.decide_fault(cond)
        decisions.append(fault)
    assert decisions == ["drop", "drop", "duplicate", None, None]
    assert cond == DirectionConditions()
    assert cond.is_passthrough


def test_fault_fractions_use_the_seeded_rng() -> None:
    n = 20_000
    cond = DirectionConditions(drop_fraction=0.2, duplicate_fraction=0.5)
    sched = DirectionScheduler(random.Random(8))
    faults = [sched.decide_fault(cond)[0] for _ in range(n)]
    drop, dup = faults.count("drop") / n, faults.count("duplicate") / n
    assert abs(drop - 0.2) < 5 * math.sqrt(0.2 * 0.8 / n)
    assert abs(dup - 0.8 * 0.5) < 5 * math.sqrt(0.4 * 0.6 / n)  # duplicates are rolled on survivors
    again = DirectionScheduler(random.Random(8))
    assert [again.decide_fault(cond)[0] for _ in range(n)] == faults


def test_no_fault_configured_consumes_no_randomness() -> None:
    rng = random.Random(4)
    state = rng.getstate()
    sched = DirectionScheduler(rng)
    assert sched.decide_fault(DirectionConditions(latency_ms=5)) == (None, DirectionConditions(latency_ms=5))
    assert rng.getstate() == state


# ---------------------------------------------------------------------------------------------------------
# Freeze and thaw (the relay holds; the scheduler recomputes release times)


def test_thaw_releases_at_max_of_now_and_schedule_keeping_order() -> None:
    sched = DirectionScheduler(random.Random(0))
    cond = DirectionConditions(latency_ms=100)
    held = run(sched, cond, [0, 1 * S, 5 * S], [10, 10, 10])
    thawed = sched.thaw(3 * S, held)
    assert [s.release_ns for s in thawed] == [3 * S, 3 * S, 5 * S + 100 * MS]
    assert thawed[0].delays == ((LAT, 100 * MS), (FRZ, 3 * S - 100 * MS))
    assert thawed[2] is held[2]  # not delayed by the freeze at all
    assert sched.thaw_release(100 * MS, 3 * S) == 3 * S
    assert sched.thaw_release(5 * S, 3 * S) == 5 * S
    later = sched.schedule(3 * S + 1, 10, cond)
    assert later.release_ns >= thawed[-1].release_ns


def test_thaw_drains_at_the_link_rate_and_delays_still_add_up() -> None:
    sched = DirectionScheduler(random.Random(0))
    cond = DirectionConditions(bandwidth_bps=1000)  # 1 byte per ms
    arrivals = [0, 0, 0]
    held = run(sched, cond, arrivals, [100, 100, 100])
    now = 10 * S
    thawed = sched.thaw(now, held)
    assert [s.release_ns for s in thawed] == [now + 100 * MS, now + 200 * MS, now + 300 * MS]
    for a, s in zip(arrivals, thawed, strict=True):
        assert s.added_ns == s.release_ns - a
        assert s.delay(FRZ) > 0
    follower = sched.schedule(now, 100, cond)
    assert follower.release_ns == now + 400 * MS
    assert sched.thaw(now, []) == []


@given(
    gaps=traffic,
    thaw_at=st.integers(0, 20 * S),
    bw=st.none() | st.floats(1000, 1e7),
    seed=st.integers(0, 2**32 - 1),
)
def test_thaw_never_reorders(gaps: list[tuple[int, int]], thaw_at: int, bw: float | None, seed: int) -> None:
    cond = DirectionConditions(latency_ms=50, jitter=Jitter(30), bandwidth_bps=bw)
    arrivals, sizes = arrivals_of(gaps, t0=0)
    sched = DirectionScheduler(random.Random(seed))
    thawed = sched.thaw(thaw_at, run(sched, cond, arrivals, sizes))
    releases = [s.release_ns for s in thawed]
    assert releases == sorted(releases)
    assert all(r >= thaw_at for r in releases)
    for a, s in zip(arrivals, thawed, strict=True):
        assert s.added_ns == s.release_ns - a
