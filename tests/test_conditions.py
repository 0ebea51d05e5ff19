"""Tests for proxy.conditions: value validation, jitter semantics, spike windows, wire form and CLI syntax."""

from __future__ import annotations

import math
import random
import statistics

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.conditions import (
    PASSTHROUGH,
    Conditions,
    ConditionsError,
    DirectionConditions,
    GilbertElliott,
    Jitter,
    Spike,
    format_bandwidth,
    parse_bandwidth,
    parse_jitter,
    parse_latency,
    parse_spike,
)
from proxy.model import Direction
from proxy.options import conditions_from_cli

C2S, S2C = Direction.C2S, Direction.S2C
DISTRIBUTIONS = ("uniform", "normal", "exponential")
# Upper bounds on each distribution's standard deviation (clipping only shrinks it), for standard errors.
SD_FACTOR = {"uniform": 1 / math.sqrt(3), "normal": 0.5, "exponential": 1.0}


# ---------------------------------------------------------------------------------------------------------
# Jitter: "jitter J ms" means an extra delay with mean J, whatever the distribution.


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_jitter_sample_mean_is_the_documented_mean(distribution: str) -> None:
    j = Jitter(20, distribution)  # type: ignore[arg-type]
    rng = random.Random(1234)
    n = 20_000
    samples = [j.sample_ms(rng) for _ in range(n)]
    tolerance = 5 * SD_FACTOR[distribution] * 20 / math.sqrt(n)  # five standard errors
    assert abs(statistics.fmean(samples) - 20) < tolerance
    assert j.mean_ms == pytest.approx(20, rel=1e-4)
    assert min(samples) >= 0
    assert max(samples) <= j.effective_cap_ms


def test_jitter_shapes() -> None:
    rng = random.Random(7)
    uniform = [Jitter(10, "uniform").sample_ms(rng) for _ in range(5000)]
    assert max(uniform) <= 20 and max(uniform) > 19
    normal = [Jitter(10, "normal").sample_ms(rng) for _ in range(5000)]
    assert statistics.stdev(normal) == pytest.approx(5, rel=0.1)
    exponential = [Jitter(10, "exponential").sample_ms(rng) for _ in range(5000)]
    assert max(exponential) > 40  # the long tail is the point of this distribution
    assert Jitter(10, "exponential").effective_cap_ms == 100


@settings(max_examples=25, deadline=None)
@given(
    ms=st.floats(0.5, 300),
    distribution=st.sampled_from(DISTRIBUTIONS),
    cap_factor=st.none() | st.floats(0.1, 12),
    seed=st.integers(0, 2**32 - 1),
)
def test_jitter_mean_with_any_cap_matches_mean_ms(
    ms: float, distribution: str, cap_factor: float | None, seed: int
) -> None:
    j = Jitter(ms, distribution, None if cap_factor is None else ms * cap_factor)  # type: ignore[arg-type]
    rng = random.Random(seed)
    n = 4000
    mean = statistics.fmean(j.sample_ms(rng) for _ in range(n))
    assert abs(mean - j.mean_ms) <= 5 * SD_FACTOR[distribution] * ms / math.sqrt(n) + 1e-9
    assert j.mean_ms <= ms * (1 + 1e-12)


