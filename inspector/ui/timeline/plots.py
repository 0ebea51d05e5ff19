"""Live plots: round-trip time over time (with the configured latency as a band) and messages/s and bytes/s per
direction, for one connection or all, drawn with pyqtgraph.

Role: :class:`TimelinePlots` is the widget; what it draws is a Qt-free :class:`~inspector.timeline.series.PlotData`
built from an :class:`~inspector.timeline.stats.Analysis`. Zoom and pan are pyqtgraph's own (wheel, drag;
right-click for its menu); when the user moves a view, following the newest data stops until "Follow" is ticked
again. Clicking an RTT point emits :attr:`TimelinePlots.row_clicked` with the
response's store row. Only the most recent :data:`SCATTER_MAX` points in view get clickable dots; the line shows
them all (pyqtgraph clips and downsamples it), so 10^5 round trips stay smooth.
On an ENet flow the round trips are ENet's own (each reliable command to the ACK for it), one line and colour per
channel, named in the legend.
What is drawn is what a learner should read: the legend is a line above the plots (never over the newest data),
message and byte rates are averaged over :data:`RATE_WINDOW_S` (a ping every 0.5 s is a level 2/s, not the
sawtooth of 250 ms bins) and fall to zero when traffic stops, and the round-trip line breaks across a pause in the
pairs (a held message, Freeze) instead of drawing a slope through it.
Must not import: ``inspector.bridge``, ``proxy`` beyond ``proxy.model``.
Thread: GUI thread.
"""

from __future__ import annotations

import bisect
from typing import Any, Final

import numpy as np
import pyqtgraph as pg  # type: ignore[import-untyped]
from PySide6.QtCore import Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from inspector.timeline.series import PlotData
from inspector.timeline.stats import BIN_NS, Analysis
from inspector.ui import palette
from proxy.model import Direction

SCATTER_MAX: Final = 3000
FOLLOW_WINDOW_S: Final = 20.0
"""Seconds of history shown while following the newest data."""
AHEAD_S: Final = 5.0
"""Seconds of a loaded scenario's plan shown ahead of the newest data while following."""
RATE_WINDOW_S: Final = 3.0
"""The rates at each point are the messages (bytes) per second of the last this-many seconds, the most recent
weighing most (a triangular window: smooth for a game that sends every 0.3 or 1.2 s, still quick to follow)."""
GAP_MIN_S: Final = 1.0
GAP_FACTOR: Final = 5.0
"""The round-trip line breaks where two round trips are further apart than this many times the usual spacing
(and at least ``GAP_MIN_S``)."""


