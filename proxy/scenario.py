"""Scenario files: a timeline of network conditions in TOML, validated with line-numbered errors, and its player.

Role: :func:`load` / :func:`loads` read a scenario file (docs/scenarios.md) into a :class:`Scenario`: steps and
linear ramps of latency, jitter, bandwidth, loss and the other per-direction conditions of
:mod:`proxy.conditions`, periodic or one-shot lag spikes, freezes, disconnects (open connections reset or
closed), outages (new connections reset on arrival, open ones frozen, UDP datagrams lost), a cycle through the
presets of :mod:`proxy.presets`, and repetition. Every mistake is one line naming the file, the line and what is
wrong (``commute.toml:14: c2s.latency: cannot read '80 ms ' ...``); :class:`ScenarioError` carries them all.

:class:`Player` is the scenario's clock-free core (sans-IO, like the relay): given monotonic nanoseconds it says
when it next needs to be woken (:attr:`Player.due_ns`) and what to do then (:class:`Apply` conditions,
:class:`Disconnect`, :class:`Refuse` new connections, :class:`Say` a line, :class:`Finished`). Two shells drive
it: :class:`EngineRunner` on a :class:`~proxy.server.ProxyServer`'s own event loop (``sockscope-proxy
--scenario``, :func:`run` for Python and the pytest plugin), and the window's, which sends the same actions as
control commands (``inspector.ui.scenario_control``). :meth:`Scenario.plan` runs a player without a clock, so
what the window draws as the planned line is exactly what a run does.

Semantics (docs/scenarios.md says the same to users):

- Time zero is when the scenario starts: when it is loaded into a running proxy (or when the proxy starts, for
  ``--scenario``), or, with ``start = "first-connection"``, when the first client connects.
- Each step changes the conditions it names and keeps the rest from the step before; ``preset`` starts a step
  from a preset and ``clear`` from no conditions. Each pass of a repeated timeline starts from no conditions.
- A ramp moves every number from the values before the step to the step's values linearly, updated every
  ``resolution`` (100 ms by default, 20 ms to 10 s). Settings without a number (the jitter's shape, spikes) change
  when the ramp starts. A bandwidth ramp from or to "unlimited" moves the time per byte linearly instead.
- Conditions changed by hand (the window, a control client) stay until the scenario's next event (a step, or a
  freeze or outage starting or ending); ramp updates are skipped meanwhile.
- When the timeline ends the conditions stay as they are (``at_end = "restore"``: as they were before it
  started); stopping a run restores them unless asked not to.

Must not import: Qt, ``inspector``; the engine's shell (``proxy.server``, ``proxy.runner``) only for types, so the
window can read and plan scenarios without it.
Thread: the parser and :class:`Player` are pure (any thread); :class:`EngineRunner` runs on the engine's
event-loop thread and touches the relay only to set conditions, reset connections and flip the refusal at the
scenario's own times (a loop timer per event, never a busy loop); :class:`ScenarioRun` may be used from any thread.
"""

from __future__ import annotations

import collections
import difflib
import itertools
import math
import re
import threading
import time
import tomllib
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from proxy.conditions import (
    JITTER_DISTRIBUTIONS,
    MTU_ACTIONS,
    PASSTHROUGH,
    Conditions,
    ConditionsError,
    DirectionConditions,
    GilbertElliott,
    Jitter,
    Spike,
    parse_bandwidth,
    parse_bytes,
    parse_loss,
)
from proxy.model import ConnectionOpened, Direction, Record
from proxy.presets import find_preset

if TYPE_CHECKING:
    import argparse
    import asyncio

    from proxy.server import ProxyServer

__all__ = [
    "ALL_LOST",
    "Action",
    "Apply",
    "Disconnect",
    "EngineRunner",
    "Finished",
    "Player",
    "Refuse",
    "Say",
    "Scenario",
    "ScenarioError",
    "ScenarioRun",
    "Step",
    "add_scenario_argument",
    "added_rtt_ms",
    "disconnect_all",
    "fmt_s",
    "load",
    "loads",
    "rtt_series",
    "run",
]

NS: Final = 1_000_000_000
MAX_FILE_BYTES: Final = 1 << 20
"""A scenario is a hand-written file; anything bigger is refused before it is parsed."""
MAX_TIME_S: Final = 7 * 24 * 3600.0
"""The longest time anywhere in a scenario (a step's time, a ramp, an outage, one pass): a week."""
MAX_STEPS: Final = 10_000
"""Steps in one pass, counting those a cycle makes."""
MAX_REPEAT: Final = 1_000_000
MAX_SPIKES: Final = 16
"""Spikes one step sets in one direction (a preset's come on top): the relay sums them for every message."""
MAX_ERRORS: Final = 20
"""Problems reported at once; the rest are counted in one more line."""
RESOLUTION_S: Final = 0.1
RESOLUTION_RANGE: Final = (0.02, 10.0)
EARLY_NS: Final = 2_000_000
"""Anything due within this of now is done now: a loop timer may wake a millisecond early, and waking again for
the last millisecond would be a spin."""
PLAN_MAX_POINTS: Final = 20_000
RAMP_POINTS_DRAWN: Final = 50
"""Updates per ramp in a plan made to be drawn (``Scenario.plan(ramp_points=...)``): a slope, not every update."""
ALL_LOST: Final = GilbertElliott(p_pct=0.0, r_pct=100.0, bad_loss_pct=100.0, good_loss_pct=100.0)
"""What an outage does to UDP: every datagram lost (the window's 100 % loss is the same model)."""

StartMode = Literal["load", "first-connection"]
EndMode = Literal["keep", "restore"]


class ScenarioError(ValueError):
    """A scenario file is wrong. ``problems`` has one line per mistake (``FILE:LINE: what``); ``str()`` joins them."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# =============================================================================================== the scenario


@dataclass(frozen=True, slots=True)
class SpikeSpec:
    """A lag spike a step starts: ``add_ms`` for ``for_s``, every ``every_s`` (None: once), ``after_s`` after the
    step."""

    add_ms: float
    for_s: float
    every_s: float | None = None
    after_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Change:
    """What a step changes in one direction."""

    fields: Mapping[str, Any] = field(default_factory=dict)
    """``DirectionConditions`` field -> value; the jitter's parts as ``jitter.ms``, ``jitter.distribution``,
    ``jitter.cap_ms``."""
    spikes: tuple[SpikeSpec, ...] | None = None
    """The spikes from this step on (an empty tuple clears them); None keeps the ones before."""
    freeze_s: float | None = None
    """Freeze this direction for this many seconds from the step."""

    @property
    def empty(self) -> bool:
        return not self.fields and self.spikes is None and self.freeze_s is None


@dataclass(frozen=True, slots=True)
class Step:
    at_s: float
    line: int
    """The line of the step's ``[[step]]`` header (or of its cycle's preset) in the file."""
    label: str = ""
    preset: str | None = None
    """A preset's name (as in :data:`proxy.presets.PRESETS`): the step starts from its conditions."""
    clear: bool = False
    """Start from no conditions instead of the step before's."""
    ramp_s: float = 0.0
    changes: tuple[Change, Change] = (Change(), Change())
    """Per direction (indexed by :class:`~proxy.model.Direction`)."""
    disconnect: Literal["reset", "close"] | None = None
    outage_s: float | None = None
    outage_reset: bool = False
    lines: Mapping[str, int] = field(default_factory=dict, compare=False)
    """The lines of its keys (``at``, ``ramp``, ``outage``, ``freeze``, ``c2s.freeze``), for errors about them."""

    def line_of(self, key: str) -> int:
        return self.lines.get(key, self.line)

    @property
    def end_s(self) -> float:
        """When the last thing this step starts is over (its ramp, freezes, outage)."""
        spans = [self.ramp_s, self.outage_s or 0.0, *((c.freeze_s or 0.0) for c in self.changes)]
        return self.at_s + max(spans)

    def name(self, index: int, total: int) -> str:
        return f"step {index + 1}/{total}" + (f" {self.label!r}" if self.label else "")