def test_zero_jitter_draws_nothing() -> None:
    rng = random.Random(1)
    state = rng.getstate()
    assert Jitter().sample_ns(rng) == 0
    assert rng.getstate() == state


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ms": -1}, "jitter.ms: must be >= 0"),
        ({"ms": math.nan}, "jitter.ms: expected a finite number"),
        ({"ms": 5, "distribution": "gauss"}, "jitter.distribution: expected one of uniform, normal, exponential"),
        ({"ms": 5, "cap_ms": -2}, "jitter.cap_ms: must be >= 0"),
        ({"ms": True}, "jitter.ms: expected a number"),
    ],
)
def test_jitter_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConditionsError, match=message):
        Jitter(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------
# Spikes


def test_periodic_spike_window_edges() -> None:
    s = Spike(add_ms=800, for_s=2, every_s=30, start_ns=0)
    second = 30 * 10**9
    assert [s.active(t) for t in (second - 1, second, second + 2 * 10**9 - 1, second + 2 * 10**9)] == [
        False,
        True,
        True,
        False,
    ]


def test_one_shot_spike_window_is_half_open() -> None:
    s = Spike(add_ms=500, for_s=1, start_ns=10_000)
    assert s.extra_ns(9_999) == 0
    assert s.extra_ns(10_000) == 500_000_000
    assert s.extra_ns(10_000 + 999_999_999) == 500_000_000
    assert s.extra_ns(10_000 + 1_000_000_000) == 0
    assert s.extra_ns(10**15) == 0


@given(k=st.integers(0, 1000), offset=st.integers(0, 30 * 10**9 - 1), start=st.integers(-(10**12), 10**12))
def test_periodic_spike_windows(k: int, offset: int, start: int) -> None:
    s = Spike(add_ms=800, for_s=2, every_s=30, start_ns=start)
    t = start + k * 30 * 10**9 + offset
    assert s.active(t) == (offset < 2 * 10**9)
    assert s.extra_ns(t) == (800_000_000 if offset < 2 * 10**9 else 0)
    assert not s.active(start - 1 - offset)  # nothing before the first period


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"add_ms": 100, "for_s": 0}, "spike.for_s: must be > 0"),
        ({"add_ms": -1, "for_s": 1}, "spike.add_ms: must be >= 0"),
        ({"add_ms": 100, "for_s": 5, "every_s": 2}, "must not be longer than every"),
        ({"add_ms": 100, "for_s": 1, "every_s": 0}, "spike.every_s: must be > 0"),
        ({"add_ms": 100, "for_s": 1, "start_ns": 1.5}, "spike.start_ns: expected an integer"),
    ],
)
def test_spike_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConditionsError, match=message):
        Spike(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------
# DirectionConditions / Conditions


def test_passthrough_defaults() -> None:
    assert DirectionConditions().is_passthrough
    assert PASSTHROUGH.is_passthrough
    assert PASSTHROUGH.describe() == "c2s: no change; s2c: no change"


@pytest.mark.parametrize(
    "change",
    [
        {"latency_ms": 1},
        {"jitter": Jitter(1)},
        {"bandwidth_bps": 1000},
        {"spikes": (Spike(100, 1, 10),)},
        {"frozen": True},
        {"drop_next": 1},
        {"drop_fraction": 0.1},
        {"duplicate_fraction": 0.1},
        {"duplicate_next": 1},
        {"loss_pct": 1},
    ],
)
def test_anything_that_shapes_traffic_disables_the_fast_path(change: dict[str, object]) -> None:
    cond = DirectionConditions(**change)  # type: ignore[arg-type]
    assert not cond.is_passthrough
    assert not Conditions(c2s=cond).is_passthrough
    assert cond.describe() != "no change"


def test_rto_only_changes_nothing_by_itself() -> None:
    assert DirectionConditions(rto_ms=300).is_passthrough  # no loss, so the RTO is never used


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"latency_ms": -5}, "latency_ms: must be >= 0, got -5"),
        ({"latency_ms": math.inf}, "latency_ms: expected a finite number"),
        ({"latency_ms": "100"}, "latency_ms: expected a number"),
        ({"bandwidth_bps": 0}, "bandwidth_bps: must be > 0"),
        ({"drop_next": -1}, "drop_next: expected a whole number >= 0"),
        ({"drop_next": 1.5}, "drop_next: expected a whole number >= 0"),
        ({"drop_fraction": 1.5}, "drop_fraction: must be between 0 and 1"),
        ({"duplicate_fraction": -0.1}, "duplicate_fraction: must be between 0 and 1"),
        ({"loss_pct": 100}, r"loss_pct: must be below 100.*use frozen"),
        ({"rto_ms": 0}, "rto_ms: must be > 0"),
        ({"frozen": 1}, "frozen: expected true or false"),
        ({"spikes": [Spike(1, 1)]}, "spikes: expected a tuple of Spike"),
    ],
)
def test_direction_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConditionsError, match=message):
        DirectionConditions(**kwargs)  # type: ignore[arg-type]