def smoothed_rates(x: np.ndarray, per_s: np.ndarray, now_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin rates (each bin's count per second, at the bin's middle) as a moving average over
    :data:`RATE_WINDOW_S`, with the empty bins up to ``now_s`` as zeros (traffic that stopped shows as zero)."""
    if not len(x):
        return x, per_s
    step = BIN_NS / 1e9
    end = max(float(x[-1]), now_s - step / 2)
    grid = np.arange(float(x[0]), end + step / 2, step)
    counts = np.zeros(len(grid))
    idx = np.clip(np.rint((x - x[0]) / step).astype(int), 0, len(grid) - 1)
    np.add.at(counts, idx, per_s)
    n = max(1, round(RATE_WINDOW_S / step))
    kernel = np.arange(n, 0, -1, dtype=float)  # newest bin first: weights n, n-1, ..., 1
    smooth = np.convolve(counts, kernel)[: len(grid)]
    # the first window is partial: weigh what there is, not empty time before the first message
    norm = np.convolve(np.ones(len(grid)), kernel)[: len(grid)]
    return grid + step / 2, smooth / norm


def with_gaps(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x, y`` with a NaN point inserted in every gap much longer than the usual spacing (the line breaks)."""
    if len(x) < 3:
        return x, y
    dx = np.diff(x)
    usual = float(np.median(dx))
    gaps = np.nonzero(dx > max(GAP_MIN_S, GAP_FACTOR * usual))[0]
    if not len(gaps):
        return x, y
    mid = (x[gaps] + x[gaps + 1]) / 2
    return np.insert(x, gaps + 1, mid), np.insert(y, gaps + 1, np.nan)


CHANNEL_COLOURS: Final = ("#2a9d8f", "#e76f51", "#8e5bd9", "#e9a800", "#3a86ff", "#d62f7f", "#6a994e", "#8d6e63")
"""ENet channels' round trips, one colour each (channel 255, ENet's own connect and ping, in the muted colour)."""


def channel_colour(c: palette.Colours, channel: int) -> QColor:
    return QColor(c.muted) if channel == 255 else QColor(CHANNEL_COLOURS[channel % len(CHANNEL_COLOURS)])


def channel_name(channel: int) -> str:
    return "ENet control (connect, ping)" if channel == 255 else f"ch{channel}"


UDP_STYLES: Final = {"lost": pg.QtCore.Qt.PenStyle.SolidLine, "duplicated": pg.QtCore.Qt.PenStyle.DashLine,
                     "sent ahead": pg.QtCore.Qt.PenStyle.DashDotLine}
"""How the UDP plot draws each measure (in the direction's colour); the loss it is set to is a dotted line."""


def legend_html(c: palette.Colours, udp: bool = False, scenario: bool = False,
                channels: tuple[int, ...] = ()) -> str:
    def line(colour: str, name: str, mark: str = "━━") -> str:
        return f"<span style='color:{colour}'>{mark}</span>&nbsp;{name}"

    if channels:  # ENet: the reliable round trip (a command to its ack) per channel
        parts = ["ENet reliable round trip: " + " ".join(line(channel_colour(c, ch).name(), channel_name(ch), "●")
                                                         for ch in channels),
                 line(c.held.name(), "added by sockscope"), line(c.held.name(), "configured", "▒▒"),
                 *([line(c.special.name(), "scenario (planned)", "╌╌")] if scenario else []),
                 line(c.c2s.name(), "client → server", "━"), line(c.s2c.name(), "server → client", "━")]
        if udp:
            parts.append(f"UDP, last 2 s: {line(c.muted.name(), 'lost', '━')} "
                         f"{line(c.muted.name(), 'duplicated', '╍')} {line(c.muted.name(), 'sent ahead', '─·')} "
                         f"{line(c.muted.name(), 'loss set', '┈')}")
        return "&nbsp;&nbsp;".join(parts)

    parts = [line(c.c2s.name(), "round trip"), line(c.held.name(), "added by sockscope"),
             line(c.held.name(), "configured", "▒▒"),
             *([line(c.special.name(), "scenario (planned)", "╌╌")] if scenario else []),
             line(c.c2s.name(), "client → server", "━"), line(c.s2c.name(), "server → client", "━")]
    if udp:
        parts.append(f"UDP, last 2 s: {line(c.muted.name(), 'lost', '━')} {line(c.muted.name(), 'duplicated', '╍')} "
                     f"{line(c.muted.name(), 'sent ahead', '─·')} {line(c.muted.name(), 'loss set', '┈')}")
    return "&nbsp;&nbsp;".join(parts)


class TimelinePlots(QWidget):
    row_clicked = Signal(int)
    follow_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.colours = palette.current()
        self.data = PlotData()
        self.follow = True
        self._setting_range = False
        c = self.colours
        bg = "#1e1e1e" if c.dark else "#ffffff"
        fg = "#d0d0d0" if c.dark else "#303030"
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground(bg)
        self.graphics.ci.setSpacing(2)
        self.legend = QLabel()
        self.legend.setWordWrap(True)
        self.legend.setContentsMargins(6, 0, 6, 0)
        self.legend.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.legend.setToolTip("the round trip is the game's own request and answer (a ping and its pong); "
                               "the band is what the Conditions panel adds")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.legend)
        lay.addWidget(self.graphics, 1)

        self.rtt_plot = self.graphics.addPlot(row=0, col=0)
        self.msgs_plot = self.graphics.addPlot(row=1, col=0)
        self.bytes_plot = self.graphics.addPlot(row=2, col=0)
        self.graphics.ci.layout.setRowStretchFactor(0, 5)
        self.graphics.ci.layout.setRowStretchFactor(1, 3)
        self.graphics.ci.layout.setRowStretchFactor(2, 3)
        for p, label, unit in ((self.rtt_plot, "round trip", "ms"), (self.msgs_plot, "messages", "/s"),
                               (self.bytes_plot, "bytes", "B/s")):
            p.showGrid(x=True, y=True, alpha=0.15)
            p.setLabel("left", label, units=None if unit != "B/s" else "B/s",
                       **{"color": fg, "font-size": "9pt"})
            p.getAxis("left").setWidth(58)
            for ax in ("left", "bottom"):
                p.getAxis(ax).setTextPen(fg)
                p.getAxis(ax).setPen(fg)
            p.setMenuEnabled(True)
            p.setClipToView(True)
            p.setDownsampling(auto=True, mode="peak")
            p.vb.sigRangeChangedManually.connect(self._moved_by_user)
        self.rtt_plot.getAxis("left").setLabel("RTT (ms)", color=fg)  # short: the plots may be only ~80 px tall
        self.msgs_plot.getAxis("left").setLabel("msg/s", color=fg)
        self.bytes_plot.setLabel("bottom", "time (s)", color=fg)
        self.msgs_plot.setXLink(self.rtt_plot)
        self.bytes_plot.setXLink(self.rtt_plot)
        # UDP: what the impairments did, measured over the last 2 s, beside what is set; a row of its own, added
        # once datagrams arrive (TCP-only traffic never sees it)
        self.udp_plot = self.graphics.addPlot(row=3, col=0)
        self.graphics.ci.removeItem(self.udp_plot)
        self.udp_shown = False
        self.udp_plot.showGrid(x=True, y=True, alpha=0.15)
        self.udp_plot.getAxis("left").setWidth(58)
        self.udp_plot.getAxis("left").setLabel("UDP %", color=fg)
        self.udp_plot.setXLink(self.rtt_plot)
        self.udp_plot.vb.sigRangeChangedManually.connect(self._moved_by_user)
        self.udp_curves: dict[tuple[Direction, str], Any] = {}
        self.udp_set: dict[tuple[Direction, str], Any] = {}
        for d in Direction:
            for kind, style in UDP_STYLES.items():
                pen = pg.mkPen(c.direction(d), width=1.5, style=style)
                self.udp_curves[(d, kind)] = self.udp_plot.plot([], [], pen=pen, connect="finite")
                line = pg.InfiniteLine(angle=0, movable=False, label=f"{kind} set", labelOpts={
                    "position": 0.02, "color": c.direction(d), "anchors": [(0, 1), (0, 1)]},
                    pen=pg.mkPen(c.direction(d), width=1, style=pg.QtCore.Qt.PenStyle.DotLine))
                line.hide()
                self.udp_plot.addItem(line)
                self.udp_set[(d, kind)] = line
        self._udp_conf: dict[tuple[Direction, str], float] = {}
        self.rtt_plot.hideAxis("bottom")
        self.msgs_plot.hideAxis("bottom")
        self.rtt_plot.setYRange(0, 10)

        band_colour = QColor(c.held)
        band_colour.setAlpha(60)
        self.band_lo = pg.PlotCurveItem(pen=pg.mkPen(c.held, width=1, style=pg.QtCore.Qt.PenStyle.DotLine))
        self.band_hi = pg.PlotCurveItem(pen=pg.mkPen(c.held, width=1, style=pg.QtCore.Qt.PenStyle.DotLine))
        self.band = pg.FillBetweenItem(self.band_lo, self.band_hi, brush=pg.mkBrush(band_colour))
        self.rtt_plot.addItem(self.band_lo)
        self.rtt_plot.addItem(self.band_hi)
        self.rtt_plot.addItem(self.band)
        self.scenario_curve = self.rtt_plot.plot([], [], pen=self._scenario_pen(c))
        """A loaded scenario's planned added round trip (``set_scenario``), beside what the band says is set now."""
        self.injected_curve = self.rtt_plot.plot([], [], pen=pg.mkPen(c.held, width=1.5), connect="finite")
        self.rtt_curve = self.rtt_plot.plot([], [], pen=pg.mkPen(c.c2s, width=1.5), connect="finite")
        self.rtt_dots = pg.ScatterPlotItem(size=6, pen=pg.mkPen(None), brush=pg.mkBrush(c.c2s), hoverable=True,
                                           hoverSize=9, tip=self._tip)
        self.rtt_dots.sigClicked.connect(self._dots_clicked)
        self.rtt_plot.addItem(self.rtt_dots)
        self.selected_dot = pg.ScatterPlotItem(size=12, pen=pg.mkPen(c.error, width=2), brush=pg.mkBrush(None))
        self.rtt_plot.addItem(self.selected_dot)
        self.channel_curves: dict[int, Any] = {}
        """ENet: one round-trip line per channel, made when the channel's first round trip comes."""
        self.channels: tuple[int, ...] = ()

        self.msg_curves: dict[Direction, Any] = {}
        self.byte_curves: dict[Direction, Any] = {}
        for d in Direction:
            pen = pg.mkPen(c.direction(d), width=1.5)
            self.msg_curves[d] = self.msgs_plot.plot([], [], pen=pen, stepMode=None)
            self.byte_curves[d] = self.bytes_plot.plot([], [], pen=pen)
        # what each direction's bandwidth is set to, beside the bytes/s it carries (none when unlimited)
        self.bandwidth_set: dict[Direction, Any] = {}
        for d in Direction:
            line = pg.InfiniteLine(angle=0, movable=False, label=f"{d.name.lower()} bandwidth set", labelOpts={
                "position": 0.02, "color": c.direction(d), "anchors": [(0, 1), (0, 1)]},
                pen=pg.mkPen(c.direction(d), width=1, style=pg.QtCore.Qt.PenStyle.DotLine))
            line.hide()
            self.bytes_plot.addItem(line)
            self.bandwidth_set[d] = line
        self._bandwidth_conf: dict[Direction, float] = {}
        self._conf: list[tuple[int, float, float]] = []
        self._compact = 0
        self.set_colours(c)

    @staticmethod
    def _scenario_pen(c: palette.Colours) -> Any:
        return pg.mkPen(c.special, width=2, style=pg.QtCore.Qt.PenStyle.DashLine)

    def set_colours(self, c: palette.Colours) -> None:
        """The look changed (light or dark): background, axes, lines."""
        self.colours = c
        bg = "#1e1e1e" if c.dark else "#ffffff"
        fg = "#d0d0d0" if c.dark else "#303030"
        self.graphics.setBackground(bg)
        for p in (self.rtt_plot, self.msgs_plot, self.bytes_plot):
            for ax in ("left", "bottom"):
                p.getAxis(ax).setTextPen(fg)
                p.getAxis(ax).setPen(fg)
                p.getAxis(ax).label.setDefaultTextColor(QColor(fg))
        band_colour = QColor(c.held)
        band_colour.setAlpha(60)
        for band_edge in (self.band_lo, self.band_hi):
            band_edge.setPen(pg.mkPen(c.held, width=1, style=pg.QtCore.Qt.PenStyle.DotLine))
        self.band.setBrush(pg.mkBrush(band_colour))
        self.injected_curve.setPen(pg.mkPen(c.held, width=1.5))
        self.scenario_curve.setPen(self._scenario_pen(c))
        self.rtt_curve.setPen(pg.mkPen(c.c2s, width=1.5))
        self.rtt_dots.setBrush(pg.mkBrush(c.c2s))
        self.selected_dot.setPen(pg.mkPen(c.error, width=2))
        for d in Direction:
            self.msg_curves[d].setPen(pg.mkPen(c.direction(d), width=1.5))
            self.byte_curves[d].setPen(pg.mkPen(c.direction(d), width=1.5))
            for kind, style in UDP_STYLES.items():
                self.udp_curves[(d, kind)].setPen(pg.mkPen(c.direction(d), width=1.5, style=style))
            for kind in UDP_STYLES:
                self.udp_set[(d, kind)].setPen(pg.mkPen(c.direction(d), width=1,
                                                        style=pg.QtCore.Qt.PenStyle.DotLine))
        for ax in ("left", "bottom"):
            self.udp_plot.getAxis(ax).setTextPen(fg)
            self.udp_plot.getAxis(ax).setPen(fg)
        for ch, curve in self.channel_curves.items():
            curve.setPen(pg.mkPen(channel_colour(c, ch), width=1.5))
        self.legend.setText(legend_html(c, self.udp_shown and self._compact < 2, bool(self.data.scenario),
                                        self.channels))

    COMPACT_BELOW = 330
    """Below this height (px) the bytes/s plot steps aside so the other two keep readable axes."""
    TINY_BELOW = 230
    """Below this height only the round trips are drawn (what a learner looks at first), readable."""

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        h = self.height()
        self.set_compact(2 if h < self.TINY_BELOW else 1 if h < self.COMPACT_BELOW else 0)

    def set_compact(self, level: int | bool) -> None:
        """0: all three plots; 1: without bytes/s; 2: the round trips only."""
        level = int(level)
        if level == self._compact:
            return
        self._compact = level
        self._relayout()

    def _relayout(self) -> None:
        """The rows for the compact level, and the UDP plot below them once datagrams came (not when tiny)."""
        level = self._compact
        ci = self.graphics.ci
        for p in (self.msgs_plot, self.bytes_plot, self.udp_plot):
            if p in ci.items:
                ci.removeItem(p)
        shown = [self.rtt_plot, self.msgs_plot, self.bytes_plot][: 3 - level]
        if self.udp_shown and level < 2:
            shown.append(self.udp_plot)
        # the legend names what is drawn
        self.legend.setText(legend_html(self.colours, self.udp_plot in shown, bool(self.data.scenario),
                                        self.channels))
        for row, p in enumerate(shown[1:], start=1):
            ci.addItem(p, row=row, col=0)
            ci.layout.setRowStretchFactor(row, 3)
        for p in shown[:-1]:
            p.hideAxis("bottom")
        last = shown[-1]
        last.showAxis("bottom")
        last.setLabel("bottom", "time (s)")

    # ------------------------------------------------------------------------------------------ data

    def set_configured(self, history: list[tuple[int, float, float]]) -> None:
        """Configured added round trip: (from store time ns, low ms, high ms) steps."""
        self._conf = history

    def set_scenario(self, points: list[tuple[int, float]]) -> None:
        """A scenario's planned added round trip: (engine monotonic ns, ms) points; empty: none."""
        self.data.scenario = points
        self.legend.setText(legend_html(self.colours, self.udp_shown and self._compact < 2, bool(points),
                                        self.channels))

    def set_configured_udp(self, configured: dict[tuple[Direction, str], float]) -> None:
        """What each direction is set to lose, duplicate and send ahead (percent; loss: random and bursts
        together), each drawn as a dotted line beside what is measured (none for a measure set to 0)."""
        self._udp_conf = {k: v for k, v in configured.items() if v > 0}
        for key, line in self.udp_set.items():
            value = self._udp_conf.get(key)
            line.setVisible(value is not None)
            if value is not None:
                line.setValue(value)

    def set_configured_bandwidth(self, configured: dict[Direction, float]) -> None:
        """What each direction's bandwidth is set to (bytes/s), drawn as a dotted line on the bytes/s plot beside
        what it carries; a direction left unlimited (0 or absent) has none."""
        self._bandwidth_conf = {d: v for d, v in configured.items() if v > 0}
        for d, line in self.bandwidth_set.items():
            value = self._bandwidth_conf.get(d)
            line.setVisible(value is not None)
            if value is not None:
                line.setValue(value)

    def _draw_udp(self, analysis: Analysis, conn_id: int | None, t0: int) -> None:
        dg = analysis.datagrams
        if not self.udp_shown:
            if not dg.bins:
                return
            self.udp_shown = True
            self._relayout()
        for d in Direction:
            xs, lost, dup, ahead = dg.series(conn_id, d)
            x = (np.asarray(xs, dtype=float) - t0) / 1e9
            for kind, y in (("lost", lost), ("duplicated", dup), ("sent ahead", ahead)):
                self.udp_curves[(d, kind)].setData(x, np.asarray(y, dtype=float))

    def refresh(self, analysis: Analysis, conn_id: int | None, *, force: bool = False) -> None:
        d = self.data
        changed = d.update(analysis, conn_id)
        t0 = d.t0_ns
        now_s = 0.0
        if len(analysis.store):
            now_s = (max(analysis.store.arrivals[-1], t0) - t0) / 1e9
        d.band = [((t - t0) / 1e9, lo, hi) for t, lo, hi in self._conf]
        del changed, force  # the throughput bins change with every batch: always redraw (called ≤ 10/s)
        x = np.asarray(d.rtt_x, dtype=float)
        channels = tuple(d.channels())
        if channels:  # ENet: a line per channel; the main line keeps the other pairs (TCP connections, if any)
            px, py, _rows = d.channel_series(None)
            self.rtt_curve.setData(*with_gaps(np.asarray(px, dtype=float), np.asarray(py, dtype=float)))
            for ch in channels:
                curve = self.channel_curves.get(ch)
                if curve is None:
                    curve = self.channel_curves[ch] = self.rtt_plot.plot(
                        [], [], pen=pg.mkPen(channel_colour(self.colours, ch), width=1.5), connect="finite")
                cx, cy, _rows = d.channel_series(ch)
                curve.setData(*with_gaps(np.asarray(cx, dtype=float), np.asarray(cy, dtype=float)))
            for ch, curve in self.channel_curves.items():
                if ch not in channels:
                    curve.setData([], [])
        else:
            self.rtt_curve.setData(*with_gaps(x, np.asarray(d.rtt_ms, dtype=float)))
            for curve in self.channel_curves.values():
                curve.setData([], [])
        if channels != self.channels:
            self.channels = channels
            self._relayout()
        self.injected_curve.setData(*with_gaps(x, np.asarray(d.injected_ms, dtype=float)))
        for dd in Direction:
            rx = np.asarray(d.rate_x.get(dd, []), dtype=float)
            self.msg_curves[dd].setData(*smoothed_rates(rx, np.asarray(d.msgs_per_s.get(dd, []), dtype=float),
                                                        now_s))
            self.byte_curves[dd].setData(*smoothed_rates(rx, np.asarray(d.bytes_per_s.get(dd, []), dtype=float),
                                                         now_s))
        self._draw_band(now_s)
        self.scenario_curve.setData(np.asarray(d.scenario_x, dtype=float), np.asarray(d.scenario_ms, dtype=float))
        self._draw_udp(analysis, conn_id, t0)
        if self.follow:
            self._setting_range = True
            lo = max(0.0, now_s - FOLLOW_WINDOW_S)
            # with a scenario, a little of what comes next is in view too
            hi = max(now_s, lo + 1.0) + (AHEAD_S if d.scenario else 0.0)
            self.rtt_plot.setXRange(lo, hi, padding=0.02)
            # the points in view and the one before (a level that started earlier), found by bisection
            i0 = max(0, bisect.bisect_left(d.scenario_x, lo) - 1)
            planned = d.scenario_ms[i0:bisect.bisect_right(d.scenario_x, hi)]
            top = max([10.0, *(d.rtt_ms[-2000:] or [0.0]), *(h for _, _, h in d.band), *planned])
            self.rtt_plot.setYRange(0, top * 1.15, padding=0)
            for p, curves in ((self.msgs_plot, self.msg_curves), (self.bytes_plot, self.byte_curves)):
                # from zero: a steady 4 messages/s is a level line, not noise blown up to fill the plot
                top_rate = max((float(np.nanmax(y)) for c in curves.values()
                                if (y := c.getData()[1]) is not None and len(y)), default=1.0)
                if p is self.bytes_plot:  # the cap in view too: the curve is seen to meet it
                    top_rate = max([top_rate, *self._bandwidth_conf.values()])
                p.setYRange(0, max(1.0, top_rate) * 1.25, padding=0)
            if self.udp_shown:
                tops = [float(np.nanmax(y)) for c in self.udp_curves.values()
                        if (y := c.getData()[1]) is not None and len(y) and not np.all(np.isnan(y))]
                top_pct = max([5.0, *tops, *self._udp_conf.values()])
                self.udp_plot.setYRange(0, min(100.0, top_pct * 1.25), padding=0)
            self._setting_range = False
        self._update_dots()

    def _draw_band(self, now_s: float) -> None:
        xs: list[float] = []
        lo: list[float] = []
        hi: list[float] = []
        band = self.data.band
        for i, (t, a, b) in enumerate(band):
            end = band[i + 1][0] if i + 1 < len(band) else max(now_s, t)
            xs += [t, end]
            lo += [a, a]
            hi += [b, b]
        self.band_lo.setData(np.asarray(xs, dtype=float), np.asarray(lo, dtype=float))
        self.band_hi.setData(np.asarray(xs, dtype=float), np.asarray(hi, dtype=float))

    def _update_dots(self) -> None:
        d = self.data
        if not d.rtt_x:
            self.rtt_dots.setData([], [])
            return
        (x0, x1), _ = self.rtt_plot.vb.viewRange()
        x = np.asarray(d.rtt_x, dtype=float)
        i0 = int(np.searchsorted(x, x0, side="left"))
        i1 = int(np.searchsorted(x, x1, side="right"))
        i0 = max(i0, i1 - SCATTER_MAX)
        if self.channels:
            c = self.colours
            brushes = {ch: pg.mkBrush(channel_colour(c, ch)) for ch in self.channels}
            main = pg.mkBrush(c.c2s)
            self.rtt_dots.setData(x=x[i0:i1], y=np.asarray(d.rtt_ms[i0:i1], dtype=float), data=d.rtt_rows[i0:i1],
                                  brush=[main if ch is None else brushes[ch] for ch in d.rtt_channel[i0:i1]])
            return
        self.rtt_dots.setData(x=x[i0:i1], y=np.asarray(d.rtt_ms[i0:i1], dtype=float), data=d.rtt_rows[i0:i1],
                              brush=pg.mkBrush(self.colours.c2s))

    def select_row(self, row: int | None) -> None:
        d = self.data
        try:
            i = d.rtt_rows.index(row) if row is not None else -1
        except ValueError:
            i = -1
        if i < 0:
            self.selected_dot.setData([], [])
        else:
            self.selected_dot.setData([d.rtt_x[i]], [d.rtt_ms[i]])

    # ------------------------------------------------------------------------------------------ interaction

    def _tip(self, x: float, y: float, data: Any) -> str:
        d = self.data
        try:
            ch = d.rtt_channel[d.rtt_rows.index(data)] if data is not None else None
        except ValueError:
            ch = None
        if ch is not None:
            return (f"ENet {channel_name(ch)}: reliable round trip {y:.1f} ms at {x:.2f} s, a command to its ack "
                    "(click: select the ack)")
        return f"round trip {y:.1f} ms at {x:.2f} s (click: select the answer)"

    def _dots_clicked(self, _item: Any, points: Any, _ev: Any = None) -> None:
        if len(points):
            row = points[0].data()
            if row is not None:
                self.row_clicked.emit(int(row))

    def click_point(self, i: int) -> None:
        """Select the ``i``-th round trip as a click would (tests, keyboard)."""
        self.row_clicked.emit(self.data.rtt_rows[i])

    def _moved_by_user(self, *_args: Any) -> None:
        if not self._setting_range and self.follow:
            self.set_follow(False)

    def set_follow(self, on: bool) -> None:
        if on != self.follow:
            self.follow = on
            self.follow_changed.emit(on)