@dataclass(frozen=True, slots=True)
class Scenario:
    """A validated scenario: steps sorted by time, within one pass of ``length_s`` seconds."""

    name: str
    source: str
    """Where it was read from (a path, or ``<string>``): error lines and printed steps name it."""
    steps: tuple[Step, ...]
    length_s: float
    repeat: int | None = 1
    """Passes through the timeline; None: for ever."""
    resolution_s: float = RESOLUTION_S
    start: StartMode = "load"
    at_end: EndMode = "keep"
    description: str = ""

    def describe(self) -> str:
        """One line: ``'Commute' (commute.toml): 7 steps over 2 min 30 s, once``."""
        times = "for ever" if self.repeat is None else "once" if self.repeat == 1 else f"{self.repeat} times"
        start = ", from the first connection" if self.start == "first-connection" else ""
        return (f"{self.name!r} ({self.source}): {len(self.steps)} step{'s' * (len(self.steps) != 1)} over "
                f"{fmt_s(self.length_s)}, {times}{start}")

    def plan(self, until_s: float | None = None, max_points: int = PLAN_MAX_POINTS,
             ramp_points: int | None = None) -> list[tuple[float, Conditions]]:
        """The conditions a run applies, as (seconds from time zero, conditions) in order, up to ``until_s``
        (default: the whole run, or ten passes of one that repeats for ever) and at most ``max_points`` changes.
        Spikes' ``start_ns`` count from time zero. Made by a :class:`Player` without a clock: what a run does
        (``ramp_points``: with at most that many updates per ramp, enough to draw one)."""
        if until_s is None:
            passes = 10 if self.repeat is None else self.repeat
            until_s = min(self.length_s * passes, MAX_TIME_S * 10)
        player = Player(self, ramp_points=ramp_points)
        out: list[tuple[float, Conditions]] = []
        actions = player.start(0)
        while True:
            for a in actions:
                if isinstance(a, Apply):
                    t = player.now_ns / NS
                    if out and out[-1][0] == t:
                        out[-1] = (t, a.conditions)
                    else:
                        out.append((t, a.conditions))
            due = player.due_ns
            if due is None or due / NS > until_s or len(out) >= max_points:
                return out
            actions = player.advance(due)


def fmt_s(seconds: float) -> str:
    """``90`` -> ``1 min 30 s``; ``0.25`` -> ``250 ms``; ``45`` -> ``45 s``."""
    if seconds < 1 and seconds != 0:
        return f"{seconds * 1000:.4g} ms"
    if seconds < 60:
        return f"{seconds:.4g} s"
    minutes, s = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    text = f"{hours} h " if hours else ""
    text += f"{minutes} min" if minutes else ""
    if s:
        text += f" {s:.3g} s"
    return text.strip()


# =============================================================================================== reading

SCENARIO_HELP: Final = ("play a scenario file: a timeline of conditions in TOML (steps, ramps, spikes, outages, "
                        "presets; docs/scenarios.md), from the moment the proxy starts")


def add_scenario_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--scenario FILE``, the same for ``sockscope-proxy`` and the window."""
    parser.add_argument("--scenario", metavar="FILE", default=None, help=SCENARIO_HELP)



def load(path: str | Path) -> Scenario:
    """Read and validate a scenario file; :class:`ScenarioError` names the file, line and mistake."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise ScenarioError([f"{p}: cannot read the scenario: {e.strerror or e}"]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ScenarioError([f"{p}: larger than {MAX_FILE_BYTES >> 20} MiB: not a scenario file"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ScenarioError([f"{p}:{line}: not UTF-8 text (byte {raw[e.start]:#04x}); save the file as UTF-8"]) \
            from None
    return loads(text, str(p), default_name=p.stem)


def loads(text: str, source: str = "<string>", *, default_name: str | None = None) -> Scenario:
    """Read and validate a scenario from TOML text; ``source`` names it in errors, and its file name is the
    scenario's name unless the text gives one (or ``default_name``)."""
    if default_name is None:
        default_name = "scenario" if source.startswith("<") else Path(source).stem
    if len(text) > MAX_FILE_BYTES:
        raise ScenarioError([f"{source}: larger than {MAX_FILE_BYTES >> 20} MiB: not a scenario file"])
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise ScenarioError([f"{source}: nested too deeply to be a scenario"]) from None
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.search(r"\(at line (\d+), column \d+\)$", msg)
        if m is not None:
            msg = msg[: m.start()].rstrip()
        where = f"{source}:{m.group(1)}" if m is not None else source
        raise ScenarioError([f"{where}: not valid TOML: {msg}"]) from None
    return _Reader(text, source).read(data, default_name)


# ----------------------------------------------------------------------------------------- where keys are


class _KeyLines:
    """The line of every key, table header and array element in TOML text: ``("step", 2, "c2s", "latency")`` ->
    14. ``tomllib`` gives values without positions, so errors about a value find its key's line here. The text has
    already been parsed, so this scanner may assume it is valid TOML; if it meets something it does not know it
    stops, and lines not found fall back to a search for the key's name."""

    _BARE = re.compile(r"[A-Za-z0-9_-]+")

    def __init__(self, text: str) -> None:
        self.t = text
        self.i = 0
        self.line = 1
        self.lines: dict[tuple[str | int, ...], int] = {}
        self._arrays: dict[tuple[str | int, ...], int] = {}
        self._current: tuple[str | int, ...] = ()
        try:
            self._scan()
        except (IndexError, ValueError, RecursionError):
            pass

    def line_of(self, path: Sequence[str | int]) -> int | None:
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return None

    # the scanner

    def _peek(self, n: int = 1) -> str:
        return self.t[self.i:self.i + n]

    def _advance(self, n: int) -> None:
        self.line += self.t.count("\n", self.i, self.i + n)
        self.i += n

    def _skip(self, newlines: bool) -> None:
        t = self.t
        while self.i < len(t):
            c = t[self.i]
            if c in " \t\r" or (newlines and c == "\n"):
                self._advance(1)
            elif c == "#":
                end = t.find("\n", self.i)
                self.i = len(t) if end < 0 else end
                if not newlines:
                    return
            else:
                return

    def _scan(self) -> None:
        t = self.t
        while True:
            self._skip(True)
            if self.i >= len(t):
                return
            line = self.line
            if t.startswith("[[", self.i):
                self._advance(2)
                path = self._resolve(self._key(), array=True)
                self._skip(False)
                self._expect("]]")
            elif t[self.i] == "[":
                self._advance(1)
                path = self._resolve(self._key(), array=False)
                self._skip(False)
                self._expect("]")
            else:
                keys = self._key()
                path = (*self._current, *keys)
                self.lines.setdefault(path, line)
                self._skip(False)
                self._expect("=")
                self._value(path)
                continue
            self._current = path
            self.lines.setdefault(path, line)

    def _resolve(self, keys: list[str], array: bool) -> tuple[str | int, ...]:
        path: tuple[str | int, ...] = ()
        for n, k in enumerate(keys):
            path = (*path, k)
            last = n == len(keys) - 1
            if last and array:
                index = self._arrays.get(path, -1) + 1
                self._arrays[path] = index
                path = (*path, index)
            elif path in self._arrays:
                path = (*path, self._arrays[path])
        return path

    def _expect(self, s: str) -> None:
        if not self.t.startswith(s, self.i):
            raise ValueError(f"expected {s!r}")
        self._advance(len(s))

    def _key(self) -> list[str]:
        keys = []
        while True:
            self._skip(False)
            c = self._peek()
            if c == '"':
                keys.append(self._basic_string())
            elif c == "'":
                end = self.t.index("'", self.i + 1)
                keys.append(self.t[self.i + 1:end])
                self._advance(end + 1 - self.i)
            else:
                m = self._BARE.match(self.t, self.i)
                if m is None:
                    raise ValueError("no key")
                keys.append(m.group())
                self._advance(m.end() - self.i)
            self._skip(False)
            if self._peek() != ".":
                return keys
            self._advance(1)

    def _basic_string(self) -> str:
        t = self.t
        j = self.i + 1
        while t[j] != '"':
            j += 2 if t[j] == "\\" else 1
        text = t[self.i + 1:j]
        self._advance(j + 1 - self.i)
        return text

    def _value(self, path: tuple[str | int, ...]) -> None:
        self._skip(False)
        t = self.t
        if t.startswith('"""', self.i) or t.startswith("'''", self.i):
            q = t[self.i:self.i + 3]
            j = self.i + 3
            while not t.startswith(q, j):
                j += 2 if (q == '"""' and t[j] == "\\") else 1
            while t.startswith(q[0], j + 3):  # up to two quotes may end the content
                j += 1
            self._advance(j + 3 - self.i)
        elif t[self.i] == '"':
            self._basic_string()
        elif t[self.i] == "'":
            self._advance(t.index("'", self.i + 1) + 1 - self.i)
        elif t[self.i] == "{":
            self._advance(1)
            while True:
                self._skip(False)
                if self._peek() == "}":
                    self._advance(1)
                    return
                line = self.line
                keys = self._key()
                self.lines.setdefault((*path, *keys), line)
                self._expect("=")
                self._value((*path, *keys))
                self._skip(False)
                if self._peek() == ",":
                    self._advance(1)
        elif t[self.i] == "[":
            self._advance(1)
            index = 0
            while True:
                self._skip(True)
                if self._peek() == "]":
                    self._advance(1)
                    return
                self.lines.setdefault((*path, index), self.line)
                self._value((*path, index))
                index += 1
                self._skip(True)
                if self._peek() == ",":
                    self._advance(1)
        else:
            m = re.compile(r"[^,\]}\n#]*").match(t, self.i)
            assert m is not None
            self._advance(m.end() - self.i)


# ----------------------------------------------------------------------------------------- values

_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|min|h|s|m)\s*", re.IGNORECASE)
_UNIT_S: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}