def test_effective_rto() -> None:
    assert DirectionConditions(latency_ms=10).effective_rto_ms == 200  # the floor
    # RTT ≈ 2 × (latency + mean jitter) = 2 × 150 = 300 ms; RTO = 2 × RTT.
    assert DirectionConditions(latency_ms=130, jitter=Jitter(20)).effective_rto_ms == pytest.approx(600)
    assert DirectionConditions(latency_ms=500, rto_ms=250).effective_rto_ms == 250


def test_transmit_ns_rounds_up() -> None:
    cond = DirectionConditions(bandwidth_bps=3)
    assert cond.transmit_ns(1) == 333_333_334
    assert cond.transmit_ns(0) == 0
    assert DirectionConditions().transmit_ns(10**6) == 0


def test_for_direction_and_replace_direction() -> None:
    up, down = DirectionConditions(latency_ms=30), DirectionConditions(latency_ms=120)
    c = Conditions(c2s=up, s2c=down)
    assert c.for_direction(C2S) is up and c.for_direction(S2C) is down
    faster = DirectionConditions(latency_ms=5)
    c2 = c.replace_direction(S2C, faster)
    assert c2.s2c is faster and c2.c2s is up
    assert c.s2c is down  # values are immutable
    assert Conditions.symmetric(up) == Conditions(c2s=up, s2c=up)


# ---------------------------------------------------------------------------------------------------------
# Wire form

jitters = st.builds(
    Jitter,
    ms=st.floats(0, 1000),
    distribution=st.sampled_from(DISTRIBUTIONS),
    cap_ms=st.none() | st.floats(0, 5000),
)
spikes = st.builds(
    lambda add, dur, extra, periodic, start: Spike(add, dur, dur + extra if periodic else None, start),
    st.floats(0, 5000),
    st.floats(0.001, 60),
    st.floats(0, 60),
    st.booleans(),
    st.integers(-(2**62), 2**62),
)
directions = st.builds(
    DirectionConditions,
    latency_ms=st.floats(0, 10_000),
    jitter=jitters,
    bandwidth_bps=st.none() | st.floats(1, 1e10),
    spikes=st.lists(spikes, max_size=3).map(tuple),
    frozen=st.booleans(),
    drop_next=st.integers(0, 100),
    drop_fraction=st.floats(0, 1),
    duplicate_fraction=st.floats(0, 1),
    duplicate_next=st.integers(0, 100),
    loss_pct=st.floats(0, 99.9),
    rto_ms=st.none() | st.floats(1, 10_000),
    jitter_reorders=st.booleans(),
    burst_loss=st.none() | st.builds(GilbertElliott, st.floats(0, 100), st.none() | st.floats(0, 100),
                                     st.floats(0, 100), st.floats(0, 100)),
    duplicate_delay_ms=st.floats(0, 1000),
    reorder_pct=st.floats(0, 100),
    reorder_gap=st.integers(1, 50),
    corrupt_pct=st.floats(0, 100),
    burst_bytes=st.integers(0, 1 << 20),
    queue_bytes=st.none() | st.integers(1, 1 << 24),
    mtu=st.none() | st.integers(1, 65535),
    mtu_action=st.sampled_from(["drop", "truncate"]),
)
conditions = st.builds(Conditions, c2s=directions, s2c=directions)


@given(conditions)
def test_to_dict_round_trips_through_msgpack(c: Conditions) -> None:
    d = c.to_dict()
    assert all(isinstance(k, str) for k in d)
    wire = msgpack.unpackb(msgpack.packb(d), raw=False)
    assert Conditions.from_dict(wire) == c
    assert Conditions.from_dict(d) == c


