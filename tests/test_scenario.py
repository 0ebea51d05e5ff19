"""Scenario files (proxy/scenario.py, docs/scenarios.md): every kind of mistake with its line, the key-line scanner,
the player's semantics without a clock (steps, ramps, overrides, freezes, outages, passes), the planned line, and
the scenarios shipped in docs/examples/scenarios/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from proxy import scenario as sc
from proxy.conditions import PASSTHROUGH, Conditions, DirectionConditions, Jitter
from proxy.presets import PRESETS

NS = 1_000_000_000
EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples" / "scenarios"


def problems(text: str) -> list[str]:
    with pytest.raises(sc.ScenarioError) as info:
        sc.loads(text, "f.toml")
    return info.value.problems


# ------------------------------------------------------------------------------------------------ mistakes

# (what is wrong, the file, the line the problem must name, a piece of its text)
MISTAKES = [
    ("toml syntax", 'name = "x"\n\n[[step]]\nat = \n', 4, "not valid TOML"),
    ("time without unit", 'name = "x"\n\n[[step]]\nat = 30\n', 4,
     'at: a time needs a unit: write it as text such as "30s"'),
    ("time unreadable", '[[step]]\nat = "0s"\n\n[[step]]\nat = "soon"\n', 5, "at: cannot read 'soon' as a time"),
    ("time too long", '[[step]]\nat = "200h"\n', 2, "longer than a week"),
    ("unknown key, close", '[[step]]\nat = "0s"\nlatncy = 80\n', 3,
     "latncy: unknown key in a step; did you mean 'latency'?"),
    ("unknown top key", 'nmae = "x"\n[[step]]\nat = "0s"\n', 1,
     "nmae: unknown key in the scenario; did you mean 'name'?"),
    ("top key after a step", '[[step]]\nat = "0s"\n\nrepeat = 2\n', 4, "go before the first [[step]]"),
    ("unknown key in c2s", '[[step]]\nat = "0s"\n[step.c2s]\nlatency = 5\njiter = 3\n', 5, "jiter: unknown key in c2s"),
    ("c2s not a table", '[[step]]\nat = "0s"\nc2s = 5\n', 3, "c2s: expected a table of conditions"),
    ("negative latency inline", '[[step]]\nat = "0s"\nc2s = { latency = -5 }\n', 3, "c2s.latency: must be 0 or more"),
    ("bool as number", '[[step]]\nat = "0s"\n\n\nlatency = true\n', 5, "latency: expected a number, got true"),
    ("latency text", '[[step]]\nat = "0s"\n[step.s2c]\n# slow\nlatency = "slow"\n', 5,
     "s2c.latency: cannot read 'slow'"),
    ("percentage", '[[step]]\nat = "0s"\nreorder = 150\n', 3, "reorder: a percentage goes from 0 to 100"),
    ("loss 100", '[[step]]\nat = "0s"\nloss = 100\n', 3, "loss: must be below 100 % (no network at all is an outage"),
    ("bandwidth ambiguous", '[[step]]\nat = "0s"\nbandwidth = "500kb"\n', 3, "bandwidth: '500kb' is ambiguous"),
    ("bandwidth zero", '[[step]]\nat = "0s"\nbandwidth = 0\n', 3, "bandwidth: must be above 0 bytes/s"),
    ("jitter shape", '[[step]]\nat = "0s"\njitter_distribution = "gauss"\n', 3,
     "expected uniform, normal, exponential"),
    ("burst loss", '[[step]]\nat = "0s"\nburst_loss = "5:500"\n', 3, "burst_loss: '500' is not a percentage"),
    ("mtu", '[[step]]\nat = "0s"\nmtu = 70000\n', 3, "mtu: expected 1 to 65535 bytes"),
    ("size", '[[step]]\nat = "0s"\nbandwidth_burst = "lots"\n', 3, "bandwidth_burst: cannot read 'lots' as a size"),
    ("unknown preset", '[[step]]\nat = "0s"\npreset = "Mobile 9G"\n', 3, "preset: unknown preset 'Mobile 9G'"),
    ("preset and clear", '[[step]]\nat = "0s"\npreset = "LAN"\nclear = true\n', 4,
     "clear: a step starts from a preset"),
    ("step without at", 'name = "x"\n[[step]]\nlatency = 5\n', 2, "[[step]]: a step needs at ="),
    ("two steps at once", '[[step]]\nat = "1s"\n\n[[step]]\n  at = "1000ms"\n', 5,
     "at: another step is at 1 s too (line 1)"),
    ("ramp into the next step", '[[step]]\nat = "1s"\nramp = "5s"\nlatency = 100\n[[step]]\nat = "3s"\n', 3,
     "ramp: the ramp ends at 6 s, after the next step starts (3 s, line 5)"),
    ("ramp of nothing", '[[step]]\nat = "1s"\nramp = "5s"\nlabel = "x"\n', 3, "ramp: nothing to ramp"),
    ("past the end", 'length = "10s"\n[[step]]\nat = "0s"\n[[step]]\nat = "12s"\n', 5,
     "at: 12 s is not before the end"),
    ("lasts past the end", 'length = "10s"\n[[step]]\nat = "8s"\noutage = "5s"\n', 2, "lasts until 13 s, past the end"),
    ("repeat without length", 'repeat = 3\n[[step]]\nat = "0s"\nlatency = 5\n', 1,
     "repeat: a timeline that repeats needs length"),
    ("repeat invalid", 'length = "1s"\nrepeat = 0\n[[step]]\nat = "0s"\n', 2,
     "repeat: expected a number of passes from 1"),
    ("outages overlap", '[[step]]\nat = "0s"\noutage = "10s"\n[[step]]\nat = "5s"\noutage = {for = "2s"}\n', 6,
     "outage: starts while the outage of line 1 lasts"),
    ("freezes overlap", '[[step]]\nat = "0s"\nfreeze = "10s"\n[[step]]\nat = "5s"\nc2s.freeze = "2s"\n', 6,
     "freeze: c2s is still frozen by line 1"),
    ("outage unknown key", '[[step]]\nat = "0s"\noutage = {for = "2s", rest = true}\n', 3,
     "outage.rest: unknown key in an outage; did you mean 'reset'?"),
    ("outage without for", '[[step]]\nat = "0s"\noutage = {reset = true}\n', 3, "outage: an outage needs for ="),
    ("spike without add", '[[step]]\nat = "0s"\nspike = {for = "2s"}\n', 3, "spike: a spike needs add ="),
    ("spike longer than its period",
     '[[step]]\nat = "0s"\nspike = [{add = "1s", for = "2s"},\n  {add = "1s", for = "20s", every = "10s"}]\n',
     4, "spike.for: the spike lasts 20 s, longer than its period (10 s)"),
    ("spike not a table", '[[step]]\nat = "0s"\nspike = 5\n', 3, "spike: a spike is a table"),
    ("spike unit", '[[step]]\nat = "0s"\nspike = {add = 800, for = 2}\n', 3, "spike.for: a time needs a unit"),
    ("resolution", 'resolution = "1ms"\n[[step]]\nat = "0s"\n', 1, "resolution: ramps update every 20 ms to 10 s"),
    ("start", 'start = "now"\n[[step]]\nat = "0s"\n', 1, "start: expected 'load' or 'first-connection'"),
    ("at_end", 'at_end = "reset"\n[[step]]\nat = "0s"\n', 1, "at_end: expected 'keep' or 'restore'"),
    ("disconnect", '[[step]]\nat = "0s"\ndisconnect = "now"\n', 3,
     "disconnect: expected \"reset\" (RST) or \"close\" (FIN)"),
    ("label", '[[step]]\nat = "0s"\nlabel = 5\n', 3, "label: expected text in quotes"),
    ("cycle without every", '[[cycle]]\npresets = ["LAN"]\n', 1, "[[cycle]]: a cycle needs every ="),
    ("cycle without presets", '[[cycle]]\nevery = "10s"\n', 1, "presets: a cycle needs presets ="),
    ("cycle preset", '[[cycle]]\nevery = "10s"\npresets = [\n  "LAN",\n  "nope",\n]\n', 5,
     "presets: unknown preset 'nope'"),
    ("cycle ramp", '[[cycle]]\nevery = "10s"\nramp = "10s"\npresets = ["LAN"]\n', 3,
     "ramp: the ramp (10 s) must be shorter"),
    ("no timeline", 'name = "x"\n', 1, "no timeline: add [[step]] tables"),
    ("steps not tables", 'step = 5\n', 1, "step: write each step as a [[step]] table"),
]


@pytest.mark.parametrize(("what", "text", "line", "fragment"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_each_mistake_is_one_line_naming_the_file_and_line(what: str, text: str, line: int, fragment: str) -> None:
    found = problems(text)
    assert len(found) == 1, found
    assert "\n" not in found[0]
    assert found[0].startswith(f"f.toml:{line}: "), found[0]
    assert fragment in found[0], found[0]


def test_every_mistake_in_a_file_is_reported_at_once_each_on_its_line() -> None:
    text = '[[step]]\nat = "0s"\nlatency = "x"\n\n[[step]]\nat = 5\nloss = 200\n'
    found = problems(text)
    assert [p.split(":")[1] for p in found] == ["3", "6", "7"], found


def test_a_key_given_for_both_directions_is_reported_once() -> None:
    assert len(problems('[[step]]\nat = "0s"\nbandwidth = "500kb"\n')) == 1


def test_a_flood_of_mistakes_is_cut_short() -> None:
    text = "".join(f'[[step]]\nat = "{n}s"\nlatency = "x"\n' for n in range(100))
    found = problems(text)
    assert len(found) == sc.MAX_ERRORS + 1 and "more problems not shown" in found[-1]


def test_a_file_that_is_not_text_or_too_big_is_refused(tmp_path: Path) -> None:
    binary = tmp_path / "b.toml"
    binary.write_bytes(b'name = "x"\n\n\xff\xfe\n')
    with pytest.raises(sc.ScenarioError, match=r"b\.toml:3: not UTF-8 text"):
        sc.load(binary)
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (sc.MAX_FILE_BYTES + 10))
    with pytest.raises(sc.ScenarioError, match="larger than 1 MiB"):
        sc.load(big)
    with pytest.raises(sc.ScenarioError, match="cannot read the scenario"):
        sc.load(tmp_path / "missing.toml")


def test_hostile_files_get_one_line_and_no_traceback() -> None:
    assert problems("x = " + "[" * 50_000 + "]" * 50_000) == ["f.toml: nested too deeply to be a scenario"]
    assert problems("x = " + "{a=" * 5_000 + "1" + "}" * 5_000) == ["f.toml: nested too deeply to be a scenario"]
    spikes = ", ".join('{add = 1, for = "1s"}' for _ in range(sc.MAX_SPIKES + 1))
    assert problems(f'[[step]]\nat = "0s"\nspike = [{spikes}]\n') == ["f.toml:3: spike: 17 spikes; at most 16 at once"]
    assert problems('[[step]]\nat = "0s"\nlabel = "' + "a" * 600 + '"\n') == [
        "f.toml:3: label: expected a short line of printable text"]


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_the_largest_timeline_is_read_and_planned_in_bounded_time() -> None:
    text = "".join(f'[[step]]\nat = "{n}s"\nlatency = {n % 300}\n' for n in range(sc.MAX_STEPS))
    s = sc.loads(text)
    assert len(s.steps) == sc.MAX_STEPS
    assert len(s.plan()) == sc.MAX_STEPS  # one change a step (the first is at 0 s, with the start)
    long_ramp = sc.loads('resolution = "20ms"\n[[step]]\nat = "0s"\nramp = "160h"\nlatency = 500\n')
    assert len(long_ramp.plan()) == sc.PLAN_MAX_POINTS  # a week of updates is never made at once
    drawn = long_ramp.plan(ramp_points=sc.RAMP_POINTS_DRAWN)  # what the window draws: a slope in 50 steps
    assert len(drawn) == sc.RAMP_POINTS_DRAWN + 1 and drawn[-1][1].c2s.latency_ms == 500


def test_too_many_steps_are_refused() -> None:
    presets = ", ".join('"LAN"' for _ in range(sc.MAX_STEPS + 1))
    found = problems(f'[[cycle]]\nevery = "1s"\npresets = [{presets}]\n')
    assert "at most 10000" in found[0]


# ------------------------------------------------------------------------------------------------ the line scanner


def test_lines_are_found_past_multiline_strings_inline_tables_and_comments() -> None:
    text = '''description = """