_CONDITION_KEYS: Final = {
    "latency": "one-way delay (\"80ms\", 80)",
    "jitter": "random extra delay, its mean (\"20ms\")",
    "jitter_distribution": "uniform, normal or exponential",
    "jitter_cap": "the largest jitter sample (\"200ms\")",
    "bandwidth": "link rate (\"64KB/s\", \"2Mbit\", \"unlimited\")",
    "bandwidth_burst": "UDP: token bucket size (\"16KB\")",
    "bandwidth_queue": "UDP: bytes that may wait for the link (\"64KiB\", \"default\")",
    "loss": "packet loss in percent (TCP: as retransmission delay; UDP: lost)",
    "burst_loss": "UDP bursty loss, netem's gemodel (\"5:50\" = p r [1-h [1-k]]) or \"none\"",
    "duplicate": "UDP: percent of datagrams sent twice",
    "duplicate_delay": "UDP: the copy's delay (\"20ms\")",
    "reorder": "UDP: percent sent ahead (needs latency)",
    "reorder_gap": "UDP: netem's reorder gap",
    "corrupt": "UDP: percent with one bit flipped",
    "mtu": "UDP: largest datagram in bytes, or \"none\"",
    "mtu_action": "UDP: drop or truncate",
    "jitter_reorders": "UDP: let jitter reorder datagrams",
    "drop": "percent of messages dropped on purpose (an application bug, not a network)",
    "rto": "retransmission timeout used for loss on TCP (\"300ms\")",
    "spike": "lag spikes: {add = \"800ms\", for = \"2s\", every = \"30s\"}, a list of them, or \"none\"",
    "freeze": "hold everything for a while (\"5s\")",
}
_STEP_KEYS: Final = {
    "at": "when, from time zero (\"1m30s\")",
    "ramp": "move there linearly over this long (\"10s\")",
    "label": "a name shown when the step starts",
    "preset": "start from a preset (sockscope-proxy --list-presets)",
    "clear": "start from no conditions",
    "disconnect": "\"reset\" (RST) or \"close\" (FIN) every open connection",
    "outage": "no network for a while (\"20s\" or {for = \"20s\", reset = true})",
    "c2s": "a table of conditions for client → server only",
    "s2c": "a table of conditions for server → client only",
}
_TOP_KEYS: Final = {
    "name": "the scenario's name", "description": "what it shows", "length": "one pass (\"2m\")",
    "repeat": "passes (a number, or \"forever\")", "resolution": "ramp updates (\"100ms\")",
    "start": "\"load\" or \"first-connection\"", "at_end": "\"keep\" or \"restore\"",
    "step": "the timeline: [[step]] tables", "cycle": "[[cycle]] tables: a preset at a time",
}
_CYCLE_KEYS: Final = {"at": "when it starts", "presets": "the presets' names, in order",
                      "every": "how long each preset lasts", "ramp": "move to each one over this long"}
_SPIKE_KEYS: Final = {"add": "extra delay", "for": "how long", "every": "period", "after": "delay from the step"}
_OUTAGE_KEYS: Final = {"for": "how long", "reset": "reset open connections when it starts"}
_RAMPED: Final = ("latency_ms", "jitter.ms", "jitter.cap_ms", "bandwidth_bps", "loss_pct", "drop_fraction",
                  "duplicate_fraction", "duplicate_delay_ms", "reorder_pct", "corrupt_pct", "rto_ms")
"""The numbers a ramp moves; everything else changes when the ramp starts."""


class _Bad(Exception):
    """One problem with one value; the reader adds the file, the line and the key."""