def test_from_dict_defaults_and_partial_maps() -> None:
    assert Conditions.from_dict({}) == PASSTHROUGH
    c = Conditions.from_dict({"s2c": {"latency_ms": 100, "jitter": {"ms": 20}}})
    assert c.c2s == DirectionConditions()
    assert c.s2c == DirectionConditions(latency_ms=100, jitter=Jitter(20))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "conditions: expected a map, got list"),
        ({"up": {}}, "conditions: unknown key"),
        ({"c2s": 5}, "c2s: expected a map, got int"),
        ({"c2s": {"latncy_ms": 5}}, r"c2s: unknown key\(s\) latncy_ms; expected .*latency_ms"),
        ({"c2s": {"latency_ms": -1}}, r"c2s\.latency_ms: must be >= 0, got -1"),
        ({"s2c": {"latency_ms": None}}, r"s2c\.latency_ms: expected a number, got None"),
        ({"s2c": {"jitter": {"ms": 5, "distribution": "pareto"}}}, r"s2c\.jitter\.distribution"),
        ({"s2c": {"jitter": 5}}, r"s2c\.jitter: expected a map, got int"),
        ({"s2c": {"spikes": {"add_ms": 1}}}, r"s2c\.spikes: expected a list"),
        ({"s2c": {"spikes": [{"add_ms": 1}]}}, r"s2c\.spike: missing 'for_s'"),
        ({"c2s": {"drop_next": True}}, r"c2s\.drop_next: expected a whole number"),
    ],
)
def test_from_dict_errors_name_the_field(data: object, message: str) -> None:
    with pytest.raises(ConditionsError, match=message):
        Conditions.from_dict(data)


# ---------------------------------------------------------------------------------------------------------
# CLI syntax


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100", {C2S: 100.0, S2C: 100.0}),
        ("100ms", {C2S: 100.0, S2C: 100.0}),
        ("0.25s", {C2S: 250.0, S2C: 250.0}),
        ("c2s=30,s2c=120", {C2S: 30.0, S2C: 120.0}),
        (" s2c = 1s ", {S2C: 1000.0}),
        ("up=10,down=20", {C2S: 10.0, S2C: 20.0}),
    ],
)
def test_parse_latency(text: str, expected: dict[Direction, float]) -> None:
    assert parse_latency(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20", {C2S: Jitter(20), S2C: Jitter(20)}),
        ("20:normal", {C2S: Jitter(20, "normal"), S2C: Jitter(20, "normal")}),
        ("20ms:Exponential:200", {C2S: Jitter(20, "exponential", 200), S2C: Jitter(20, "exponential", 200)}),
        ("c2s=10:uniform,s2c=20", {C2S: Jitter(10), S2C: Jitter(20)}),
    ],
)
def test_parse_jitter(text: str, expected: dict[Direction, Jitter]) -> None:
    assert parse_jitter(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("64KB/s", 64_000.0),
        ("1MB/s", 1_000_000.0),
        ("1MiB/s", 1_048_576.0),
        ("500kbit", 62_500.0),
        ("500 kbit/s", 62_500.0),
        ("2Mbps", 250_000.0),
        ("2MBps", 2_000_000.0),
        ("1200", 1200.0),
        ("1e3B/s", 1000.0),
        ("unlimited", None),
        ("None", None),
    ],
)
def test_parse_bandwidth(text: str, expected: float | None) -> None:
    assert parse_bandwidth(text) == {C2S: expected, S2C: expected}


def test_parse_bandwidth_per_direction() -> None:
    assert parse_bandwidth("c2s=64KB/s,s2c=1MB/s") == {C2S: 64_000.0, S2C: 1_000_000.0}
    assert parse_bandwidth("s2c=unlimited") == {S2C: None}


def test_format_bandwidth() -> None:
    assert format_bandwidth(None) == "unlimited"
    assert format_bandwidth(64_000) == "64 KB/s"
    assert format_bandwidth(1_012_500) == "1.01 MB/s"
    assert format_bandwidth(500) == "500 B/s"


def test_parse_spike() -> None:
    periodic = parse_spike("every=30s,add=800ms,for=2s", now_ns=5)
    assert periodic == {C2S: Spike(800, 2, 30, 5), S2C: Spike(800, 2, 30, 5)}
    one_shot = parse_spike("add=500ms,for=1s,after=2s,dir=s2c", now_ns=1_000)
    assert one_shot == {S2C: Spike(500, 1, None, 1_000 + 2_000_000_000)}
    assert parse_spike("add=0.5s,for=500ms,dir=up") == {C2S: Spike(500, 0.5)}