[[step]]
at = 5
"""
title = 'a [bracket] # not a comment'
# [[step]] in a comment
[[step]]   # first
"at" = "0s"
c2s = { latency = 1, "jitter" = 2 }

[[ step ]]
at = "1s"
spike = [
  { add = "1s", for = "1s" },  # one
  { add = "1s", for = "2s" },
]
[step . s2c]
latency = 3
'''
    lines = sc._KeyLines(text).lines
    assert lines[("step", 0)] == 7
    assert lines[("step", 0, "at")] == 8
    assert lines[("step", 0, "c2s", "jitter")] == 9
    assert lines[("step", 1)] == 11
    assert lines[("step", 1, "spike", 1, "for")] == 15
    assert lines[("step", 1, "s2c")] == 17
    assert lines[("step", 1, "s2c", "latency")] == 18
    assert lines[("title",)] == 5


# ------------------------------------------------------------------------------------------------ reading


def test_a_step_changes_what_it_names_and_keeps_the_rest() -> None:
    s = sc.loads('''
[[step]]
at = "0s"
preset = "Mobile 4G"
[[step]]
at = "1m30s"
c2s.latency = "0.2s"
s2c = { bandwidth = "64KB/s", jitter_distribution = "normal" }
[[step]]
at = "2min"
clear = true
loss = "5%"
''')
    assert [st.at_s for st in s.steps] == [0, 90, 120]
    plan = dict(s.plan())
    four_g = PRESETS["Mobile 4G"].conditions
    assert plan[0.0] == four_g
    second = plan[90.0]
    assert second.c2s == DirectionConditions(latency_ms=200, jitter=four_g.c2s.jitter, loss_pct=four_g.c2s.loss_pct)
    assert second.s2c.bandwidth_bps == 64_000 and second.s2c.jitter == Jitter(20, "normal")
    assert second.s2c.latency_ms == four_g.s2c.latency_ms
    assert plan[120.0] == Conditions.symmetric(DirectionConditions(loss_pct=5))


def test_durations_numbers_and_units() -> None:
    s = sc.loads('[[step]]\nat = "1h2m3.5s"\nlatency = 80\njitter = "0.02s"\nrto = "300ms"\n')
    assert s.steps[0].at_s == 3723.5
    dc = s.plan()[-1][1].c2s
    assert (dc.latency_ms, dc.jitter.ms, dc.rto_ms) == (80, 20, 300)
    assert sc.fmt_s(90) == "1 min 30 s" and sc.fmt_s(0.25) == "250 ms" and sc.fmt_s(45) == "45 s"


def test_a_cycle_is_a_step_per_preset_and_the_default_length_covers_the_last() -> None:
    s = sc.loads('[[cycle]]\nat = "5s"\nevery = "10s"\npresets = ["Home fibre", "mobile4g"]\n')
    assert [(st.at_s, st.preset) for st in s.steps] == [(5, "Home fibre"), (15, "Mobile 4G")]
    assert s.length_s == 25


# ------------------------------------------------------------------------------------------------ the player


def run_all(s: sc.Scenario, until_s: float, origin: int = 0) -> list[tuple[float, sc.Action]]:
    """Every action a run takes up to ``until_s``, with its time in seconds from time zero."""
    p = sc.Player(s)
    out = [(0.0, a) for a in p.start(origin)]
    while p.due_ns is not None and p.due_ns <= origin + until_s * NS:
        due = p.due_ns
        out += [((due - origin) / NS, a) for a in p.advance(due)]
    return out


def latencies(actions: list[tuple[float, sc.Action]]) -> list[tuple[float, float]]:
    return [(t, a.conditions.c2s.latency_ms) for t, a in actions if isinstance(a, sc.Apply)]


def test_before_the_first_step_there_are_no_conditions_and_steps_apply_at_their_time() -> None:
    s = sc.loads('[[step]]\nat = "2s"\nlatency = 50\n[[step]]\nat = "3s"\nlatency = 10\n')
    assert latencies(run_all(s, 10)) == [(0, 0), (2, 50), (3, 10)]


def test_a_ramp_moves_linearly_every_resolution_and_lands_on_the_target() -> None:
    s = sc.loads('resolution = "250ms"\n[[step]]\nat = "0s"\nlatency = 100\nbandwidth = "10KB/s"\n'
                 '[[step]]\nat = "1s"\nramp = "1s"\nlatency = 200\nbandwidth = "20KB/s"\n'
                 'jitter_distribution = "normal"\n')
    actions = run_all(s, 5)
    assert latencies(actions) == [(0, 100), (1, 100), (1.25, 125), (1.5, 150), (1.75, 175), (2, 200)]
    applied = [a.conditions for _, a in actions if isinstance(a, sc.Apply)]
    assert applied[2].s2c.bandwidth_bps == pytest.approx(12_500)
    assert applied[1].c2s.jitter.distribution == "normal"  # what has no number changes when the ramp starts


def test_a_bandwidth_ramp_from_unlimited_moves_the_time_per_byte() -> None:
    s = sc.loads('resolution = "500ms"\n[[step]]\nat = "0s"\nramp = "1s"\nbandwidth = 1000\n')
    bws = [a.conditions.c2s.bandwidth_bps for _, a in run_all(s, 5) if isinstance(a, sc.Apply)]
    assert bws == [None, 2000, 1000]


def test_a_change_by_hand_stops_the_ramp_until_the_next_step() -> None:
    s = sc.loads('resolution = "100ms"\n[[step]]\nat = "0s"\nramp = "1s"\nlatency = 100\n'
                 '[[step]]\nat = "2s"\nlatency = 7\n')
    p = sc.Player(s)
    p.start(0)
    p.advance(p.due_ns or 0)  # the first sample
    said = p.user_changed(int(0.15 * NS))
    assert len(said) == 1 and "changed by hand; they stay until the next step (2 s)" in said[0].text  # type: ignore[union-attr]
    assert p.due_ns == 2 * NS  # no ramp updates meanwhile
    applied = [a for a in p.advance(2 * NS) if isinstance(a, sc.Apply)]
    assert applied[0].conditions.c2s.latency_ms == 7 and not p.overridden


def test_freeze_outage_and_disconnect_are_actions_in_order() -> None:
    s = sc.loads('[[step]]\nat = "0s"\nlatency = 5\n'
                 '[[step]]\nat = "1s"\nc2s.freeze = "1s"\n'
                 '[[step]]\nat = "3s"\noutage = {for = "2s", reset = true}\n'
                 '[[step]]\nat = "6s"\ndisconnect = "close"\n')
    acts = [(t, a) for t, a in run_all(s, 10) if not isinstance(a, sc.Say)]
    frozen = [(t, a.conditions.c2s.frozen, a.conditions.s2c.frozen) for t, a in acts if isinstance(a, sc.Apply)]
    assert frozen == [(0, False, False), (1, True, False), (2, False, False), (3, True, True), (5, False, False)]
    outage = next(a for t, a in acts if t == 3 and isinstance(a, sc.Apply))
    assert outage.conditions.c2s.burst_loss == sc.ALL_LOST  # UDP: every datagram lost
    assert [(t, a) for t, a in acts if not isinstance(a, sc.Apply)] == [
        (3, sc.Refuse(True)), (3, sc.Disconnect(True)), (5, sc.Refuse(False)), (6, sc.Disconnect(False)),
        (6, sc.Finished(False))]


def test_each_pass_starts_from_nothing_and_the_run_finishes_after_the_last() -> None:
    s = sc.loads('length = "10s"\nrepeat = 2\nat_end = "restore"\n[[step]]\nat = "5s"\nlatency = 40\n')
    acts = run_all(s, 100)
    assert latencies(acts) == [(0, 0), (5, 40), (10, 0), (15, 40)]
    assert acts[-1] == (20, sc.Finished(True))
    assert any(isinstance(a, sc.Say) and "pass 2/2" in a.text for _, a in acts)


def test_spikes_start_at_their_step_in_the_engines_clock() -> None:
    s = sc.loads('length = "60s"\nrepeat = 2\n[[step]]\nat = "10s"\n'
                 'spike = {add = "500ms", for = "1s", every = "20s", after = "2s"}\n')
    origin = 1_000 * NS
    applied = [(t, a.conditions) for t, a in run_all(s, 100, origin) if isinstance(a, sc.Apply)]
    second_pass = applied[-1][1].s2c.spikes[0]
    assert second_pass.start_ns == origin + (60 + 12) * NS and second_pass.every_s == 20
    assert second_pass.active(origin + 92 * NS) and not second_pass.active(origin + 94 * NS)


def test_forever_plans_ten_passes_and_the_rtt_line_has_the_spikes() -> None:
    s = sc.load(EXAMPLES / "lag-spike-every-30s.toml")
    plan = s.plan()
    assert [t for t, _ in plan] == [30.0 * n for n in range(11)]  # ten passes, and where the next begins
    line = sc.rtt_series(plan, 300)
    base = sc.added_rtt_ms(PRESETS["Home cable"].conditions)
    spiked = [ms for t, ms in line if 28 <= t <= 30]
    assert max(spiked) == pytest.approx(base + 1600)  # 800 ms each way
    assert min(ms for t, ms in line if t < 28) == pytest.approx(base)


# ------------------------------------------------------------------------------------------------ shipped scenarios


def test_every_shipped_scenario_loads_plans_and_cites_its_sources() -> None:
    files = sorted(EXAMPLES.glob("*.toml"))
    assert {f.name for f in files} >= {"commute-4g-tunnel.toml", "congested-evening.toml", "lag-spike-every-30s.toml"}
    for f in files:
        s = sc.load(f)
        assert s.plan(), f
        text = f.read_text(encoding="utf-8")
        assert re.search(r"^# Sources? of the numbers", text, re.MULTILINE), f"{f.name} does not cite its sources"


def test_the_commute_has_its_tunnel() -> None:
    s = sc.load(EXAMPLES / "commute-4g-tunnel.toml")
    acts = run_all(s, 120)
    assert (55, sc.Refuse(True)) in acts and (75, sc.Refuse(False)) in acts and (55, sc.Disconnect(True)) in acts
    assert s.repeat is None and s.length_s == 120
    assert PASSTHROUGH not in [a.conditions for t, a in acts if isinstance(a, sc.Apply) and t > 0]
