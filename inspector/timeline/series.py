"""What the timeline's plots draw: round trips and message/byte rates as series in seconds and milliseconds.

Role: :class:`PlotData` follows an :class:`~inspector.timeline.stats.Analysis` incrementally (new round trips are
appended; a new analysis generation, scope or time origin starts over), so the plots widget
(``inspector.ui.timeline.plots``) only hands the lists to pyqtgraph. Pure Python, tested without drawing.
Must not import: Qt (PySide6, pyqtgraph), ``inspector.ui``, ``inspector.bridge``, ``proxy`` beyond ``proxy.model``.
Thread: GUI thread (called by the plots' refresh), like the analysis it reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from inspector.timeline.stats import BIN_NS, Analysis
from proxy.model import Direction

__all__ = ["PlotData"]


@dataclass
class PlotData:
    """What the plots show, in seconds since the store's first message and milliseconds."""

    t0_ns: int = 0
    rtt_x: list[float] = field(default_factory=list)
    rtt_ms: list[float] = field(default_factory=list)
    injected_ms: list[float] = field(default_factory=list)
    rtt_rows: list[int] = field(default_factory=list)
    """The response's store row for each point (what a click selects)."""
    rtt_channel: list[int | None] = field(default_factory=list)
    """The ENet channel of each point (a reliable command and its ack), None for a request and its answer."""
    rate_x: dict[Direction, list[float]] = field(default_factory=dict)
    msgs_per_s: dict[Direction, list[float]] = field(default_factory=dict)
    bytes_per_s: dict[Direction, list[float]] = field(default_factory=dict)
    band: list[tuple[float, float, float]] = field(default_factory=list)
    """Configured added round trip over time: (from second, low ms, high ms), each step until the next."""
    scenario: list[tuple[int, float]] = field(default_factory=list)
    """A loaded scenario's planned added round trip: (engine monotonic ns, ms) points of a line (a vertical edge at
    each step, slopes for ramps; ``proxy.scenario.rtt_series``)."""
    scenario_x: list[float] = field(default_factory=list)
    scenario_ms: list[float] = field(default_factory=list)
    """The planned line in the plots' seconds (since the store's first message) and milliseconds."""
    _scenario_key: tuple[int, int, int] = (0, -1, 0)
    seen: int = 0
    generation: int = -1
    conn_id: int | None = None

    def update(self, analysis: Analysis, conn_id: int | None) -> bool:
        """Bring the data up to date with ``analysis``; True if anything changed."""
        t0 = analysis.store.t0_ns or 0
        if analysis.generation != self.generation or conn_id != self.conn_id or t0 != self.t0_ns:
            self.rtt_x, self.rtt_ms, self.injected_ms, self.rtt_rows, self.rtt_channel = [], [], [], [], []
            self.seen, self.generation, self.conn_id, self.t0_ns = 0, analysis.generation, conn_id, t0
        rts = analysis.pairer.round_trips
        changed = self.seen < len(rts)
        for rt in rts[self.seen:]:
            if conn_id is None or rt.pair.conn_id == conn_id:
                self.rtt_x.append((rt.sent_ns - t0) / 1e9)
                self.rtt_ms.append(rt.rtt_ns / 1e6)
                self.injected_ms.append(rt.injected_ns / 1e6)
                self.rtt_rows.append(rt.pair.response_row)
                self.rtt_channel.append(rt.pair.channel)
        self.seen = len(rts)
        key = (id(self.scenario), len(self.scenario), t0)
        if key != self._scenario_key:
            self._scenario_key = key
            self.scenario_x = [(t - t0) / 1e9 for t, _ in self.scenario]
            self.scenario_ms = [ms for _, ms in self.scenario]
            changed = True
        for d in Direction:
            ts, msgs, byts = analysis.throughput.series(d, conn_id)
            # each bin drawn at its middle
            self.rate_x[d] = [(t - t0 + BIN_NS / 2) / 1e9 for t in ts]
            self.msgs_per_s[d], self.bytes_per_s[d] = msgs, byts
        return changed

    def channels(self) -> list[int]:
        """The ENet channels with round trips, in order."""
        return sorted({c for c in self.rtt_channel if c is not None})

    def channel_series(self, channel: int | None) -> tuple[list[float], list[float], list[int]]:
        """(seconds, round trip ms, response rows) of one ENet channel (None: the requests and answers)."""
        xs: list[float] = []
        ys: list[float] = []
        rows: list[int] = []
        for x, y, r, c in zip(self.rtt_x, self.rtt_ms, self.rtt_rows, self.rtt_channel, strict=True):
            if c == channel:
                xs.append(x)
                ys.append(y)
                rows.append(r)
        return xs, ys, rows