@pytest.mark.parametrize(
    ("parser", "text", "message"),
    [
        (parse_latency, "abc", r"--latency: cannot read 'abc' as a duration .*e\.g\. --latency 100"),
        (parse_latency, "-5", "--latency: cannot read '-5'"),
        (parse_latency, "100us", "--latency: cannot read '100us'"),
        (parse_latency, "", "--latency: empty value"),
        (parse_latency, "c2s=30,sideways=5", "--latency: unknown direction 'sideways' .use c2s or s2c"),
        (parse_latency, "c2s=30,c2s=40", "--latency: c2s given twice"),
        (parse_latency, "c2s=", "--latency: expected DIRECTION=VALUE"),
        (parse_jitter, "20:gauss", r"--jitter: unknown distribution 'gauss' \(use uniform, normal, exponential\)"),
        (parse_jitter, "20:normal:5:6", "--jitter: expected MS.:DISTRIBUTION.:CAP.., got"),
        (parse_jitter, "lots", "--jitter: cannot read 'lots'"),
        (parse_bandwidth, "500kb", "--bandwidth: '500kb' is ambiguous: write 500kbit for bits or 500KB/s for bytes"),
        (parse_bandwidth, "10 furlongs", "--bandwidth: unknown unit 'furlongs'"),
        (parse_bandwidth, "10XB/s", "--bandwidth: unknown unit 'XB'"),
        (parse_bandwidth, "0", r"--bandwidth: must be above 0 \(to stop traffic, freeze instead\)"),
        (parse_bandwidth, "fast", r"--bandwidth: cannot read 'fast'; e\.g\. --bandwidth 64KB/s"),
        (parse_spike, "add=800ms", "--spike: missing for=;"),
        (parse_spike, "for=1s", "--spike: missing add=;"),
        (parse_spike, "add=800,for=1s", "--spike: '800' needs a unit, ms or s"),
        (parse_spike, "add=800ms,for=2", "--spike: '2' needs a unit"),
        (parse_spike, "add=800ms,for=5s,every=2s", "--spike: spike: for .5 s. must not be longer than every"),
        (parse_spike, "add=800ms,for=1s,lenght=3s", "--spike: unknown key 'lenght'"),
        (parse_spike, "add=800ms,for=1s,dir=left", "--spike: unknown dir 'left'"),
        (parse_spike, "add=800ms,add=1s,for=1s", "--spike: add given twice"),
        (parse_spike, "add800ms", "--spike: expected KEY=VALUE, got 'add800ms'"),
    ],
)
def test_cli_errors_are_one_line_name_the_flag_and_give_an_example(parser: object, text: str, message: str) -> None:
    with pytest.raises(ConditionsError, match=message) as info:
        parser(text)  # type: ignore[operator]
    text_out = str(info.value)
    assert "\n" not in text_out
    assert "e.g." in text_out or "write" in text_out


def test_conditions_from_cli_without_preset() -> None:
    c = conditions_from_cli(latency="c2s=30,s2c=120", jitter="10", bandwidth="s2c=1MB/s")
    assert c.c2s == DirectionConditions(latency_ms=30, jitter=Jitter(10))
    assert c.s2c == DirectionConditions(latency_ms=120, jitter=Jitter(10), bandwidth_bps=1e6)
    assert conditions_from_cli() == PASSTHROUGH


def test_conditions_from_cli_overrides_only_named_directions_of_a_preset() -> None:
    c = conditions_from_cli(latency="s2c=500", preset="home broadband")
    base = conditions_from_cli(preset="Home broadband")
    assert c.c2s == base.c2s
    assert c.s2c.latency_ms == 500
    assert c.s2c.jitter == base.s2c.jitter and c.s2c.loss_pct == 2


