"""Live plots: round-trip time over time (with the configured latency as a band) and messages/s and bytes/s per
direction, for one connection or all, drawn with pyqtgraph.

Role: :class:`TimelinePlots` is the widget; what it draws is a Qt-free :class:`~inspector.timeline.series.PlotData`
built from an :class:`~inspector.timeline.stats.Analysis`. Zoom and pan are pyqtgraph's own (wheel, drag;
right-click for its menu); when the user moves a view, following the newest data stops until "Follow" is ticked
again. Clicking an RTT point emits :attr:`TimelinePlots.row_clicked` with the
response's store row. Only the most recent :data:`SCATTER_MAX` points in view get clickable dots; the line shows
them all (pyqtgraph clips and downsamples it), so 10^5 round trips stay smooth.
Must not import: ``inspector.bridge``, ``proxy`` beyond ``proxy.model``.
Thread: GUI thread.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import pyqtgraph as pg  # type: ignore[import-untyped]
from PySide6.QtCore import Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QVBoxLayout, QWidget

from inspector.timeline.series import PlotData
from inspector.timeline.stats import Analysis
from inspector.ui import palette
from proxy.model import Direction

SCATTER_MAX: Final = 3000
FOLLOW_WINDOW_S: Final = 20.0
"""Seconds of history shown while following the newest data."""


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
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.graphics)

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
        self.rtt_plot.hideAxis("bottom")
        self.msgs_plot.hideAxis("bottom")
        self.rtt_plot.setYRange(0, 10)

        legend = self.rtt_plot.addLegend(offset=(-8, 4), labelTextColor=fg, labelTextSize="8pt")
        legend.setBrush(pg.mkBrush(QColor(bg).red(), QColor(bg).green(), QColor(bg).blue(), 200))
        band_colour = QColor(c.held)
        band_colour.setAlpha(60)
        self.band_lo = pg.PlotCurveItem(pen=pg.mkPen(c.held, width=1, style=pg.QtCore.Qt.PenStyle.DotLine))
        self.band_hi = pg.PlotCurveItem(pen=pg.mkPen(c.held, width=1, style=pg.QtCore.Qt.PenStyle.DotLine))
        self.band = pg.FillBetweenItem(self.band_lo, self.band_hi, brush=pg.mkBrush(band_colour))
        self.rtt_plot.addItem(self.band_lo)
        self.rtt_plot.addItem(self.band_hi)
        self.rtt_plot.addItem(self.band)
        # a FillBetweenItem as a legend sample crashes pyqtgraph 0.14 (PySide6 6.12): show a filled stand-in
        self._band_sample = pg.PlotDataItem([0.0, 1.0], [1.0, 1.0], pen=pg.mkPen(c.held, width=1), fillLevel=0,
                                            fillBrush=pg.mkBrush(band_colour))
        legend.addItem(self._band_sample, "configured added RTT")
        self.injected_curve = self.rtt_plot.plot([], [], pen=pg.mkPen(c.held, width=1.5), name="added by sockscope")
        self.rtt_curve = self.rtt_plot.plot([], [], pen=pg.mkPen(c.c2s, width=1.5), name="round trip")
        self.rtt_dots = pg.ScatterPlotItem(size=6, pen=pg.mkPen(None), brush=pg.mkBrush(c.c2s), hoverable=True,
                                           hoverSize=9, tip=self._tip)
        self.rtt_dots.sigClicked.connect(self._dots_clicked)
        self.rtt_plot.addItem(self.rtt_dots)
        self.selected_dot = pg.ScatterPlotItem(size=12, pen=pg.mkPen(c.error, width=2), brush=pg.mkBrush(None))
        self.rtt_plot.addItem(self.selected_dot)

        msgs_legend = self.msgs_plot.addLegend(offset=(-8, 4), labelTextColor=fg, labelTextSize="8pt")
        msgs_legend.setBrush(pg.mkBrush(QColor(bg).red(), QColor(bg).green(), QColor(bg).blue(), 200))
        self.msg_curves: dict[Direction, Any] = {}
        self.byte_curves: dict[Direction, Any] = {}
        for d in Direction:
            pen = pg.mkPen(c.direction(d), width=1.5)
            name = "client → server" if d is Direction.C2S else "server → client"
            self.msg_curves[d] = self.msgs_plot.plot([], [], pen=pen, name=name, stepMode=None)
            self.byte_curves[d] = self.bytes_plot.plot([], [], pen=pen)
        self._conf: list[tuple[int, float, float]] = []
        self._compact = False

    COMPACT_BELOW = 330
    """Below this height (px) the bytes/s plot steps aside so the other two keep readable axes."""

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self.set_compact(self.height() < self.COMPACT_BELOW)

    def set_compact(self, compact: bool) -> None:
        if compact == self._compact:
            return
        self._compact = compact
        ci = self.graphics.ci
        if compact:
            ci.removeItem(self.bytes_plot)
            self.msgs_plot.showAxis("bottom")
            self.msgs_plot.setLabel("bottom", "time (s)")
        else:
            ci.addItem(self.bytes_plot, row=2, col=0)
            ci.layout.setRowStretchFactor(2, 3)
            self.msgs_plot.hideAxis("bottom")

    # ------------------------------------------------------------------------------------------ data

    def set_configured(self, history: list[tuple[int, float, float]]) -> None:
        """Configured added round trip: (from store time ns, low ms, high ms) steps."""
        self._conf = history

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
        self.rtt_curve.setData(x, np.asarray(d.rtt_ms, dtype=float))
        self.injected_curve.setData(x, np.asarray(d.injected_ms, dtype=float))
        for dd in Direction:
            rx = np.asarray(d.rate_x.get(dd, []), dtype=float)
            self.msg_curves[dd].setData(rx, np.asarray(d.msgs_per_s.get(dd, []), dtype=float))
            self.byte_curves[dd].setData(rx, np.asarray(d.bytes_per_s.get(dd, []), dtype=float))
        self._draw_band(now_s)
        if self.follow:
            self._setting_range = True
            lo = max(0.0, now_s - FOLLOW_WINDOW_S)
            self.rtt_plot.setXRange(lo, max(now_s, lo + 1.0), padding=0.02)
            top = max([10.0, *(d.rtt_ms[-2000:] or [0.0]), *(h for _, _, h in d.band)])
            self.rtt_plot.setYRange(0, top * 1.45, padding=0)  # room for the legend
            for p in (self.msgs_plot, self.bytes_plot):
                p.enableAutoRange(axis="y")
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
        self.rtt_dots.setData(x=x[i0:i1], y=np.asarray(d.rtt_ms[i0:i1], dtype=float), data=d.rtt_rows[i0:i1])

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
