"""The ladder (sequence) diagram: client, proxy and server as three vertical lines, time flowing down.

Role: each message is an arrow from its sender's line to the proxy at its *arrival* time, then a sloped arrow from
the proxy (at arrival) to its destination (at its *release* time), so the slope is the delay sockscope added. A
hold or a lag spike is also drawn as a bar on the proxy line (amber for a hold, red for a spike). A held message's
bar runs down to "now"; a dropped or discarded one stops at the proxy with a cross. When more messages are on
screen than can be told apart, arrows are aggregated into buckets (one arrow per direction and bucket, labelled
with the count) until you zoom in.
Colours come from :mod:`inspector.ui.palette` (the table's). The selected message is drawn bold and kept in view;
clicking an arrow emits :attr:`LadderView.row_clicked`. A message with a note (:attr:`LadderView.notes`: on an ENet
flow, a datagram that resends reliable commands after a loss, and the lost one it stands in for) carries the note as
a small label beside its arrow, so a loss shows as a cross followed, a little later, by "↻ resends ch0 #5 (2nd try)".
Wheel zooms (around the pointer), dragging pans; both stop following the newest traffic ("Follow" resumes).
Must not import: ``inspector.bridge``.
Thread: GUI thread.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPainterPath, QPaintEvent, QPen, QPolygonF, QWheelEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

from inspector.store import NO_TIME, MessageStore
from inspector.ui import palette
from proxy.model import DelayReason, Direction, MessageState, Origin

HEADER_PX: Final = 24
AXIS_PX: Final = 64
MIN_GAP_PX: Final = 6.0
"""Below this many pixels per arrow (on average) the ladder aggregates."""
BUCKET_PX: Final = 16.0
LOOKBACK_NS: Final = 10_000_000_000
"""Messages that arrived this long before the top of the view are not looked at (unless still held)."""
DEFAULT_NS_PER_PX: Final = 5_000_000
MIN_NS_PER_PX: Final = 10_000
MAX_NS_PER_PX: Final = 2_000_000_000
LANES: Final = ("client", "proxy", "server")
ROW_CAP: Final = 4000
"""More rows than this in (or just above) the view: aggregate from samples instead of looking at each."""
SAMPLES_PER_BUCKET: Final = 48

_STATES: Final = tuple(MessageState)
_HELD: Final = _STATES.index(MessageState.HELD)
_GONE: Final = frozenset({_STATES.index(MessageState.DROPPED), _STATES.index(MessageState.DISCARDED)})
_ORIGINS: Final = tuple(Origin)


@dataclass(frozen=True, slots=True)
class Arrow:
    """One arrow as laid out: ``row`` is -1 for an aggregate of ``count`` messages."""

    row: int
    direction: Direction
    y_arrival: float
    y_release: float | None
    """None while held (the bar runs to "now") or when the message was dropped/discarded."""
    count: int = 1
    held: bool = False
    gone: bool = False
    spike: bool = False
    hold: bool = False
    special: bool = False


def _nice_step(ns_per_px: float, min_px: float = 46.0) -> int:
    raw = ns_per_px * min_px
    exp = 10 ** math.floor(math.log10(max(raw, 1.0)))
    for m in (1, 2, 5, 10):
        if m * exp >= raw:
            return int(m * exp)
    return int(10 * exp)


class LadderView(QWidget):
    row_clicked = Signal(int)
    follow_changed = Signal(bool)

    def __init__(self, store: MessageStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.colours = palette.current()
        self.conn_id: int | None = None
        self.ns_per_px: float = DEFAULT_NS_PER_PX
        self.top_ns = 0
        self.follow = True
        self.selected_row: int | None = None
        self._arrows: list[Arrow] = []
        self._press: QPointF | None = None
        self._press_top = 0
        self._dragged = False
        self.notes: Callable[[int], str | None] | None = None
        """A short note for a row, drawn beside its arrow (the timeline's ENet retransmissions)."""
        self._note_ys: dict[Direction, float] = {}
        """Where the last note of each side was drawn in this paint (a note too close to it is left out)."""
        self.setMinimumSize(260, 160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMouseTracking(False)
        self.setToolTip("Ladder: each arrow is one message, from its arrival at the proxy to its release.\n"
                        "Wheel: zoom · drag: scroll in time · click an arrow: select the message")

    # ------------------------------------------------------------------------------------------ geometry

    @property
    def span_ns(self) -> float:
        return max(1.0, (self.height() - HEADER_PX) * self.ns_per_px)

    def time_to_y(self, t_ns: int) -> float:
        return HEADER_PX + (t_ns - self.top_ns) / self.ns_per_px

    def y_to_time(self, y: float) -> int:
        return int(self.top_ns + (y - HEADER_PX) * self.ns_per_px)

    def lane_x(self, lane: int) -> float:
        w = max(1, self.width() - AXIS_PX - 16)
        return AXIS_PX + 8 + w * (0.08 + 0.42 * lane)

    def _now_ns(self) -> int:
        s = self.store
        if not len(s):
            return 0
        return max(s.arrivals[-1], max((r for r in s.releases[-64:] if r != NO_TIME), default=0))

    def set_scope(self, conn_id: int | None) -> None:
        self.conn_id = conn_id
        self.update()

    def set_follow(self, on: bool) -> None:
        if on != self.follow:
            self.follow = on
            self.follow_changed.emit(on)
        if on:
            self.refresh()

    def refresh(self) -> None:
        if self.follow and len(self.store):
            self.top_ns = int(self._now_ns() - self.span_ns * 0.92)
        self.update()

    def select_row(self, row: int | None) -> None:
        """Highlight ``row``. While following, the view stays on the newest traffic (selecting a message must not
        freeze the timeline: the next slider move should show its effect); otherwise the view moves to it."""
        self.selected_row = row
        if row is not None and 0 <= row < len(self.store) and not self.follow:
            t = self.store.arrivals[row]
            if not self.top_ns <= t <= self.top_ns + self.span_ns * 0.95:
                self.top_ns = int(t - self.span_ns / 3)
        self.update()

    # ------------------------------------------------------------------------------------------ layout

    def arrows(self) -> list[Arrow]:
        """The arrows as last laid out (what is on screen)."""
        return self._arrows

    def layout_arrows(self) -> list[Arrow]:
        s = self.store
        n = len(s)
        if not n:
            self._arrows = []
            return []
        top, bottom = self.top_ns, self.top_ns + self.span_ns
        arrivals, releases, conns = s.arrivals, s.releases, s.conn_ids
        lo = bisect.bisect_left(arrivals, top - LOOKBACK_NS)
        hi = bisect.bisect_right(arrivals, bottom)
        if hi - lo > ROW_CAP:  # far too many to look at one by one: sample per bucket
            self._arrows = self._sampled(bisect.bisect_left(arrivals, top), hi)
            return self._arrows
        rows = [r for r in range(lo, hi) if self.conn_id is None or conns[r] == self.conn_id]
        rows = [r for r in rows if arrivals[r] >= top or (releases[r] != NO_TIME and releases[r] >= top)
                or s.states[r] == _HELD]
        extra = [r for r in s.held.values() if r < lo and (self.conn_id is None or conns[r] == self.conn_id)]
        individual = [self._arrow(r) for r in sorted(extra) + rows]
        capacity = max(1.0, (self.height() - HEADER_PX) / MIN_GAP_PX)
        if len(individual) <= capacity:
            self._arrows = individual
            return individual
        keep = [a for a in individual if a.held or a.row == self.selected_row]
        buckets: dict[tuple[int, Direction], list[Arrow]] = {}
        for a in individual:
            if a.held or a.row == self.selected_row:
                continue
            buckets.setdefault((int((a.y_arrival - HEADER_PX) // BUCKET_PX), a.direction), []).append(a)
        out = []
        for (_b, d), group in sorted(buckets.items(), key=lambda kv: (kv[0][0], kv[0][1])):
            ya = sum(a.y_arrival for a in group) / len(group)
            released = [a.y_release for a in group if a.y_release is not None]
            yr = sum(released) / len(released) if released else None
            out.append(Arrow(group[0].row if len(group) == 1 else -1, d, ya, yr, len(group),
                             gone=all(a.gone for a in group), spike=any(a.spike for a in group),
                             hold=any(a.hold for a in group), special=any(a.special for a in group)))
        self._arrows = out + keep
        return self._arrows

    def _sampled(self, lo: int, hi: int) -> list[Arrow]:
        """Aggregates from at most :data:`SAMPLES_PER_BUCKET` rows per bucket, counts scaled to the bucket's rows."""
        s = self.store
        arrivals, conns, dirs = s.arrivals, s.conn_ids, s.dirs
        out: list[Arrow] = []
        step_ns = BUCKET_PX * self.ns_per_px
        nb = int((self.height() - HEADER_PX) / BUCKET_PX) + 1
        r0 = lo
        for b in range(nb):
            r1 = bisect.bisect_left(arrivals, int(self.top_ns + (b + 1) * step_ns), r0, hi)
            if r1 > r0:
                stride = max(1, (r1 - r0) // SAMPLES_PER_BUCKET)
                sample = [r for r in range(r0, r1, stride) if self.conn_id is None or conns[r] == self.conn_id]
                scale = (r1 - r0) / max(1, len(range(r0, r1, stride)))
                for d in Direction:
                    group = [self._arrow(r) for r in sample if dirs[r] == d]
                    if not group:
                        continue
                    ya = sum(a.y_arrival for a in group) / len(group)
                    released = [a.y_release for a in group if a.y_release is not None]
                    yr = sum(released) / len(released) if released else None
                    n = max(2, round(len(group) * scale))
                    out.append(Arrow(-1, d, ya, yr, n, spike=any(a.spike for a in group),
                                     hold=any(a.hold for a in group), special=any(a.special for a in group)))
            r0 = r1
        held = [r for r in list(s.held.values())[-200:] if self.conn_id is None or conns[r] == self.conn_id]
        return out + [self._arrow(r) for r in held]

    def _arrow(self, row: int) -> Arrow:
        s = self.store
        st = s.states[row]
        rel = s.releases[row]
        reasons = {r for r, ns in s.delays(row) if ns > 0}
        return Arrow(
            row, Direction(s.dirs[row]), self.time_to_y(s.arrivals[row]),
            None if rel == NO_TIME or st in _GONE else self.time_to_y(rel),
            held=st == _HELD, gone=st in _GONE, spike=DelayReason.SPIKE in reasons,
            hold=DelayReason.HOLD in reasons, special=_ORIGINS[s.origins[row]] is not Origin.LIVE)

    # ------------------------------------------------------------------------------------------ painting

    def paintEvent(self, event: QPaintEvent) -> None:
        c = self.colours
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        base = self.palette().color(self.backgroundRole())
        p.fillRect(self.rect(), base)
        fg = self.palette().color(self.foregroundRole())
        h = self.height()
        xs = [self.lane_x(i) for i in range(3)]
        # time axis
        step = _nice_step(self.ns_per_px)
        t0 = self.store.t0_ns or 0
        first = (self.top_ns // step + 1) * step
        p.setPen(QPen(c.muted, 1))
        font = p.font()
        font.setPointSizeF(max(7.0, font.pointSizeF() - 1))
        p.setFont(font)
        t = first
        grid = QColor(c.muted)
        grid.setAlpha(40)
        while (y := self.time_to_y(t)) < h:
            p.setPen(QPen(grid, 1))
            p.drawLine(QPointF(AXIS_PX, y), QPointF(self.width(), y))
            p.setPen(QPen(c.muted, 1))
            rel = (t - t0) / 1e9
            label = f"{rel:.3f} s" if step < 10_000_000 else f"{rel:.2f} s" if step < 100_000_000 else f"{rel:.1f} s"
            p.drawText(QRectF(0, y - 8, AXIS_PX - 6, 16), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                       label)
            t += step
        # lanes
        for i, x in enumerate(xs):
            p.setPen(QPen(fg if i != 1 else c.muted, 2 if i != 1 else 1.5))
            p.drawLine(QPointF(x, HEADER_PX), QPointF(x, h))
            p.drawText(QRectF(x - 50, 2, 100, HEADER_PX - 4), Qt.AlignmentFlag.AlignCenter, LANES[i])
        arrows = self.layout_arrows()
        self._note_ys.clear()
        now_y = self.time_to_y(self._now_ns())
        p.setClipRect(QRectF(0, HEADER_PX, self.width(), h - HEADER_PX))  # arrows never cover the lane names
        for a in arrows:
            if a.row != self.selected_row or a.row < 0:
                self._draw_arrow(p, a, xs, now_y, selected=False)
        for a in arrows:
            if a.row == self.selected_row and a.row >= 0:
                self._draw_arrow(p, a, xs, now_y, selected=True)
        if len(arrows) and any(a.count > 1 for a in arrows):
            p.setPen(QPen(c.muted, 1))
            p.drawText(QRectF(AXIS_PX, h - 18, self.width() - AXIS_PX - 6, 16),
                       Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                       "grouped (×n): zoom in with the wheel to see each message")
        p.end()

    def _draw_arrow(self, p: QPainter, a: Arrow, xs: list[float], now_y: float, *, selected: bool) -> None:
        self._draw_line(p, a, xs, now_y, selected=selected)
        notes = self.notes
        if notes is not None and a.row >= 0 and a.count == 1:
            text = notes(a.row)
            last = self._note_ys.get(a.direction)
            if text and (last is None or abs(a.y_arrival - last) >= 13 or selected):  # never one over another
                self._note_ys[a.direction] = a.y_arrival
                self._draw_note(p, a, xs, text)

    def _draw_note(self, p: QPainter, a: Arrow, xs: list[float], text: str) -> None:
        """The note above the arrow's first leg (sender to proxy): red for a resend, muted for what was resent."""
        c = self.colours
        src = xs[0] if a.direction is Direction.C2S else xs[2]
        left, right = sorted((src, xs[1]))
        p.setPen(QPen(c.error if text.startswith("↻") else c.muted, 1))
        flags = (Qt.AlignmentFlag.AlignRight if a.direction is Direction.C2S else Qt.AlignmentFlag.AlignLeft)
        p.drawText(QRectF(left + 2, a.y_arrival - 13, right - left - 4, 12), flags | Qt.AlignmentFlag.AlignVCenter,
                   text if len(text) <= 60 else text[:59] + "…")

    def _draw_line(self, p: QPainter, a: Arrow, xs: list[float], now_y: float, *, selected: bool) -> None:
        c = self.colours
        colour = QColor(c.special if a.special else c.direction(a.direction))
        width = 1.3 + min(3.0, math.log2(a.count)) if a.count > 1 else 1.3
        if selected:
            width = 3.2
        src, dst = (xs[0], xs[2]) if a.direction is Direction.C2S else (xs[2], xs[0])
        px = xs[1]
        ya = a.y_arrival
        pen = QPen(colour, width)
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        p.setPen(pen)
        p.drawLine(QPointF(src, ya), QPointF(px, ya))
        if a.held:
            bar = QColor(c.held)
            p.setPen(_flat_pen(bar, 5 if not selected else 7))
            p.drawLine(QPointF(px, ya), QPointF(px, max(ya + 3, now_y)))
            p.setPen(QPen(c.held, 1))
            p.drawText(QPointF(px + 6, ya + 12), "HELD")
            return
        if a.gone or a.y_release is None:
            p.setPen(QPen(c.dropped, width, Qt.PenStyle.DashLine))
            mid = px + (dst - px) * 0.25
            p.drawLine(QPointF(px, ya), QPointF(mid, ya + 4))
            p.setPen(QPen(c.error, 2))
            p.drawLine(QPointF(mid - 4, ya), QPointF(mid + 4, ya + 8))
            p.drawLine(QPointF(mid - 4, ya + 8), QPointF(mid + 4, ya))
            return
        yr = a.y_release
        if (a.spike or a.hold) and yr - ya >= 2:  # a wait the user should notice: a bar on the proxy line
            p.setPen(_flat_pen(QColor(c.error if a.spike else c.held), 4))
            p.drawLine(QPointF(px, ya), QPointF(px, yr))
        p.setPen(pen)
        p.drawLine(QPointF(px, ya), QPointF(dst, yr))  # the slope is the delay sockscope added
        self._head(p, QPointF(px, ya), QPointF(dst, yr), colour)
        if a.count > 1 or a.spike:
            p.setPen(QPen(c.error if a.spike else colour, 1))
            label = (f"×{a.count}" if a.count > 1 else "") + (" spike" if a.spike else "")
            x = (px + dst) / 2
            p.drawText(QRectF(x - 40, (ya + yr) / 2 - 15, 80, 14), Qt.AlignmentFlag.AlignCenter, label.strip())

    @staticmethod
    def _head(p: QPainter, a: QPointF, b: QPointF, colour: QColor) -> None:
        dx, dy = b.x() - a.x(), b.y() - a.y()
        length = math.hypot(dx, dy) or 1.0
        ux, uy = dx / length, dy / length
        size = 7.0
        left = QPointF(b.x() - ux * size - uy * size * 0.5, b.y() - uy * size + ux * size * 0.5)
        right = QPointF(b.x() - ux * size + uy * size * 0.5, b.y() - uy * size - ux * size * 0.5)
        path = QPainterPath()
        path.addPolygon(QPolygonF([b, left, right]))
        p.fillPath(path, colour)

    # ------------------------------------------------------------------------------------------ mouse

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120.0
        if not steps:
            return
        y = event.position().y()
        anchor = self.y_to_time(y)
        factor = 0.8 ** steps
        self.ns_per_px = min(MAX_NS_PER_PX, max(MIN_NS_PER_PX, self.ns_per_px * factor))
        if self.follow:
            self.refresh()
        else:
            self.top_ns = int(anchor - (y - HEADER_PX) * self.ns_per_px)
            self.update()
        event.accept()

    def zoom(self, factor: float) -> None:
        """Multiply the time per pixel by ``factor`` (> 1 zooms out)."""
        self.ns_per_px = min(MAX_NS_PER_PX, max(MIN_NS_PER_PX, self.ns_per_px * factor))
        self.refresh()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._press = event.position()
            self._press_top = self.top_ns
            self._dragged = False

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._press is None:
            return
        dy = event.position().y() - self._press.y()
        if abs(dy) > 3 or self._dragged:
            self._dragged = True
            self.set_follow(False)
            self.top_ns = int(self._press_top - dy * self.ns_per_px)
            self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._press is not None and not self._dragged:
            row = self.row_at(event.position())
            if row is not None:
                self.row_clicked.emit(row)
        self._press = None

    def row_at(self, pos: QPointF) -> int | None:
        """The message whose arrow passes nearest ``pos`` (within a few pixels), if any."""
        xs = [self.lane_x(i) for i in range(3)]
        best, best_d = None, 7.0
        for a in self._arrows:
            if a.row < 0:
                continue
            src, dst = (xs[0], xs[2]) if a.direction is Direction.C2S else (xs[2], xs[0])
            yr = a.y_release if a.y_release is not None else a.y_arrival
            segs = ((src, a.y_arrival, xs[1], a.y_arrival), (xs[1], a.y_arrival, dst, yr))
            for x1, y1, x2, y2 in segs:
                d = _dist(pos.x(), pos.y(), x1, y1, x2, y2)
                if d < best_d:
                    best, best_d = a.row, d
        return best


def _flat_pen(colour: QColor, width: float) -> QPen:
    pen = QPen(colour, width)
    pen.setCapStyle(Qt.PenCapStyle.FlatCap)
    return pen


def _dist(px: float, py: float, x1: float, y1: float, x2: float, y2: float) -> float:
    dx, dy = x2 - x1, y2 - y1
    if dx == 0 and dy == 0:
        return math.hypot(px - x1, py - y1)
    t = max(0.0, min(1.0, ((px - x1) * dx + (py - y1) * dy) / (dx * dx + dy * dy)))
    return math.hypot(px - (x1 + t * dx), py - (y1 + t * dy))
