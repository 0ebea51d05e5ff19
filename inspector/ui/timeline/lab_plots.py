"""The Lab's live plots: input-to-ack delay, inputs in flight and corrections over time, and the histogram of the
latest snapshot intervals with p95/p99 and the interpolation delay that covers them; each beside the lag
sockscope adds.

Role: :class:`LabPlots` draws what a :class:`~inspector.lab.analysis.LabAnalysis` measured, for one connection or
all (one curve per connection). What sockscope adds is drawn as on the timeline, in amber: the configured
latency (c2s + s2c, up to + both jitters) as a band behind the delays; the same lag divided by the client's input
interval (the inputs it alone keeps in flight) as a dashed line beside the inputs in flight; the configured lag on
a right-hand axis (ms) beside the corrections; and, on the histogram, where the server → client jitter can put
the gaps (latency shifts every snapshot alike and leaves the gaps as they are).
Bounded work per refresh: a connection's curves are set again only when its series grew (each series is capped
by the lab); while following, only the points of the last two follow windows are handed to pyqtgraph (found by
bisection, so the work does not grow with the session); only the newest :data:`SCATTER_MAX` points in view get
dots; the histogram is at most :data:`~inspector.lab.core.HIST_BINS` bins. Called at most 10 times a second,
and only while the Lab is shown.
Must not import: ``inspector.bridge``.
Thread: GUI thread.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from typing import Any, Final

import numpy as np
import pyqtgraph as pg  # type: ignore[import-untyped]
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from inspector.lab.analysis import LabAnalysis
from inspector.lab.core import ConnLab, Series, interpolation_advice
from inspector.lab.report import Interpolation
from inspector.ui import palette

SCATTER_MAX: Final = 3000
FOLLOW_WINDOW_S: Final = 20.0
AXIS_PX: Final = 58

Conf = tuple[int, float, float, float, float]
"""A configuration step: (from store time ns, c2s latency, c2s jitter, s2c latency, s2c jitter), ms."""


def _arr(a: Iterable[Any], dtype: type) -> np.ndarray:
    # a copy: a numpy view of an array.array would stop it from growing (BufferError)
    return np.array(a, dtype=dtype)


def steps(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A staircase through the points (the count holds until the next sample)."""
    if len(x) < 2:
        return x, y
    return np.repeat(x, 2)[1:], np.repeat(y, 2)[:-1]


def legend_html(c: palette.Colours) -> str:
    def mark(colour: QColor, text: str, sym: str = "━━") -> str:
        return f"<span style='color:{colour.name()}'>{sym}</span>&nbsp;{text}"

    return "&nbsp;&nbsp;".join([
        mark(c.c2s, "input → ack delay"), mark(c.held, "added by sockscope"),
        mark(c.held, "configured lag (c2s + s2c latency, + jitter)", "▒▒"),
        mark(c.c2s, "inputs in flight", "━"), mark(c.held, "lag ÷ input interval", "┅┅"),
        mark(c.error, "correction (px)", "●"), mark(c.s2c, "snapshot gaps", "▮"),
    ])