class _Reader:
    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.keys = _KeyLines(text)
        self.problems: list[str] = []

    # problems

    def line(self, path: Sequence[str | int]) -> int:
        found = self.keys.line_of(path)
        if found is not None:
            return found
        names = [p for p in path if isinstance(p, str)]
        if names:  # the scanner stopped early: the first line that starts with the key
            m = re.search(rf"^\s*{re.escape(names[-1])}\s*=", self.text, re.MULTILINE)
            if m is not None:
                return self.text.count("\n", 0, m.start()) + 1
        return 1

    def bad(self, path: Sequence[str | int], text: str) -> None:
        problem = f"{self.source}:{self.line(path)}: {_key_name(path)}{text}"
        if problem in self.problems:  # a key given for both directions is read twice
            return
        if len(self.problems) < MAX_ERRORS:
            self.problems.append(problem)
        elif len(self.problems) == MAX_ERRORS:
            self.problems.append(f"{self.source}: more problems not shown; fix these first")

    def check_keys(self, path: tuple[str | int, ...], table: Mapping[str, Any], known: Mapping[str, str],
                   where: str) -> None:
        for k in table:
            if k not in known:
                close = difflib.get_close_matches(k, list(known), n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
                if path and k in _TOP_KEYS:
                    hint = "a scenario's own keys (name, length, repeat, ...) go before the first [[step]] or [[cycle]]"
                self.bad((*path, k), f": unknown key in {where}; {hint}")

    def value(self, path: tuple[str | int, ...], read: Callable[[Any], Any], v: Any) -> Any:
        """``read(v)``, or None with the problem noted (a bad value never stops the reading)."""
        try:
            return read(v)
        except _Bad as e:
            self.bad(path, str(e))
        except ConditionsError as e:  # a value proxy.conditions refused: its words, without the CLI's examples
            text = re.sub(r"^--[a-z-]+: ", "", str(e)).split("; e.g.")[0]
            self.bad(path, ": " + text)
        return None

    # the file

    def read(self, data: dict[str, Any], default_name: str) -> Scenario:
        self.check_keys((), data, _TOP_KEYS, "the scenario")
        name = self.value(("name",), _text, data.get("name", default_name)) or default_name
        description = self.value(("description",), _text, data.get("description", "")) or ""
        length = None if "length" not in data else self.value(("length",), _positive_duration, data["length"])
        repeat: int | None = 1
        if "repeat" in data:
            repeat = self.value(("repeat",), _repeat, data["repeat"])
        resolution = RESOLUTION_S
        if "resolution" in data:
            resolution = self.value(("resolution",), _resolution, data["resolution"]) or RESOLUTION_S
        start = self.value(("start",), _choice("start", ("load", "first-connection")), data.get("start", "load"))
        at_end = self.value(("at_end",), _choice("at_end", ("keep", "restore")), data.get("at_end", "keep"))

        steps: list[Step] = []
        cycle_ends: list[float] = []
        raw_steps = data.get("step", [])
        if not isinstance(raw_steps, list) or not all(isinstance(s, dict) for s in raw_steps):
            self.bad(("step",), ": write each step as a [[step]] table")
            raw_steps = []
        for i, s in enumerate(raw_steps):
            step = self.step(("step", i), s)
            if step is not None:
                steps.append(step)
        raw_cycles = data.get("cycle", [])
        if not isinstance(raw_cycles, list) or not all(isinstance(c, dict) for c in raw_cycles):
            self.bad(("cycle",), ": write each cycle as a [[cycle]] table")
            raw_cycles = []
        for i, c in enumerate(raw_cycles):
            made = self.cycle(("cycle", i), c)
            if made is not None:
                steps.extend(made[0])
                cycle_ends.append(made[1])
        if not raw_steps and not raw_cycles and not self.problems:
            self.problems.append(f"{self.source}:1: no timeline: add [[step]] tables (each with at = \"…\") or a "
                                 "[[cycle]] of presets")
        if len(steps) > MAX_STEPS:
            self.bad(("step",), f": {len(steps)} steps; at most {MAX_STEPS} in one pass")
        if self.problems:
            raise ScenarioError(self.problems)

        steps.sort(key=lambda s: s.at_s)
        self.timeline(steps, length)
        ends = [s.end_s for s in steps] + cycle_ends
        if length is None:
            if repeat != 1:
                self.bad(("repeat",), ": a timeline that repeats needs length = \"…\" (one pass, e.g. \"2m\")")
            length = max(ends, default=0.0)
        self.simulate(steps)
        if self.problems:
            raise ScenarioError(self.problems)
        return Scenario(name=name, source=self.source, steps=tuple(steps), length_s=length, repeat=repeat,
                        resolution_s=resolution, start=start, at_end=at_end, description=description)

    def timeline(self, steps: list[Step], length: float | None) -> None:
        """What only the whole timeline shows: two steps at once, a ramp into the next step, past the end."""
        for a, b in itertools.pairwise(steps):
            if a.at_s == b.at_s:
                first, second = sorted((a, b), key=lambda s: s.line)
                self.problems.append(f"{self.source}:{second.line_of('at')}: at: another step is at "
                                     f"{fmt_s(a.at_s)} too (line {first.line}); put what they do in one step")
            elif a.at_s + a.ramp_s > b.at_s + 1e-9:
                self.problems.append(f"{self.source}:{a.line_of('ramp')}: ramp: the ramp ends at "
                                     f"{fmt_s(a.at_s + a.ramp_s)}, after the next step starts "
                                     f"({fmt_s(b.at_s)}, line {b.line})")
        if length is not None:
            for s in steps:
                if s.at_s >= length:
                    self.problems.append(f"{self.source}:{s.line_of('at')}: at: {fmt_s(s.at_s)} is not before "
                                         f"the end of the timeline (length {fmt_s(length)})")
                elif s.end_s > length + 1e-9:
                    self.problems.append(f"{self.source}:{s.line}: [[step]]: what it starts lasts until "
                                         f"{fmt_s(s.end_s)}, past the end of the timeline (length {fmt_s(length)})")
        outages = [(s.at_s, s.at_s + s.outage_s, s) for s in steps if s.outage_s]
        for (_, end, a), (start, _, b) in itertools.pairwise(outages):
            if start < end - 1e-9:
                self.problems.append(f"{self.source}:{b.line_of('outage')}: outage: starts while the outage of "
                                     f"line {a.line} lasts (until {fmt_s(end)})")
        for d in Direction:
            freezes = [(s.at_s, s.at_s + (s.changes[d].freeze_s or 0), s) for s in steps if s.changes[d].freeze_s]
            for (_, end, a), (start, _, b) in itertools.pairwise(freezes):
                if start < end - 1e-9:
                    key = f"{d.label}.freeze" if f"{d.label}.freeze" in b.lines else "freeze"
                    self.problems.append(f"{self.source}:{b.line_of(key)}: freeze: {d.label} is still frozen by line "
                                         f"{a.line} (until {fmt_s(end)})")
        if self.problems:
            raise ScenarioError(self.problems)

    def simulate(self, steps: list[Step]) -> None:
        """Build each step's conditions once, so a combination no single value shows (a spike longer than its
        period, a jitter cap with no jitter) is reported on its step's line now, not when the run gets there."""
        state = PASSTHROUGH
        for s in steps:
            try:
                state = _after(s, state)
            except (ConditionsError, LookupError) as e:
                self.problems.append(f"{self.source}:{s.line}: [[step]]: {e}")

    # one step

    def step(self, path: tuple[str | int, ...], s: dict[str, Any]) -> Step | None:
        self.check_keys(path, s, {**_STEP_KEYS, **_CONDITION_KEYS}, "a step")
        before = len(self.problems)
        if "at" not in s:
            self.bad(path, ": a step needs at = \"…\" (its time from time zero, e.g. at = \"30s\")")
            at = 0.0
        else:
            at = self.value((*path, "at"), _time, s["at"])
        ramp = self.value((*path, "ramp"), _time, s.get("ramp", "0s"))
        label = self.value((*path, "label"), _text, s.get("label", "")) or ""
        preset = None
        if "preset" in s:
            preset = self.value((*path, "preset"), _preset, s["preset"])
        clear = self.value((*path, "clear"), _bool("clear"), s.get("clear", False))
        if preset is not None and clear:
            self.bad((*path, "clear"), ": a step starts from a preset or from nothing (clear), not both")
        disconnect = None
        if "disconnect" in s:
            disconnect = self.value((*path, "disconnect"), _disconnect, s["disconnect"])
        outage_s, outage_reset = None, False
        if "outage" in s:
            got = self.outage((*path, "outage"), s["outage"])
            if got is not None:
                outage_s, outage_reset = got
        both = {k: v for k, v in s.items() if k in _CONDITION_KEYS}
        changes = []
        for d in Direction:
            own = s.get(d.label, {})
            if not isinstance(own, dict):
                self.bad((*path, d.label), f": expected a table of conditions, e.g. {d.label} = {{latency = \"30ms\"}}")
                own = {}
            else:
                self.check_keys((*path, d.label), own, _CONDITION_KEYS, f"{d.label}")
            merged = [((*path, k), k, v) for k, v in both.items() if k not in own]
            merged += [((*path, d.label, k), k, v) for k, v in own.items() if k in _CONDITION_KEYS]
            changes.append(self.change(merged))
        if len(self.problems) > before:
            return None
        if ramp and all(not _ramps(c) for c in changes) and preset is None:
            self.bad((*path, "ramp"), ": nothing to ramp: give the values to move to (latency, jitter, bandwidth, "
                     "loss, ...) or a preset")
            return None
        keys = ("at", "ramp", "outage", "freeze", "c2s.freeze", "s2c.freeze")
        lines = {k: line for k in keys if (line := self.keys.line_of((*path, *k.split(".")))) is not None}
        return Step(at_s=at, line=self.line(path), label=label, preset=preset, clear=bool(clear), ramp_s=ramp,
                    changes=(changes[0], changes[1]), disconnect=disconnect, outage_s=outage_s,
                    outage_reset=outage_reset, lines=lines)

    def change(self, items: list[tuple[tuple[str | int, ...], str, Any]]) -> Change:
        fields: dict[str, Any] = {}
        spikes: tuple[SpikeSpec, ...] | None = None
        freeze = None
        for path, key, v in items:
            if key == "spike":
                spikes = self.spikes(path, v)
                continue
            if key == "freeze":
                freeze = self.value(path, _positive_duration, v)
                continue
            got = self.value(path, _FIELD_READERS[key][1], v)
            if got is not None or key in _NULLABLE:
                fields[_FIELD_READERS[key][0]] = got
        return Change(fields=fields, spikes=spikes, freeze_s=freeze)

    def spikes(self, path: tuple[str | int, ...], v: Any) -> tuple[SpikeSpec, ...] | None:
        if isinstance(v, str) and v.strip().lower() in ("none", "off"):
            return ()
        items = v if isinstance(v, list) else [v]
        if len(items) > MAX_SPIKES:
            # each message's delay adds up the spikes of its direction: their number is the relay's work
            self.bad(path, f": {len(items)} spikes; at most {MAX_SPIKES} at once")
            return None
        out = []
        for n, item in enumerate(items):
            p = (*path, n) if isinstance(v, list) else path
            if not isinstance(item, dict):
                self.bad(p, ": a spike is a table such as {add = \"800ms\", for = \"2s\", every = \"30s\"} "
                         "(or \"none\")")
                continue
            self.check_keys(p, item, _SPIKE_KEYS, "a spike")
            for key in ("add", "for"):
                if key not in item:
                    self.bad(p, f": a spike needs {key} = \"…\", e.g. {{add = \"800ms\", for = \"2s\"}}")
            if not ("add" in item and "for" in item):
                continue
            add = self.value((*p, "add"), _ms, item["add"])
            length = self.value((*p, "for"), _positive_duration, item["for"])
            every = self.value((*p, "every"), _positive_duration, item["every"]) if "every" in item else None
            after = self.value((*p, "after"), _time, item.get("after", "0s"))
            if add is None or length is None or after is None or ("every" in item and every is None):
                continue
            if every is not None and length > every:
                self.bad((*p, "for"), f": the spike lasts {fmt_s(length)}, longer than its period ({fmt_s(every)}): "
                         "that is latency, not a spike")
                continue
            out.append(SpikeSpec(add, length, every, after))
        return tuple(out)

    def outage(self, path: tuple[str | int, ...], v: Any) -> tuple[float, bool] | None:
        if isinstance(v, dict):
            self.check_keys(path, v, _OUTAGE_KEYS, "an outage")
            if "for" not in v:
                self.bad(path, ": an outage needs for = \"…\", e.g. outage = {for = \"20s\", reset = true}")
                return None
            length = self.value((*path, "for"), _positive_duration, v["for"])
            reset = self.value((*path, "reset"), _bool("reset"), v.get("reset", False))
            return None if length is None or reset is None else (length, reset)
        length = self.value(path, _positive_duration, v)
        return None if length is None else (length, False)

    def cycle(self, path: tuple[str | int, ...], c: dict[str, Any]) -> tuple[list[Step], float] | None:
        self.check_keys(path, c, _CYCLE_KEYS, "a cycle")
        before = len(self.problems)
        at = self.value((*path, "at"), _time, c.get("at", "0s"))
        if "every" not in c:
            self.bad(path, ": a cycle needs every = \"…\" (how long each preset lasts)")
        every = self.value((*path, "every"), _positive_duration, c.get("every", "1s"))
        ramp = self.value((*path, "ramp"), _time, c.get("ramp", "0s"))
        names = c.get("presets")
        if not isinstance(names, list) or not names:
            self.bad((*path, "presets"), ": a cycle needs presets = [\"Home fibre\", \"Mobile 4G\", ...]")
            return None
        if len(names) > MAX_STEPS:
            self.bad((*path, "presets"), f": {len(names)} presets; at most {MAX_STEPS}")
            return None
        presets = [self.value((*path, "presets", n), _preset, name) for n, name in enumerate(names)]
        if len(self.problems) > before:
            return None
        if ramp >= every:
            self.bad((*path, "ramp"), f": the ramp ({fmt_s(ramp)}) must be shorter than every ({fmt_s(every)})")
            return None
        steps = [Step(at_s=at + n * every, line=self.line((*path, "presets", n)), label=str(p), preset=p,
                      ramp_s=ramp) for n, p in enumerate(presets)]
        return steps, at + len(presets) * every


def _key_name(path: Sequence[str | int]) -> str:
    """``("step", 2, "c2s", "latency")`` -> ``c2s.latency: ``; a table itself -> ``[[step]]``."""
    names: list[str] = []
    seen_index = False
    for p in path:
        if isinstance(p, int):
            if not seen_index:  # after a step's or a cycle's index: keys inside it, as they are written there
                names, seen_index = [], True
        else:
            names.append(p)
    if names:
        return ".".join(names)
    tables = [p for p in path if isinstance(p, str)]
    return f"[[{tables[-1]}]]" if tables else ""


def _text(v: Any) -> str:
    if not isinstance(v, str):
        raise _Bad(f": expected text in quotes, got {_shown(v)}")
    if len(v) > 500 or any(not (c.isprintable() or c in "\n\t") for c in v):
        raise _Bad(": expected a short line of printable text")
    return v


def _shown(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return repr(v[:40] + ("…" if len(v) > 40 else ""))
    if isinstance(v, dict):
        return "a table"
    if isinstance(v, list):
        return "a list"
    return repr(v)


def _duration(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, str):
        hint = f"\"{v:g}s\" or \"{v:g}ms\"" if isinstance(v, int | float) and not isinstance(v, bool) else "\"30s\""
        raise _Bad(f": a time needs a unit: write it as text such as {hint} (got {_shown(v)})")
    parts = list(_DURATION_PART.finditer(v))
    if not v.strip() or "".join(m.group() for m in parts) != v:
        raise _Bad(f": cannot read {_shown(v)} as a time; use ms, s, min or h, e.g. \"500ms\", \"1m30s\"")
    total = sum(float(m.group(1)) * _UNIT_S[m.group(2).lower()] for m in parts)
    if not math.isfinite(total) or total > MAX_TIME_S:
        raise _Bad(f": {_shown(v)} is longer than a week, the longest time a scenario takes")
    return total


def _time(v: Any) -> float:
    return _duration(v)


def _positive_duration(v: Any) -> float:
    s = _duration(v)
    if s <= 0:
        raise _Bad(f": must be longer than 0, got {_shown(v)}")
    return s


def _resolution(v: Any) -> float:
    s = _duration(v)
    lo, hi = RESOLUTION_RANGE
    if not lo <= s <= hi:
        raise _Bad(f": ramps update every {fmt_s(lo)} to {fmt_s(hi)}, got {_shown(v)}")
    return s


def _repeat(v: Any) -> int | None:
    if isinstance(v, str) and v.strip().lower() in ("forever", "for ever", "loop"):
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_REPEAT:
        raise _Bad(f": expected a number of passes from 1 to {MAX_REPEAT:,}, or \"forever\"; got {_shown(v)}")
    return v


def _choice(name: str, options: tuple[str, ...]) -> Callable[[Any], Any]:
    def read(v: Any) -> str:
        if v not in options:
            raise _Bad(f": expected {' or '.join(repr(o) for o in options)}, got {_shown(v)}")
        return str(v)

    return read


def _bool(name: str) -> Callable[[Any], bool]:
    def read(v: Any) -> bool:
        if not isinstance(v, bool):
            raise _Bad(f": expected true or false, got {_shown(v)}")
        return v

    return read


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise _Bad(f": expected a number, got {_shown(v)}")
    return float(v)


def _ms(v: Any) -> float:
    """Milliseconds: a number (``80``) or text with a unit (``"80ms"``, ``"0.08s"``)."""
    if isinstance(v, str):
        s = _duration(v)
        return s * 1000
    ms = _number(v)
    if ms < 0:
        raise _Bad(f": must be 0 or more, got {_shown(v)}")
    if ms > MAX_TIME_S * 1000:
        raise _Bad(f": {_shown(v)} ms is longer than a week")
    return ms


def _percent(v: Any) -> float:
    if isinstance(v, str) and v.strip().endswith("%"):
        try:
            v = float(v.strip().removesuffix("%"))
        except ValueError:
            raise _Bad(f": cannot read {_shown(v)} as a percentage") from None
    p = _number(v)
    if not 0 <= p <= 100:
        raise _Bad(f": a percentage goes from 0 to 100, got {_shown(v)}")
    return p


def _loss(v: Any) -> float:
    p = _percent(v)
    if p >= 100:
        raise _Bad(": must be below 100 % (no network at all is an outage: outage = \"10s\")")
    return p


def _fraction(v: Any) -> float:
    return _percent(v) / 100.0


def _bandwidth(v: Any) -> float | None:
    if isinstance(v, str):
        return parse_bandwidth(v)[Direction.C2S]
    bps = _number(v)
    if bps <= 0:
        raise _Bad(f": must be above 0 bytes/s (to stop traffic, freeze); got {_shown(v)}")
    return bps


def _size(v: Any) -> int:
    if isinstance(v, str):
        return parse_bytes("--size", v)[Direction.C2S]
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise _Bad(f": expected a number of bytes or text such as \"16KB\"; got {_shown(v)}")
    return v


def _burst_bytes(v: Any) -> int:
    return _size(v)


def _queue_bytes(v: Any) -> int | None:
    if isinstance(v, str) and v.strip().lower() == "default":
        return None
    n = _size(v)
    if n < 1:
        raise _Bad(": must be at least 1 byte (or \"default\")")
    return n


def _burst_loss(v: Any) -> GilbertElliott | None:
    if not isinstance(v, str):
        raise _Bad(f": expected netem's gemodel as text, \"P:R[:1-H[:1-K]]\" in percent (e.g. \"5:50\"), or "
                   f"\"none\"; got {_shown(v)}")
    if v.strip().lower() in ("none", "off"):
        return None
    text = v.strip()
    if not text.lower().startswith(("gemodel", "ge:", "burst")):
        text = "gemodel:" + text
    return parse_loss(text)[Direction.C2S][1]


def _distribution(v: Any) -> str:
    if v not in JITTER_DISTRIBUTIONS:
        raise _Bad(f": expected {', '.join(JITTER_DISTRIBUTIONS)}; got {_shown(v)}")
    return str(v)


def _mtu(v: Any) -> int | None:
    if isinstance(v, str) and v.strip().lower() in ("none", "off"):
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 65535:
        raise _Bad(f": expected 1 to 65535 bytes or \"none\"; got {_shown(v)}")
    return v


def _mtu_action(v: Any) -> str:
    if v not in MTU_ACTIONS:
        raise _Bad(f": expected {' or '.join(MTU_ACTIONS)}; got {_shown(v)}")
    return str(v)


def _gap(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise _Bad(f": expected a whole number >= 1; got {_shown(v)}")
    return v


def _rto(v: Any) -> float:
    ms = _ms(v)
    if ms <= 0:
        raise _Bad(f": must be above 0; got {_shown(v)}")
    return ms


def _preset(v: Any) -> str:
    if not isinstance(v, str):
        raise _Bad(f": expected a preset's name in quotes, got {_shown(v)}")
    try:
        return find_preset(v).name
    except ConditionsError as e:
        raise _Bad(": " + str(e).removeprefix("--preset: ")) from None


def _disconnect(v: Any) -> Literal["reset", "close"]:
    if v is True or v == "reset":
        return "reset"
    if v == "close":
        return "close"
    raise _Bad(f": expected \"reset\" (RST) or \"close\" (FIN); got {_shown(v)}")


_FIELD_READERS: Final[Mapping[str, tuple[str, Callable[[Any], Any]]]] = {
    "latency": ("latency_ms", _ms),
    "jitter": ("jitter.ms", _ms),
    "jitter_distribution": ("jitter.distribution", _distribution),
    "jitter_cap": ("jitter.cap_ms", _ms),
    "bandwidth": ("bandwidth_bps", _bandwidth),
    "bandwidth_burst": ("burst_bytes", _burst_bytes),
    "bandwidth_queue": ("queue_bytes", _queue_bytes),
    "loss": ("loss_pct", _loss),
    "burst_loss": ("burst_loss", _burst_loss),
    "duplicate": ("duplicate_fraction", _fraction),
    "duplicate_delay": ("duplicate_delay_ms", _ms),
    "reorder": ("reorder_pct", _percent),
    "reorder_gap": ("reorder_gap", _gap),
    "corrupt": ("corrupt_pct", _percent),
    "mtu": ("mtu", _mtu),
    "mtu_action": ("mtu_action", _mtu_action),
    "jitter_reorders": ("jitter_reorders", _bool("jitter_reorders")),
    "drop": ("drop_fraction", _fraction),
    "rto": ("rto_ms", _rto),
}
_NULLABLE: Final = frozenset({"bandwidth", "bandwidth_queue", "burst_loss", "mtu"})
"""Keys whose reader returns None as a value ("unlimited", "none"), not as a failure. A failure has been noted as
a problem, and a step with problems is never used, so the None kept here is harmless."""


def _ramps(c: Change) -> bool:
    return any(k in _RAMPED for k in c.fields)


# =============================================================================================== conditions over time


def _after(step: Step, before: Conditions) -> Conditions:
    """The conditions a step leads to (at the end of its ramp), from those before it. Spikes' ``start_ns`` count
    from the start of the pass."""
    base = find_preset(step.preset).conditions if step.preset else PASSTHROUGH if step.clear else before
    out = base
    for d in Direction:
        out = out.replace_direction(d, _changed(base.for_direction(d), step.changes[d], step.at_s))
    return out


def _changed(dc: DirectionConditions, change: Change, at_s: float) -> DirectionConditions:
    f = change.fields
    kw = {k: v for k, v in f.items() if not k.startswith("jitter.")}
    if any(k.startswith("jitter.") for k in f):
        j = dc.jitter
        cap = f.get("jitter.cap_ms", j.cap_ms)
        kw["jitter"] = Jitter(ms=f.get("jitter.ms", j.ms), distribution=f.get("jitter.distribution", j.distribution),
                              cap_ms=cap)
    if change.spikes is not None:
        kw["spikes"] = tuple(Spike(add_ms=s.add_ms, for_s=s.for_s, every_s=s.every_s,
                                   start_ns=round((at_s + s.after_s) * NS)) for s in change.spikes)
    return replace(dc, **kw) if kw else dc


def _lerp(a: float, b: float, f: float) -> float:
    return a + (b - a) * f


def _ramped(a: DirectionConditions, b: DirectionConditions, f: float) -> DirectionConditions:
    """``b`` with its numbers a fraction ``f`` of the way from ``a``'s (the rest of ``b`` as it is)."""
    if f >= 1:
        return b
    cap = b.jitter.cap_ms
    if a.jitter.cap_ms is not None and cap is not None:
        cap = _lerp(a.jitter.cap_ms, cap, f)
    bw: float | None
    if a.bandwidth_bps is not None and b.bandwidth_bps is not None:
        bw = _lerp(a.bandwidth_bps, b.bandwidth_bps, f)
    elif a.bandwidth_bps is None and b.bandwidth_bps is not None:
        # from unlimited: the time per byte grows linearly from 0
        bw = b.bandwidth_bps / f if f > 0 else None
    elif a.bandwidth_bps is not None:
        bw = a.bandwidth_bps / (1 - f)
    else:
        bw = None
    rto = b.rto_ms if a.rto_ms is None or b.rto_ms is None else _lerp(a.rto_ms, b.rto_ms, f)
    return replace(
        b,
        latency_ms=_lerp(a.latency_ms, b.latency_ms, f),
        jitter=Jitter(_lerp(a.jitter.ms, b.jitter.ms, f), b.jitter.distribution, cap),
        bandwidth_bps=bw,
        loss_pct=_lerp(a.loss_pct, b.loss_pct, f),
        drop_fraction=_lerp(a.drop_fraction, b.drop_fraction, f),
        duplicate_fraction=_lerp(a.duplicate_fraction, b.duplicate_fraction, f),
        duplicate_delay_ms=_lerp(a.duplicate_delay_ms, b.duplicate_delay_ms, f),
        reorder_pct=_lerp(a.reorder_pct, b.reorder_pct, f),
        corrupt_pct=_lerp(a.corrupt_pct, b.corrupt_pct, f),
        rto_ms=rto,
    )


def _shifted(dc: DirectionConditions, origin_ns: int) -> DirectionConditions:
    if not dc.spikes:
        return dc
    return replace(dc, spikes=tuple(replace(s, start_ns=s.start_ns + origin_ns) for s in dc.spikes))


# =============================================================================================== the player


@dataclass(frozen=True, slots=True)
class Apply:
    """Set the global conditions to these."""

    conditions: Conditions


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Reset (or close) every open connection and UDP flow."""

    reset: bool


@dataclass(frozen=True, slots=True)
class Refuse:
    """Start (or stop) resetting new TCP connections as they arrive."""

    on: bool


@dataclass(frozen=True, slots=True)
class Say:
    """A line for the user: a step that started, a pass, the end."""

    text: str


@dataclass(frozen=True, slots=True)
class Finished:
    """The timeline is over; ``restore``: put back the conditions from before the scenario."""

    restore: bool


Action = Apply | Disconnect | Refuse | Say | Finished

_OFF, _STEP, _ON = 0, 1, 2  # at one instant: what ends, then steps, then what starts


@dataclass(order=True, slots=True)
class _Item:
    t_ns: int
    rank: int
    order: int
    kind: str = field(compare=False)
    step: int = field(compare=False)
    direction: Direction | None = field(compare=False, default=None)


class Player:
    """A scenario's run without a clock: ``start(now)``, then ``advance(now)`` whenever :attr:`due_ns` comes.

    Times are monotonic nanoseconds of the clock whose conditions are set (the engine's: spikes start at absolute
    times). The shell tells it about conditions changed by hand with :meth:`user_changed`.
    """

    def __init__(self, scenario: Scenario, *, ramp_points: int | None = None) -> None:
        self.scenario = scenario
        self.ramp_points = ramp_points
        """At most this many updates per ramp (a plan to draw needs no more); None: every ``resolution``."""
        self._sample_ns = round(scenario.resolution_s * NS)
        self.origin_ns: int | None = None
        """Time zero, once started."""
        self.now_ns = 0
        self.pass_index = 0
        self.step_index: int | None = None
        """The last step that started (in this pass), if any."""
        self.finished = False
        self.overridden = False
        self.last_applied: Conditions | None = None
        self._items: collections.deque[_Item] = collections.deque()
        self._target = PASSTHROUGH
        self._ramp: tuple[int, int, Conditions, Conditions] | None = None  # start, end, from, to
        self._next_sample = 0
        self._frozen: set[Direction] = set()
        self._outage = False

    # ------------------------------------------------------------------------------------------ time

    @property
    def pass_origin_ns(self) -> int:
        assert self.origin_ns is not None
        return self.origin_ns + self.pass_index * round(self.scenario.length_s * NS)

    @property
    def pass_end_ns(self) -> int:
        return self.pass_origin_ns + round(self.scenario.length_s * NS)

    @property
    def due_ns(self) -> int | None:
        """When :meth:`advance` should next be called; None once finished (or before ``start``)."""
        if self.finished or self.origin_ns is None:
            return None
        due = self._items[0].t_ns if self._items else self.pass_end_ns
        if self._ramp is not None and not self.overridden:
            due = min(due, self._next_sample)
        return due

    def start(self, now_ns: int, origin_ns: int | None = None) -> list[Action]:
        """Time zero is ``origin_ns`` (default ``now_ns``); what is due at ``now_ns`` is done at once."""
        self.origin_ns = now_ns if origin_ns is None else origin_ns
        self._begin_pass()
        out: list[Action] = [Say(f"scenario {self.scenario.describe()}: started")]
        out += self.advance(now_ns, changed=True)
        return out

    def _begin_pass(self) -> None:
        origin = self.pass_origin_ns
        items: list[_Item] = []
        for n, s in enumerate(self.scenario.steps):
            at = origin + round(s.at_s * NS)
            items.append(_Item(at, _STEP, len(items), "step", n))
            if s.outage_s:
                items.append(_Item(at, _ON, len(items), "outage_on", n))
                items.append(_Item(at + round(s.outage_s * NS), _OFF, len(items), "outage_off", n))
            for d in Direction:
                freeze = s.changes[d].freeze_s
                if freeze:
                    items.append(_Item(at, _ON, len(items), "freeze_on", n, d))
                    items.append(_Item(at + round(freeze * NS), _OFF, len(items), "freeze_off", n, d))
        items.sort()
        self._items = collections.deque(items)
        self._target = PASSTHROUGH
        self._ramp = None
        self._frozen = set()
        self._outage = False
        self.step_index = None

    def user_changed(self, now_ns: int) -> list[Action]:
        """Conditions were changed by hand: they stay until the next event; ramp updates stop until then."""
        if self.overridden or self.finished or self.origin_ns is None:
            return []
        if self._items and self._items[0].t_ns <= now_ns + EARLY_NS:
            return []  # an event is due now and sets the scenario's conditions again anyway
        self.overridden = True
        nxt = next((i for i in self._items if i.kind == "step"), None)
        until = (f"the next step ({fmt_s((nxt.t_ns - self.pass_origin_ns) / NS)})" if nxt is not None
                 else "the next pass" if self.scenario.repeat != self.pass_index + 1 else "the end")
        return [Say(f"scenario {self.scenario.name!r}: conditions changed by hand; they stay until {until}")]

    def advance(self, now_ns: int, *, changed: bool = False) -> list[Action]:
        """Do what is due at ``now_ns`` (within :data:`EARLY_NS`)."""
        out: list[Action] = []
        if self.finished or self.origin_ns is None:
            return out
        self.now_ns = now_ns
        latest = now_ns
        limit = now_ns + EARLY_NS
        while True:
            while self._items and self._items[0].t_ns <= limit:
                item = self._items.popleft()
                latest = max(latest, item.t_ns)
                self.now_ns = latest
                self._do(item, out)
                changed = True
            if self._items or self.pass_end_ns > limit:
                break
            # the pass is over
            if self.scenario.repeat is not None and self.pass_index + 1 >= self.scenario.repeat:
                self.now_ns = max(now_ns, self.pass_end_ns)
                self._apply(out)  # a ramp that ends with the timeline gets its last value
                self.finished = True
                self._ramp = None
                out.append(Say(f"scenario {self.scenario.name!r}: finished" + (
                    "; conditions restored" if self.scenario.at_end == "restore" else "; conditions stay as they are")))
                out.append(Finished(self.scenario.at_end == "restore"))
                return out
            self.pass_index += 1
            self.overridden = False
            self._begin_pass()
            changed = True
            total = "" if self.scenario.repeat is None else f"/{self.scenario.repeat}"
            out.append(Say(f"scenario {self.scenario.name!r}: pass {self.pass_index + 1}{total}"))
        self.now_ns = latest
        if self._ramp is not None:
            start, end, _, _ = self._ramp
            if now_ns >= end - EARLY_NS:
                self._ramp = None
                changed = changed or not self.overridden
            elif now_ns >= self._next_sample - EARLY_NS:
                step = self._sample_ns
                base = max(now_ns, self._next_sample)
                self._next_sample = min(end, start + ((base - start) // step + 1) * step)
                changed = changed or not self.overridden
        if changed:
            self._apply(out)
        return out

    def _do(self, item: _Item, out: list[Action]) -> None:
        s = self.scenario.steps[item.step]
        self.overridden = False
        if item.kind == "step":
            before = self._target
            self._target = _after(s, before)
            self.step_index = item.step
            if s.ramp_s > 0:
                end = item.t_ns + round(s.ramp_s * NS)
                self._ramp = (item.t_ns, end, before, self._target)
                self._sample_ns = round(self.scenario.resolution_s * NS)
                if self.ramp_points:
                    self._sample_ns = max(self._sample_ns, -(-(end - item.t_ns) // self.ramp_points))
                self._next_sample = min(end, item.t_ns + self._sample_ns)
            else:
                self._ramp = None
            out.append(Say(self._step_text(item.step, s)))
            if s.disconnect is not None:
                out.append(Disconnect(s.disconnect == "reset"))
        elif item.kind == "outage_on":
            self._outage = True
            out.append(Refuse(True))
            if s.outage_reset:
                out.append(Disconnect(True))
        elif item.kind == "outage_off":
            self._outage = False
            out.append(Refuse(False))
            out.append(Say(f"scenario {self.scenario.name!r}: the outage is over: connections are accepted again"))
        elif item.kind == "freeze_on":
            assert item.direction is not None
            self._frozen.add(item.direction)
        elif item.kind == "freeze_off":
            assert item.direction is not None
            self._frozen.discard(item.direction)
            out.append(Say(f"scenario {self.scenario.name!r}: {item.direction.label} thawed"))

    def current(self) -> Conditions:
        """The conditions the scenario wants now (the ramp's point, freezes and an outage included)."""
        state = self._target
        if self._ramp is not None:
            start, end, a, b = self._ramp
            f = min(1.0, max(0.0, (self.now_ns - start) / (end - start)))
            state = Conditions(_ramped(a.c2s, b.c2s, f), _ramped(a.s2c, b.s2c, f))
        origin = self.pass_origin_ns
        out = state
        for d in Direction:
            dc = _shifted(state.for_direction(d), origin)
            if d in self._frozen or self._outage:
                dc = replace(dc, frozen=True)
            if self._outage:
                dc = replace(dc, burst_loss=ALL_LOST)
            out = out.replace_direction(d, dc)
        return out

    def _apply(self, out: list[Action]) -> None:
        c = self.current()
        if c != self.last_applied:
            self.last_applied = c
            out.append(Apply(c))

    def _step_text(self, n: int, s: Step) -> str:
        total = len(self.scenario.steps)
        passes = "" if self.scenario.repeat == 1 else f" (pass {self.pass_index + 1})"
        head = f"scenario {self.scenario.name!r}: {s.name(n, total)} at {fmt_s(s.at_s)}{passes}: "
        what: list[str] = []
        if s.preset:
            what.append(f"preset {s.preset!r}")
        if s.clear:
            what.append("cleared")
        if s.preset or s.clear or any(c.fields or c.spikes is not None for c in s.changes):
            what.append((f"ramp over {fmt_s(s.ramp_s)} to " if s.ramp_s else "") + _describe(self._target))
        for d in Direction:
            if s.changes[d].freeze_s:
                what.append(f"{d.label} frozen for {fmt_s(s.changes[d].freeze_s or 0)}")
        if s.outage_s:
            what.append(f"outage for {fmt_s(s.outage_s)}: "
                        + ("every open connection reset" if s.outage_reset else "open connections frozen")
                        + ", new ones reset on arrival, UDP datagrams lost")
        if s.disconnect:
            what.append("every open connection " + ("reset (RST)" if s.disconnect == "reset" else "closed (FIN)"))
        return head + "; ".join(what)

    def status(self, now_ns: int) -> str:
        """For a status line: ``step 3/7 'tunnel' (since 12 s) · next: step 4/7 in 8 s``."""
        if self.origin_ns is None:
            return "waiting for the first connection" if self.scenario.start == "first-connection" else "not started"
        if self.finished:
            return "finished"
        total = len(self.scenario.steps)
        elapsed = (now_ns - self.pass_origin_ns) / NS
        parts = []
        if self.step_index is not None:
            s = self.scenario.steps[self.step_index]
            parts.append(f"{s.name(self.step_index, total)} (since {_whole_s(elapsed - s.at_s)})")
        else:
            parts.append("before the first step")
        if self.scenario.repeat != 1:
            parts.append(f"pass {self.pass_index + 1}" + (f"/{self.scenario.repeat}" if self.scenario.repeat else ""))
        nxt = next((i for i in self._items if i.kind == "step"), None)
        if nxt is not None:
            parts.append(f"next: {self.scenario.steps[nxt.step].name(nxt.step, total)} in "
                         f"{_whole_s((nxt.t_ns - now_ns) / NS)}")
        if self.overridden:
            parts.append("changed by hand until then")
        return " · ".join(parts)


def _whole_s(seconds: float) -> str:
    """A countdown's time, to the second (``fmt_s`` below one second): it is read at a glance."""
    seconds = max(0.0, seconds)
    return fmt_s(seconds if seconds < 1 else float(math.ceil(seconds - 0.05)))


def _describe(c: Conditions) -> str:
    if c.c2s == c.s2c:
        return "both " + c.c2s.describe()
    return c.describe()


# =============================================================================================== planned series


def added_rtt_ms(c: Conditions, t_ns: int | None = None) -> float:
    """The round trip these conditions add on average (latency and mean jitter both ways; with ``t_ns``, plus the
    spikes active then)."""
    total = 0.0
    for dc in (c.c2s, c.s2c):
        total += dc.latency_ms + dc.jitter.mean_ms
        if t_ns is not None:
            total += sum(s.add_ms for s in dc.spikes if s.active(t_ns))
    return total


def rtt_series(plan: Sequence[tuple[float, Conditions]], until_s: float,
               max_points: int = PLAN_MAX_POINTS) -> list[tuple[float, float]]:
    """The planned added round trip as a line: (seconds, ms) points with a vertical edge at each step, the
    spikes' windows included (as far as ``max_points`` allows)."""
    pts: list[tuple[float, float]] = []
    for n, (t, c) in enumerate(plan):
        end = plan[n + 1][0] if n + 1 < len(plan) else max(until_s, t)
        edges = {t, end}
        for dc in (c.c2s, c.s2c):
            for s in dc.spikes:
                edges.update(_spike_edges(s, t, end, max_points))
        if len(pts) + 2 * len(edges) > max_points:
            edges = {t, end}
        xs = sorted(edges)
        for a, b in itertools.pairwise(xs):
            v = added_rtt_ms(c, round((a + b) / 2 * NS))
            pts += [(a, v), (b, v)]
        if len(xs) == 1:
            pts.append((t, added_rtt_ms(c, round(t * NS))))
        if len(pts) >= max_points:
            break
    return pts


def _spike_edges(s: Spike, t0: float, t1: float, limit: int) -> Iterator[float]:
    start = s.start_ns / NS
    if s.every_s is None:
        for e in (start, start + s.for_s):
            if t0 < e < t1:
                yield e
        return
    k = max(0, math.floor((t0 - start) / s.every_s))
    for _ in range(limit):
        a = start + k * s.every_s
        if a >= t1:
            return
        for e in (a, a + s.for_s):
            if t0 < e < t1:
                yield e
        k += 1


# =============================================================================================== on an engine


class EngineRunner:
    """Plays a scenario on a :class:`~proxy.server.ProxyServer`, on its event loop (call every method there).

    Each action becomes an engine call: conditions through ``set_conditions`` (so every connection gets them, as
    from the window), disconnects through ``close_connection``, outages through ``server.refusing``; each line a
    ``Notice``, which the printer prints, a recording keeps and the window logs. Conditions the engine holds that
    differ from the last ones applied were changed by hand (:meth:`Player.user_changed`).
    """

    def __init__(self, server: ProxyServer, scenario: Scenario, *,
                 on_action: Callable[[Action], None] | None = None) -> None:
        self.server = server
        self.scenario = scenario
        self.player = Player(scenario)
        self.on_action = on_action
        self.before: Conditions | None = None
        self.done = False
        self._handle: asyncio.TimerHandle | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        self.before = self.server.global_conditions
        _claim(self.server, self)
        if self.scenario.start == "first-connection":
            self._notice(f"scenario {self.scenario.describe()}: waiting for the first connection")
            self._unsubscribe = self.server.subscribe(self._record, messages=False)
            return
        self._begin(time.monotonic_ns(), None)

    def _record(self, r: Record) -> None:
        if isinstance(r, ConnectionOpened) and self._unsubscribe is not None and not self.done:
            self._unsubscribe()
            self._unsubscribe = None
            # not from inside the publishing relay: the conditions reach every connection once it has finished
            self.server.loop.call_soon(self._first_connection, r.time_ns)

    def _first_connection(self, opened_ns: int) -> None:
        if not self.done and self.player.origin_ns is None:
            self._begin(time.monotonic_ns(), opened_ns)

    def _begin(self, now: int, origin: int | None) -> None:
        self._run(self.player.start(now, origin))

    def _tick(self) -> None:
        self._handle = None
        if self.done:
            return
        if self.player.last_applied is not None and self.server.global_conditions != self.player.last_applied:
            self._run(self.player.user_changed(time.monotonic_ns()))
        self._run(self.player.advance(time.monotonic_ns()))

    def _run(self, actions: list[Action]) -> None:
        for a in actions:
            self._act(a)
            if self.on_action is not None:
                try:
                    self.on_action(a)
                except Exception as e:  # a caller's hook must not stop the scenario
                    self._notice(f"scenario: a listener failed: {e!r}", "warning")
        due = self.player.due_ns
        if due is None or self.done:
            return
        self._handle = self.server.loop.call_later(max(0.0, (due - time.monotonic_ns()) / NS), self._tick)

    def _act(self, a: Action) -> None:
        server = self.server
        if isinstance(a, Apply):
            server.set_conditions(a.conditions)
        elif isinstance(a, Disconnect):
            disconnect_all(server, a.reset, "by the scenario")
        elif isinstance(a, Refuse):
            server.refusing = a.on
        elif isinstance(a, Say):
            self._notice(a.text)
        elif isinstance(a, Finished):
            self._finish(a.restore)

    def _notice(self, text: str, level: str = "info") -> None:
        self.server.notice(level, text)

    def _finish(self, restore: bool) -> None:
        self.done = True
        self.server.refusing = False
        if restore and self.before is not None:
            self.server.set_conditions(self.before)
        _ACTIVE.pop(id(self.server), None)

    def stop(self, restore: bool = True) -> None:
        """Stop here; ``restore`` puts back the conditions in force when it started (and ends an outage)."""
        if self.done:
            return
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._run([Say(f"scenario {self.scenario.name!r}: stopped" + ("; conditions restored" if restore else "")),
                   Finished(restore)])


_ACTIVE: weakref.WeakValueDictionary[int, EngineRunner] = weakref.WeakValueDictionary()
"""The scenario running on each server (by ``id``): starting another stops it, without restoring. Weak, so a
server whose loop has gone (a test's) is not kept alive by its last scenario."""


def _claim(server: ProxyServer, runner: EngineRunner) -> None:
    old = _ACTIVE.get(id(server))
    if old is not None and old is not runner and old.server is server:
        old.stop(restore=False)
    _ACTIVE[id(server)] = runner


def disconnect_all(server: ProxyServer, reset: bool = True, why: str = "") -> int:
    """Reset (or close) every open TCP connection and end every UDP flow; returns how many."""
    detail = ("reset" if reset else "closed") + (f" {why}" if why else "")
    ids = [cid for cid, h in server.handlers.items() if not h.relay.closed]
    if server.udp is not None:
        ids += list(server.udp.core.flows)
    for cid in ids:
        try:
            server.close_connection(cid, reset, detail)
        except KeyError:  # it ended meanwhile
            pass
    return len(ids)


# =============================================================================================== from Python


class ScenarioRun:
    """A scenario running on an engine, for any thread: :meth:`wait`, :meth:`stop`, ``with`` (stops on exit).

    ``lines`` collects what the run said (the step lines), ``applied`` the conditions it set with their
    monotonic times."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.lines: list[str] = []
        self.applied: list[tuple[int, Conditions]] = []
        self.started_ns: int | None = None
        """Time zero (monotonic ns), once started."""
        self._finished = threading.Event()
        self._runner: EngineRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _on_action(self, a: Action) -> None:
        runner = self._runner
        if runner is not None and self.started_ns is None:
            self.started_ns = runner.player.origin_ns
        if isinstance(a, Say):
            self.lines.append(a.text)
        elif isinstance(a, Apply):
            self.applied.append((time.monotonic_ns(), a.conditions))
        elif isinstance(a, Finished):
            self._finished.set()

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the timeline ends (or the run is stopped); False if ``timeout`` passed first."""
        return self._finished.wait(timeout)

    def stop(self, restore: bool = True, timeout: float = 5.0) -> None:
        runner, loop = self._runner, self._loop
        if runner is None or loop is None or self._finished.is_set():
            self._finished.set()
            return
        _on_loop(loop, lambda: runner.stop(restore), timeout)
        self._finished.set()

    def status(self) -> str:
        runner = self._runner
        return "not started" if runner is None else runner.player.status(time.monotonic_ns())

    def __enter__(self) -> ScenarioRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run(engine: Any, scenario: Scenario | str | Path, *, timeout: float = 5.0) -> ScenarioRun:
    """Start ``scenario`` (a :class:`Scenario` or a file's path) on ``engine``: a
    :class:`~proxy.runner.ProxyThread` (or anything with ``.server``) or a
    :class:`~proxy.server.ProxyServer`, from any thread. Returns once it has started (its first step applied)."""
    s = scenario if isinstance(scenario, Scenario) else load(scenario)
    server = getattr(engine, "server", engine)
    handle = ScenarioRun(s)
    runner = EngineRunner(server, s, on_action=handle._on_action)
    handle._runner, handle._loop = runner, server.loop
    _on_loop(server.loop, runner.start, timeout)
    return handle


def _on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[[], None], timeout: float) -> None:
    """Run ``fn`` on ``loop``'s thread and wait for it (at once when already there)."""
    import asyncio

    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        fn()
        return
    done = threading.Event()
    failure: list[BaseException] = []

    def call() -> None:
        try:
            fn()
        except BaseException as e:
            failure.append(e)
        finally:
            done.set()

    loop.call_soon_threadsafe(call)
    if not done.wait(timeout):
        raise TimeoutError(f"the engine's loop did not answer within {timeout:g} s (is it running?)")
    if failure:
        raise failure[0]


