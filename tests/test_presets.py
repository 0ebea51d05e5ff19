"""Tests for proxy.presets: every preset is valid, sourced, dated, faithful to its source and round-trips."""

from __future__ import annotations

import msgpack
import pytest

from proxy.conditions import Conditions, ConditionsError
from proxy.presets import PRESETS, Preset, find_preset, list_presets_text

# The Unity Multiplayer Tools table (../shared/anchors-features.md §3.1): name -> (delay, jitter, loss %).
UNITY_MT = {
    "Home broadband": (32, 12, 2),
    "Home fibre": (10, 1, 0),
    "Home cable": (25, 5, 0),
    "Home DSL": (30, 10, 0),
    "Satellite": (100, 10, 0),
    "Congested Wi-Fi": (50, 50, 1),
    "Mobile 2G": (520, 50, 7),
    "Mobile 2.5G": (480, 40, 7),
    "Mobile 2.75G": (440, 40, 7),
    "Mobile 3G": (360, 30, 7),
    "Mobile 3.5G": (160, 30, 6),
    "Mobile 3.75G": (130, 30, 6),
    "Mobile 4G": (100, 20, 4),
    "Mobile 4.5G": (80, 20, 4),
    "Mobile 5G": (30, 20, 4),
}
# §3.3, Chrome: name -> (round-trip latency ms, download B/s, upload B/s).
CHROME = {
    "Chrome Slow 3G": (2000, 50_000, 50_000),
    "Chrome Fast 3G": (562.5, 180_000, 84_375),
    "Chrome Fast 4G": (165, 1_012_500, 168_750),
}
# §3.4, Apple (second-hand): name -> (down kbit/s, up kbit/s, down ms, up ms, loss %).
APPLE = {
    "Apple DSL": (2000, 256, 5, 5, 0),
    "Apple 3G": (780, 330, 100, 100, 0),
    "Apple LTE": (50_000, 10_000, 50, 65, 0),
    "Apple Very Bad Network": (1000, 1000, 500, 500, 10),
}


@pytest.mark.parametrize("preset", PRESETS.values(), ids=list(PRESETS))
def test_every_preset_is_valid_sourced_dated_and_round_trips(preset: Preset) -> None:
    assert PRESETS[preset.name] is preset
    for text in (preset.name, preset.description, preset.family, preset.source, preset.source_date):
        assert text.strip()
    assert preset.source_values.strip()
    assert any(ch.isdigit() for ch in preset.source_date)  # a date, or the date it was read
    c = preset.conditions
    assert Conditions.from_dict(c.to_dict()) == c
    assert Conditions.from_dict(msgpack.unpackb(msgpack.packb(c.to_dict()), raw=False)) == c
    assert not c.is_passthrough
    if preset.loss_pct >= 100:
        assert c.c2s.frozen and c.s2c.frozen  # 100 % loss on TCP is a stall
    else:
        assert c.c2s.loss_pct == c.s2c.loss_pct == preset.loss_pct


def test_names_are_unique_after_normalising() -> None:
    keys = [n.lower().replace(" ", "").replace("-", "").replace(".", "") for n in PRESETS]
    assert len(keys) == len(set(keys))


def test_required_presets_exist() -> None:
    for name in ("LAN", "Home fibre", "Home broadband", "Home DSL", "Satellite", "Congested Wi-Fi"):
        assert name in PRESETS
    for name in ("Mobile 2G", "Mobile 3G", "Mobile 4G", "Mobile 5G", "Intercontinental", "Bad Wi-Fi with spikes"):
        assert name in PRESETS
    assert set(CHROME) | set(APPLE) | {"Apple 100% Loss"} <= set(PRESETS)


@pytest.mark.parametrize(("name", "values"), UNITY_MT.items())
def test_unity_presets_keep_the_source_mean_delay(name: str, values: tuple[float, float, float]) -> None:
    delay, jitter, loss = values
    p = PRESETS[name]
    assert p.family == "Unity MT"
    assert p.loss_pct == loss
    assert f"delay {delay:g} ms, jitter {jitter:g} ms, loss {loss:g} %" in p.source_values
    for cond in (p.conditions.c2s, p.conditions.s2c):
        assert cond.jitter.ms == jitter and cond.jitter.distribution == "uniform"
        # One-way delays spread over delay ± jitter: the mean is the source's delay.
        assert cond.latency_ms + cond.jitter.mean_ms == pytest.approx(max(delay, jitter))
        assert cond.latency_ms == max(delay - jitter, 0)


@pytest.mark.parametrize(("name", "values"), CHROME.items())
def test_chrome_presets(name: str, values: tuple[float, float, float]) -> None:
    rtt, down, up = values
    c = PRESETS[name].conditions
    assert c.c2s.latency_ms + c.s2c.latency_ms == rtt
    assert c.s2c.bandwidth_bps == down and c.c2s.bandwidth_bps == up


@pytest.mark.parametrize(("name", "values"), APPLE.items())
def test_apple_presets(name: str, values: tuple[float, float, float, float, float]) -> None:
    down_kbit, up_kbit, down_ms, up_ms, loss = values
    c = PRESETS[name].conditions
    assert c.s2c.bandwidth_bps == down_kbit * 125 and c.c2s.bandwidth_bps == up_kbit * 125
    assert (c.s2c.latency_ms, c.c2s.latency_ms) == (down_ms, up_ms)
    assert c.s2c.loss_pct == loss
    assert "second-hand" in PRESETS[name].source


def test_game_presets() -> None:
    inter = PRESETS["Intercontinental"]
    assert inter.conditions.c2s.latency_ms + inter.conditions.c2s.jitter.mean_ms == pytest.approx(121)
    assert inter.loss_pct == 3 and inter.source_date == "Q3 2022"
    wifi = PRESETS["Bad Wi-Fi with spikes"].conditions.s2c
    assert wifi.spikes and wifi.spikes[0].periodic
    assert wifi.jitter.distribution == "exponential"


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("LAN", "LAN"),
        ("lan", "LAN"),
        ("home-fibre", "Home fibre"),
        ("HomeFiber", "Home fibre"),
        ("mobile 2.5g", "Mobile 2.5G"),
        ("MOBILE_2.75G", "Mobile 2.75G"),
        ("slow 3g", "Chrome Slow 3G"),
        ("very bad", "Apple Very Bad Network"),
        ("intercontinental", "Intercontinental"),
    ],
)
def test_find_preset(query: str, name: str) -> None:
    assert find_preset(query).name == name


def test_find_preset_errors() -> None:
    with pytest.raises(
        ConditionsError, match=r"unknown preset 'moon'; known presets: LAN, Home fibre, .*--list-presets"
    ):
        find_preset("moon")
    with pytest.raises(ConditionsError, match=r"'3g' matches several presets: Mobile 3G, .*Chrome Slow 3G"):
        find_preset("3g")
    with pytest.raises(ConditionsError, match="empty name"):
        find_preset(" - ")


def test_list_presets_text() -> None:
    text = list_presets_text()
    for p in PRESETS.values():
        assert p.name in text and p.source_date in text
    assert "Loss on TCP shows up as delay" in text
    assert "20–44 ms" in text  # Home broadband: 32 ± 12 ms
    assert "frozen" in text


def test_loss_presets_use_a_tcp_rto() -> None:
    broadband = PRESETS["Home broadband"].conditions.c2s
    assert broadband.effective_rto_ms == 200  # RTT ~64 ms: the 200 ms floor
    mobile = PRESETS["Mobile 2G"].conditions.c2s
    assert mobile.effective_rto_ms == pytest.approx(2 * 2 * 520)