class LabPlots(QWidget):
    row_clicked = Signal(int)
    """A dot was clicked: the store row of the state that acknowledged the input (or corrected it)."""
    follow_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.colours = palette.current()
        self.follow = True
        self._setting_range = False
        self.generation = -1
        self.conn_id: int | None = None
        self.conf: list[Conf] = []
        self.advice = Interpolation()
        self._drawn: dict[tuple[int, str], int] = {}
        self._dot_rows: dict[str, np.ndarray] = {}
        self._curves: dict[tuple[int, str], tuple[Any, Any]] = {}
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.ci.setSpacing(2)
        self.legend = QLabel()
        self.legend.setWordWrap(True)
        self.legend.setContentsMargins(6, 0, 6, 0)
        self.legend.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.legend)
        lay.addWidget(self.graphics, 1)

        g = self.graphics
        self.delay_plot = g.addPlot(row=0, col=0)
        self.flight_plot = g.addPlot(row=1, col=0)
        self.corr_plot = g.addPlot(row=2, col=0)
        self.hist_plot = g.addPlot(row=0, col=1, rowspan=3)
        g.ci.layout.setColumnStretchFactor(0, 3)
        g.ci.layout.setColumnStretchFactor(1, 2)
        self.time_plots = (self.delay_plot, self.flight_plot, self.corr_plot)
        for p, label in ((self.delay_plot, "ack delay (ms)"), (self.flight_plot, "in flight"),
                         (self.corr_plot, "correction (px)"), (self.hist_plot, "snapshots")):
            p.showGrid(x=True, y=True, alpha=0.15)
            p.getAxis("left").setWidth(AXIS_PX)
            p.getAxis("left").setLabel(label)
            p.setMenuEnabled(True)
            p.vb.sigRangeChangedManually.connect(self._moved_by_user)
        for p in self.time_plots:
            p.setClipToView(True)
            p.setDownsampling(auto=True, mode="peak")
        self.flight_plot.setXLink(self.delay_plot)
        self.corr_plot.setXLink(self.delay_plot)
        self.delay_plot.hideAxis("bottom")
        self.flight_plot.hideAxis("bottom")
        self.corr_plot.setLabel("bottom", "time (s)")
        self.hist_plot.setLabel("bottom", "gap between two snapshots as the client gets them (ms)")
        self.hist_plot.setTitle("latest snapshot intervals", size="9pt")

        # what sockscope adds, beside each measure
        self.band_lo = pg.PlotCurveItem()
        self.band_hi = pg.PlotCurveItem()
        self.band = pg.FillBetweenItem(self.band_lo, self.band_hi)
        for item in (self.band_lo, self.band_hi, self.band):
            self.delay_plot.addItem(item)
        self.flight_expected = self.flight_plot.plot([], [])
        self.corr_axis_vb = pg.ViewBox()
        self.corr_plot.showAxis("right")
        self.corr_plot.scene().addItem(self.corr_axis_vb)
        self.corr_plot.getAxis("right").linkToView(self.corr_axis_vb)
        self.corr_plot.getAxis("right").setLabel("lag (ms)")
        self.corr_axis_vb.setXLink(self.corr_plot)
        self.corr_plot.vb.sigResized.connect(self._sync_right_axis)
        self.corr_lag = pg.PlotCurveItem()
        self.corr_axis_vb.addItem(self.corr_lag)
        self.corr_dots = pg.ScatterPlotItem(size=6, hoverable=True, hoverSize=9, tip=self._corr_tip)
        self.corr_dots.sigClicked.connect(self._dots_clicked)
        self.corr_plot.addItem(self.corr_dots)
        self.delay_dots = pg.ScatterPlotItem(size=5, hoverable=True, hoverSize=8, tip=self._delay_tip)
        self.delay_dots.sigClicked.connect(self._dots_clicked)
        self.delay_plot.addItem(self.delay_dots)

        self.bars = pg.BarGraphItem(x=[], height=[], width=1.0)
        self.hist_plot.addItem(self.bars)
        self.jitter_region = pg.LinearRegionItem(values=(0, 0), movable=False)
        self.jitter_region.hide()
        self.hist_plot.addItem(self.jitter_region)
        self.marks: dict[str, Any] = {}
        # labels across the top, one below the other, each starting at its line (they never overlap)
        for key, label, pos in (("rec", "interpolation delay", 0.95), ("two", "2 intervals", 0.86),
                                ("p99", "p99", 0.77), ("p95", "p95", 0.68)):
            line = pg.InfiniteLine(angle=90, movable=False, label=label,
                                   labelOpts={"position": pos, "anchors": [(0, 0.5), (0, 0.5)], "fill": None})
            line.hide()
            self.hist_plot.addItem(line)
            self.marks[key] = line
        # the recommendation on top of a percentile it equals, its label ending at its line (room on the left)
        self.marks["rec"].setZValue(10)
        self.marks["rec"].label.anchors = [(1, 0.5), (1, 0.5)]
        self.set_colours(self.colours)

    # ------------------------------------------------------------------------------------------ look

    def set_colours(self, c: palette.Colours) -> None:
        self.colours = c
        bg = "#1e1e1e" if c.dark else "#ffffff"
        fg = "#d0d0d0" if c.dark else "#303030"
        self.graphics.setBackground(bg)
        for p in (*self.time_plots, self.hist_plot):
            for ax in ("left", "bottom", "right"):
                axis = p.getAxis(ax)
                axis.setTextPen(fg)
                axis.setPen(fg)
                axis.label.setDefaultTextColor(QColor(fg))
        fill = QColor(c.held)
        fill.setAlpha(60)
        for edge in (self.band_lo, self.band_hi):
            edge.setPen(pg.mkPen(c.held, width=1, style=Qt.PenStyle.DotLine))
        self.band.setBrush(pg.mkBrush(fill))
        self.flight_expected.setPen(pg.mkPen(c.held, width=1.5, style=Qt.PenStyle.DashLine))
        self.corr_lag.setPen(pg.mkPen(c.held, width=1.5, style=Qt.PenStyle.DotLine))
        self.corr_dots.setBrush(pg.mkBrush(c.error))
        self.corr_dots.setPen(pg.mkPen(None))
        self.delay_dots.setBrush(pg.mkBrush(c.c2s))
        self.delay_dots.setPen(pg.mkPen(None))
        bar = QColor(c.s2c)
        bar.setAlpha(170)
        self.bars.setOpts(brush=pg.mkBrush(bar), pen=pg.mkPen(None))
        light = QColor(c.held)
        light.setAlpha(35)
        self.jitter_region.setBrush(pg.mkBrush(light))
        for line in self.jitter_region.lines:
            line.setPen(pg.mkPen(c.held, width=1, style=Qt.PenStyle.DotLine))
        styles = {"p95": (c.muted, Qt.PenStyle.DashLine, 1.5), "p99": (c.error, Qt.PenStyle.DashLine, 1.5),
                  "two": (c.muted, Qt.PenStyle.DotLine, 1.5), "rec": (c.c2s, Qt.PenStyle.SolidLine, 2.5)}
        for key, (colour, style, width) in styles.items():
            self.marks[key].setPen(pg.mkPen(colour, width=width, style=style))
            self.marks[key].label.setColor(colour)
        for (_conn, kind), (_plot, curve) in self._curves.items():
            curve.setPen(self._pen(kind))
        self._drawn.clear()
        self.legend.setText(legend_html(c))

    def _pen(self, kind: str) -> Any:
        c = self.colours
        return {"delay": pg.mkPen(c.c2s, width=1.5), "added": pg.mkPen(c.held, width=1.5),
                "flight": pg.mkPen(c.c2s, width=1.5), "corr": pg.mkPen(c.error, width=1)}[kind]

    def _sync_right_axis(self) -> None:
        self.corr_axis_vb.setGeometry(self.corr_plot.vb.sceneBoundingRect())
        self.corr_axis_vb.linkedViewChanged(self.corr_plot.vb, self.corr_axis_vb.XAxis)

    # ------------------------------------------------------------------------------------------ data

    def set_configured(self, conf: list[Conf]) -> None:
        self.conf = conf

    def _curve(self, plot: Any, conn: int, kind: str) -> Any:
        key = (conn, kind)
        have = self._curves.get(key)
        if have is None:
            have = self._curves[key] = (plot, plot.plot([], [], pen=self._pen(kind), connect="finite"))
        return have[1]

    def _set(self, plot: Any, conn: ConnLab, kind: str, series: Series, t0: int, *, y: str = "y",
             staircase: bool = False, since_ns: int | None = None) -> None:
        """Hand ``series`` to its curve if it grew; ``since_ns``: only the points from then on (following)."""
        key = (conn.conn_id, kind)
        if self._drawn.get(key) == series.added and key in self._curves:
            return
        self._drawn[key] = series.added
        i0 = 0 if since_ns is None else max(0, bisect.bisect_left(series.t, since_ns) - 1)
        x = (_arr(series.t[i0:], np.int64) - t0) / 1e9
        yy = _arr((series.extra if y == "extra" else series.y)[i0:], np.float64)
        if staircase:
            x, yy = steps(x, yy)
        self._curve(plot, conn.conn_id, kind).setData(x, yy)

    def refresh(self, analysis: LabAnalysis, conn_id: int | None) -> None:
        """Redraw from ``analysis`` (only the curves whose series grew), for ``conn_id`` or every connection.
        While following, only the points of the last two follow windows go to pyqtgraph: the work per refresh
        stays the same however long the session."""
        t0 = analysis.store.t0_ns or 0
        if analysis.generation != self.generation or conn_id != self.conn_id:
            self.generation, self.conn_id = analysis.generation, conn_id
            for plot, curve in self._curves.values():
                plot.removeItem(curve)
            self._curves.clear()
            self._drawn.clear()
        store = analysis.store
        now_ns = max(store.arrivals[-1], t0) if len(store) else t0
        now_s = (now_ns - t0) / 1e9
        since = now_ns - int(2 * FOLLOW_WINDOW_S * 1e9) if self.follow else None
        conns = [c for c in analysis.tracker.conns.values()
                 if c.has_series and (conn_id is None or c.conn_id == conn_id)]
        for c in conns:
            self._set(self.delay_plot, c, "added", c.delay, t0, y="extra", since_ns=since)
            self._set(self.delay_plot, c, "delay", c.delay, t0, since_ns=since)
            self._set(self.flight_plot, c, "flight", c.in_flight, t0, staircase=True, since_ns=since)
            self._set(self.corr_plot, c, "corr", c.corrections, t0, since_ns=since)
        interval = self._input_interval(conns)
        self._draw_conf(t0, now_s, interval)
        self._draw_hist(conns)
        if self.follow:
            self._follow(conns, now_s)
        self._dots(conns, t0)

    @staticmethod
    def _input_interval(conns: list[ConnLab]) -> float:
        vals = sorted(v for c in conns if math.isfinite(v := c.input_interval_ms()))
        return vals[len(vals) // 2] if vals else math.nan

    def _draw_conf(self, t0: int, now_s: float, input_ms: float) -> None:
        xs: list[float] = []
        lo: list[float] = []
        hi: list[float] = []
        conf = self.conf
        for i, (t, c2s_lat, c2s_jit, s2c_lat, s2c_jit) in enumerate(conf):
            start = (t - t0) / 1e9
            end = (conf[i + 1][0] - t0) / 1e9 if i + 1 < len(conf) else max(now_s, start)
            a = c2s_lat + s2c_lat
            b = a + c2s_jit + s2c_jit
            xs += [start, end]
            lo += [a, a]
            hi += [b, b]
        x = np.asarray(xs, dtype=float)
        self.band_lo.setData(x, np.asarray(lo, dtype=float))
        self.band_hi.setData(x, np.asarray(hi, dtype=float))
        self.corr_lag.setData(x, np.asarray(lo, dtype=float))
        if math.isfinite(input_ms) and input_ms > 0:
            self.flight_expected.setData(x, np.asarray(lo, dtype=float) / input_ms)
        else:
            self.flight_expected.setData([], [])

    def _draw_hist(self, conns: list[ConnLab]) -> None:
        counts = np.zeros(len(conns[0].window.counts) if conns else 1, dtype=np.int64)
        for c in conns:
            counts += _arr(c.window.counts, np.int64)
        self.advice = advice = interpolation_advice(counts.tolist())
        s2c_jit = self.conf[-1][4] if self.conf else 0.0
        if not advice.intervals:
            self.bars.setOpts(x=[], height=[], width=1.0)
            for line in self.marks.values():
                line.hide()
            self.jitter_region.hide()
            return
        top = max(advice.recommended_ms * 1.5, advice.median_ms + 2 * s2c_jit + 5, 10.0)  # room for the labels
        width = max(1, math.ceil(top / 80))  # at most ~80 bars, each a whole number of ms
        n = min(len(counts), int(top) + width + 1)
        shown = counts[:n].copy()
        shown[-1] += counts[n:].sum()  # the last bar holds every longer gap too (a freeze is not lost off the edge)
        pad = (-len(shown)) % width
        grouped = np.pad(shown, (0, pad)).reshape(-1, width).sum(axis=1)
        # bin b holds gaps in (b - 1, b]: a group of `width` bins spans ((k*w) - 1, (k+1)*w - 1]
        centres = np.arange(len(grouped)) * width + (width - 1) / 2.0
        self.bars.setOpts(x=centres, height=grouped, width=width * 0.9)
        for key, v in (("p95", advice.p95_ms), ("p99", advice.p99_ms), ("two", advice.two_intervals_ms),
                       ("rec", advice.recommended_ms)):
            self.marks[key].setValue(v)
            self.marks[key].show()
        self.marks["rec"].label.setFormat(f"interpolation delay {advice.recommended_ms:.0f} ms ")
        self.marks["two"].label.setFormat(f" 2 intervals {advice.two_intervals_ms:.0f}")
        self.marks["p99"].label.setFormat(f" p99 {advice.p99_ms:.0f}")
        self.marks["p95"].label.setFormat(f" p95 {advice.p95_ms:.0f}")
        if s2c_jit > 0:
            self.jitter_region.setRegion((max(0.0, advice.median_ms - 2 * s2c_jit), advice.median_ms + 2 * s2c_jit))
            self.jitter_region.show()
        else:
            self.jitter_region.hide()
        if self.follow:
            self._setting_range = True
            self.hist_plot.setXRange(0, top, padding=0.02)
            self.hist_plot.setYRange(0, max(1.0, float(grouped.max()) * 1.15), padding=0)
            self._setting_range = False

    def _follow(self, conns: list[ConnLab], now_s: float) -> None:
        self._setting_range = True
        lo = max(0.0, now_s - FOLLOW_WINDOW_S)
        self.delay_plot.setXRange(lo, max(now_s, lo + 1.0), padding=0.02)
        recent = [float(np.max(_arr(c.delay.y[-2000:], np.float64))) for c in conns if len(c.delay)]
        conf_top = [b + d + e for _, b, d, _x, e in self.conf] + [b + x for _, b, _d, x, _e in self.conf]
        top = max([10.0, *recent, *conf_top])
        self.delay_plot.setYRange(0, top * 1.15, padding=0)
        flights = [float(np.max(_arr(c.in_flight.y[-2000:], np.float64))) for c in conns if len(c.in_flight)]
        _x, exp = self.flight_expected.getData()
        exp_top = float(np.max(exp)) if exp is not None and len(exp) else 0.0
        self.flight_plot.setYRange(0, max([4.0, *flights, exp_top]) * 1.2, padding=0)
        corr = [float(np.max(_arr(c.corrections.y[-2000:], np.float64))) for c in conns if len(c.corrections)]
        self.corr_plot.setYRange(0, max([4.0, *corr]) * 1.2, padding=0)
        lag = [b + x for _, b, _d, x, _e in self.conf]
        self.corr_axis_vb.setYRange(0, max([10.0, *lag]) * 1.2, padding=0)
        self._setting_range = False

    def _dots(self, conns: list[ConnLab], t0: int) -> None:
        """Dots for the newest points in view (at most :data:`SCATTER_MAX`, shared by the connections); the store
        row of each is kept beside them (not as pyqtgraph's per-point objects) for a click."""
        (x0, x1), _ = self.delay_plot.vb.viewRange()
        per_conn = max(1, SCATTER_MAX // max(1, len(conns)))
        for dots, attr in ((self.delay_dots, "delay"), (self.corr_dots, "corrections")):
            xs: list[np.ndarray] = []
            ys: list[np.ndarray] = []
            rows: list[np.ndarray] = []
            for c in conns:
                s: Series = getattr(c, attr)
                if not len(s):
                    continue
                i0 = bisect.bisect_left(s.t, t0 + int(x0 * 1e9))
                i1 = bisect.bisect_right(s.t, t0 + int(x1 * 1e9))
                i0 = max(i0, i1 - per_conn)
                xs.append((_arr(s.t[i0:i1], np.int64) - t0) / 1e9)
                ys.append(_arr(s.y[i0:i1], np.float64))
                rows.append(_arr(s.rows[i0:i1], np.int64))
            if xs:
                self._dot_rows[attr] = np.concatenate(rows)
                dots.setData(x=np.concatenate(xs), y=np.concatenate(ys))
            else:
                self._dot_rows[attr] = np.zeros(0, dtype=np.int64)
                dots.setData([], [])

    # ------------------------------------------------------------------------------------------ interaction

    def _delay_tip(self, x: float, y: float, data: Any) -> str:
        return f"input sent at {x:.2f} s acknowledged after {y:.1f} ms (click: select the acknowledging state)"

    def _corr_tip(self, x: float, y: float, data: Any) -> str:
        return f"correction of {y:.1f} px at {x:.2f} s (click: select the state)"

    def row_of_dot(self, item: Any, index: int) -> int | None:
        """The store row behind dot ``index`` of ``item`` (the delay or the correction dots)."""
        rows = self._dot_rows.get("delay" if item is self.delay_dots else "corrections")
        if rows is None or not 0 <= index < len(rows) or rows[index] < 0:
            return None
        return int(rows[index])

    def _dots_clicked(self, item: Any, points: Any, _ev: Any = None) -> None:
        if len(points):
            row = self.row_of_dot(item, points[0].index())
            if row is not None:
                self.row_clicked.emit(row)

    def _moved_by_user(self, *_args: Any) -> None:
        if not self._setting_range and self.follow:
            self.set_follow(False)

    def set_follow(self, on: bool) -> None:
        if on != self.follow:
            self.follow = on
            self._drawn.clear()  # following draws the latest points only; not following, all of them
            self.follow_changed.emit(on)