def test_conditions_from_cli_spikes_repeat_and_start_now() -> None:
    c = conditions_from_cli(spike=["add=500ms,for=1s", "every=30s,add=800ms,for=2s,dir=c2s"], now_ns=42)
    assert c.c2s.spikes == (Spike(500, 1, None, 42), Spike(800, 2, 30, 42))
    assert c.s2c.spikes == (Spike(500, 1, None, 42),)
    assert conditions_from_cli(spike="add=1s,for=1s").c2s.spikes == (Spike(1000, 1),)


def test_conditions_from_cli_unknown_preset() -> None:
    with pytest.raises(ConditionsError, match="--preset: unknown preset 'moon base'; known presets: LAN"):
        conditions_from_cli(preset="moon base")


# ------------------------------------------------------------------------------------------ UDP impairments


def test_udp_impairment_flags_parse_per_direction_and_refuse_nonsense() -> None:
    from proxy.conditions import parse_bytes, parse_corrupt, parse_duplicate, parse_loss, parse_mtu, parse_reorder

    c2s, s2c = Direction.C2S, Direction.S2C
    assert parse_loss("10") == {c2s: (10.0, None), s2c: (10.0, None)}
    assert parse_loss("c2s=5,s2c=1%") == {c2s: (5.0, None), s2c: (1.0, None)}
    assert parse_loss("gemodel:5:50:80:1")[c2s] == (0.0, GilbertElliott(5, 50, 80, 1))
    assert parse_loss("s2c=gemodel:3") == {s2c: (0.0, GilbertElliott(3))}
    assert parse_duplicate("5:20ms") == {c2s: (5.0, 20.0), s2c: (5.0, 20.0)}
    assert parse_reorder("25:5")[c2s] == (25.0, 5)
    assert parse_corrupt("c2s=1") == {c2s: 1.0}
    assert parse_mtu("1200:truncate")[s2c] == (1200, "truncate") and parse_mtu("576")[c2s] == (576, "drop")
    assert parse_bytes("--bandwidth-burst", "16KB")[c2s] == 16000
    assert parse_bytes("--bandwidth-queue", "c2s=64KiB")[c2s] == 65536
    for parse, text, words in ((parse_loss, "ten", "percentage"), (parse_loss, "100", "below 100"),
                               (parse_loss, "gemodel", "1 to 4"), (parse_reorder, "25:0", "gap"),
                               (parse_mtu, "0", "1 to 65535"), (parse_mtu, "9:cut", "drop or truncate"),
                               (parse_corrupt, "-1", "percentage"), (parse_duplicate, "5:1:2", "cannot read")):
        with pytest.raises(ConditionsError, match=words):
            parse(text)  # type: ignore[operator]


def test_udp_fields_are_checked_and_shown() -> None:
    for kw, words in (({"reorder_pct": 101}, "reorder_pct"), ({"reorder_gap": 0}, "reorder_gap"),
                      ({"mtu": 0}, "mtu"), ({"mtu_action": "cut"}, "mtu_action"), ({"queue_bytes": 0}, "queue_bytes"),
                      ({"corrupt_pct": -1}, "corrupt_pct"), ({"duplicate_delay_ms": -1}, "duplicate_delay_ms")):
        with pytest.raises(ConditionsError, match=words):
            DirectionConditions(**kw)  # type: ignore[arg-type]
    with pytest.raises(ConditionsError, match=r"burst_loss\.p_pct"):
        GilbertElliott(150)
    d = DirectionConditions(mtu=1200, corrupt_pct=1, burst_loss=GilbertElliott(2, 25, 80, 1))
    assert not d.is_passthrough and "MTU 1200" in d.describe() and "burst loss p 2 %" in d.describe()
    assert GilbertElliott(2, 25, 80, 1).mean_loss_pct == pytest.approx((25 * 1 + 2 * 80) / 27)
    assert GilbertElliott(5).mean_loss_pct == pytest.approx(5)  # netem: p alone is Bernoulli loss p
    assert DirectionConditions(bandwidth_bps=10_000).effective_queue_bytes == 65536
    assert DirectionConditions(bandwidth_bps=1e6).effective_queue_bytes == 1_000_000
