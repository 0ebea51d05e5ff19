"""What the lab measured, as plain values: a :class:`LabReport` per session, a :class:`ConnReport` per connection.

Role: the lab's public result (what :func:`inspector.lab.analyse` returns and what a test asserts on, e.g. "under
the 4G preset no correction is larger than 5 px": ``report.overall.corrections_px.max <= 5``). Immutable,
JSON-friendly (:meth:`LabReport.to_dict`) and printable (:meth:`LabReport.text`).
A :class:`Distribution` with ``count == 0`` has NaN figures: comparing NaN is always False, so an assertion on a
quantity that was never measured (no hints for it, no traffic) fails instead of passing by accident.
Must not import: Qt, ``inspector.ui``, ``inspector.bridge``.
Thread: any (immutable values).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["ConnReport", "Distribution", "Interpolation", "LabReport"]

NAN = math.nan


@dataclass(frozen=True)
class Distribution:
    """A quantity over a session: how many values, their mean, min, median, 95th and 99th percentile and max
    (nearest rank; past 50,000 values within 1 %)."""

    count: int = 0
    mean: float = NAN
    min: float = NAN
    p50: float = NAN
    p95: float = NAN
    p99: float = NAN
    max: float = NAN

    def text(self, unit: str, digits: int = 0) -> str:
        if not self.count:
            return "none"
        f = f"{{:.{digits}f}}"
        u = f" {unit}" if unit else ""
        return (f"median {f.format(self.p50)}{u}, p95 {f.format(self.p95)}, p99 {f.format(self.p99)}, "
                f"max {f.format(self.max)} (n={self.count:,})")


@dataclass(frozen=True)
class Interpolation:
    """How far in the past to draw other entities so the snapshots keep up (from the latest intervals)."""

    intervals: int = 0
    """Snapshot intervals measured."""
    median_ms: float = NAN
    """The usual gap between two snapshots as the client receives them."""
    two_intervals_ms: float = NAN
    """Valve's rule of thumb: two snapshot intervals, so one lost snapshot never leaves the renderer without a
    position to slide to."""
    p95_ms: float = NAN
    p99_ms: float = NAN
    """The gap 95 % / 99 % of the intervals are no longer than: an interpolation delay that covers it runs dry in
    at most 5 % / 1 % of the gaps."""
    recommended_ms: float = NAN
    """The larger of two intervals and the p99 gap."""

    def text(self) -> str:
        if not self.intervals:
            return "no snapshots yet"
        return (f"{self.recommended_ms:.0f} ms (two intervals {self.two_intervals_ms:.0f} ms, "
                f"p95 gap {self.p95_ms:.0f} ms, p99 gap {self.p99_ms:.0f} ms)")


@dataclass(frozen=True)
class ConnReport:
    """One connection (``conn_id`` None: every connection together)."""

    conn_id: int | None
    inputs: int = 0
    """Inputs the client sent (messages with an input sequence)."""
    acked: int = 0
    unacked: int = 0
    """Inputs still without an acknowledgement at the end (in flight)."""
    input_ack_ms: Distribution = field(default_factory=Distribution)
    """Input-to-acknowledgement delay, as the client lives it."""
    added_ms: Distribution = field(default_factory=Distribution)
    """The part of each input-to-ack delay sockscope added (the input's delay plus the acknowledging state's)."""
    in_flight: Distribution = field(default_factory=Distribution)
    """Inputs in flight each time the client sent one (including it)."""
    max_in_flight: int = 0
    states: int = 0
    """Server states received (messages with an acknowledgement, tick or time)."""
    snapshot_rate_hz: float = NAN
    snapshot_interval_ms: Distribution = field(default_factory=Distribution)
    interpolation: Interpolation = field(default_factory=Interpolation)
    """From the latest intervals (the window's histogram)."""
    corrections_px: Distribution = field(default_factory=Distribution)
    """Distance between the client's predicted position for input N and the server's in the state acknowledging
    N."""


@dataclass(frozen=True)
class LabReport:
    overall: ConnReport
    connections: dict[int, ConnReport]
    hints: tuple[tuple[str, str, str, str], ...] = ()
    """(message type, role, field, source: inferred/file/window) in force."""
    problems: tuple[tuple[str, int], ...] = ()
    """Odd values skipped: (what, how many messages)."""

    def to_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, dict):
                return {str(k): clean(x) for k, x in v.items()}
            if isinstance(v, list | tuple):
                return [clean(x) for x in v]
            return v

        out: dict[str, Any] = clean({"overall": asdict(self.overall),
                      "connections": {k: asdict(c) for k, c in self.connections.items()},
                      "hints": [list(h) for h in self.hints], "problems": [list(p) for p in self.problems]})
        return out

    def text(self) -> str:
        """A few lines for a terminal or a test's failure message."""
        o = self.overall
        lines = [
            f"inputs {o.inputs:,} ({o.acked:,} acknowledged, {o.unacked:,} in flight at the end); "
            f"states {o.states:,}" + (f" at {o.snapshot_rate_hz:.1f}/s" if math.isfinite(o.snapshot_rate_hz) else ""),
            f"input → ack: {o.input_ack_ms.text('ms')}; added by sockscope {o.added_ms.text('ms')}",
            f"inputs in flight: {o.in_flight.text('')}",
            f"snapshot interval: {o.snapshot_interval_ms.text('ms', 1)}",
            f"interpolation delay: {o.interpolation.text()}",
            f"corrections: {o.corrections_px.text('px', 1)}",
        ]
        if self.hints:
            lines.append("hints: " + "; ".join(f"{t} {r}={f} ({s})" for t, r, f, s in self.hints))
        for what, n in self.problems[:10]:
            lines.append(f"skipped: {what} ({n:,}×)")
        return "\n".join(lines)
