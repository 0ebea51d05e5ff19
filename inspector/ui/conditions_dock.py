"""The conditions panel: what shapes traffic, per direction, live: latency, jitter, bandwidth, loss, spikes, freeze.

Role: edits a ``proxy.conditions.Conditions`` (c2s and s2c columns) and sends it to the engine with
``set_conditions`` a moment after the last change (sliders do not flood the engine). Presets show their source
and date. One-shot actions (spike now, drop next, freeze/thaw) and connection actions (close, reset) are buttons.
The read-out says what the user will feel ("added round trip ≈ N ms") and that on TCP loss shows up as delay.
When the proxy relays UDP (:meth:`ConditionsPanel.set_udp`) the datagram impairments appear, each row named with
its model in the tooltip (docs/udp.md): duplicate, reorder, corrupt, MTU, and behind "More…" Gilbert-Elliott
bursty loss (netem's ``gemodel``), the reorder gap, the copy's delay and the MTU's action; loss goes to 100 %
(sent as a burst model whose both states lose everything: ``loss_pct`` must stay below 100, since on TCP that would
be a stalled connection). They travel in the same ``set_conditions`` as everything else.
Must not import: ``inspector.bridge`` (the window passes a ``send`` callable).
Thread: GUI thread.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import (
    QBoxLayout,
    QComboBox,
    QDoubleSpinBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from inspector.ui import palette
from proxy.conditions import Conditions, DirectionConditions, GilbertElliott, Jitter, format_bandwidth
from proxy.model import Direction
from proxy.presets import PRESETS

LATENCY_MAX = 5000
"""The latency slider's end (the box beside it goes to 60 s)."""
JITTER_MAX = 1000
VALUE_MAX = 60_000
STACK_BELOW_PX = 150
"""A slider and its box narrower than this stack (slider above the box)."""
SCALE: Final = ((0, 100, 1), (100, 300, 5), (300, 1000, 25), (1000, 3000, 100), (3000, VALUE_MAX, 500))
"""The sliders' steps (from, to, step in ms): every millisecond up to 100 ms, then coarser, so the range a game
feels (0-300 ms) takes most of the slider and a careless drag does not jump to seconds."""
SPIKE_MS = 800
SPIKE_S = 2.0
ALL_LOST: Final = GilbertElliott(p_pct=0.0, r_pct=100.0, bad_loss_pct=100.0, good_loss_pct=100.0)
"""What the panel sends for 100 % loss on UDP: both states of the burst model lose every datagram."""
MTU_MAX = 65535
BANDWIDTHS: tuple[tuple[str, float | None], ...] = (
    ("unlimited", None), ("1 MB/s", 1_000_000), ("256 KB/s", 256_000), ("64 KB/s", 64_000),
    ("16 KB/s", 16_000), ("4 KB/s", 4_000), ("1 KB/s", 1_000),
)


def scale_steps(maximum: int) -> tuple[int, ...]:
    """The milliseconds of each slider position, 0 to ``maximum`` (see :data:`SCALE`)."""
    out: list[int] = []
    for lo, hi, step in SCALE:
        out += range(lo, min(hi, maximum), step)
        if hi >= maximum:
            break
    out.append(maximum)
    return tuple(out)


class _SliderSpin(QWidget):
    """A slider on a stepped scale (fine near 0, coarse in seconds) and a box for an exact value, bound together.

    The slider moves by one step with the arrow keys and ten with Page Up/Down; the box takes a typed value (applied
    on Enter or when it loses focus) and goes further than the slider."""

    changed = Signal()

    def __init__(self, maximum: int, suffix: str, tooltip: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.steps = scale_steps(maximum)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, len(self.steps) - 1)
        self.slider.setSingleStep(1)
        self.slider.setPageStep(10)
        self.slider.setMinimumWidth(32)
        self.slider.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.slider.setToolTip(f"{tooltip}\ndrag; or click it and use ← → for 1 ms steps near 0 (Page Up/Down for "
                               "bigger ones); or type the exact value in the box")
        self.spin = QSpinBox()
        self.spin.setRange(0, VALUE_MAX)
        self.spin.setSuffix(suffix)
        self.spin.setToolTip(f"{tooltip}\ntype a value and press Enter")
        self.spin.setKeyboardTracking(False)
        self.spin.setStepType(QSpinBox.StepType.AdaptiveDecimalStepType)
        self.spin.setAccelerated(True)
        # room for "9999 ms" but no more: two columns of these must fit a narrow window's panel
        self.spin.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.spin.setMinimumWidth(self.spin.fontMetrics().horizontalAdvance("9999 ms") + 24)
        self.slider.valueChanged.connect(self._from_slider)
        self.spin.valueChanged.connect(self._from_spin)
        self._lay = QBoxLayout(QBoxLayout.Direction.LeftToRight, self)
        self._lay.setContentsMargins(0, 0, 0, 0)
        self._lay.setSpacing(4)
        self._lay.addWidget(self.slider, 1)
        self._lay.addWidget(self.spin)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        # narrow (a small window's panel): the slider above the box, each the full width, so it can be dragged
        direction = (QBoxLayout.Direction.TopToBottom if self.width() < STACK_BELOW_PX
                     else QBoxLayout.Direction.LeftToRight)
        if self._lay.direction() != direction:
            self._lay.setDirection(direction)

    def position_of(self, ms: float) -> int:
        """The slider position closest to ``ms`` (the end for anything past it)."""
        i = bisect_left(self.steps, ms)
        if i >= len(self.steps):
            return len(self.steps) - 1
        if i > 0 and ms - self.steps[i - 1] < self.steps[i] - ms:
            return i - 1
        return i

    def _from_slider(self, pos: int) -> None:
        ms = self.steps[pos]
        if self.spin.value() != ms and not (pos == self.slider.maximum() and self.spin.value() > ms):
            self.spin.setValue(ms)

    def _from_spin(self, v: int) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(self.position_of(v))
        self.slider.blockSignals(False)
        self.changed.emit()

    def value(self) -> int:
        return self.spin.value()

    def set_value(self, v: float) -> None:
        self.spin.blockSignals(True)
        self.slider.blockSignals(True)
        self.spin.setValue(round(v))
        self.slider.setValue(self.position_of(round(v)))
        self.spin.blockSignals(False)
        self.slider.blockSignals(False)


def _percent(tooltip: str) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(0, 100)
    box.setDecimals(1)
    box.setSuffix(" %")
    box.setKeyboardTracking(False)
    box.setToolTip(tooltip)
    return box


def _spin(lo: int, hi: int, suffix: str, tooltip: str) -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setSuffix(suffix)
    box.setKeyboardTracking(False)
    box.setToolTip(tooltip)
    return box


class _DirectionColumn:
    """The editors of one direction."""

    def __init__(self, direction: Direction, on_change: Callable[[], None]) -> None:
        self.direction = direction
        self.latency = _SliderSpin(LATENCY_MAX, " ms", f"one-way latency added to every {direction.label} message")
        self.jitter = _SliderSpin(JITTER_MAX, " ms", "random extra delay (mean); never reorders TCP")
        self.distribution = QComboBox()
        self.distribution.addItems(["uniform", "normal", "exponential"])
        self.distribution.setToolTip("shape of the jitter: uniform 0..2J, normal around J, exponential long tail")
        self.bandwidth = QComboBox()
        for label, _ in BANDWIDTHS:
            self.bandwidth.addItem(label)
        self.bandwidth.setToolTip("link rate in bytes per second (serialisation delay per message)")
        self.loss = QDoubleSpinBox()
        self.loss.setRange(0, 99)
        self.loss.setDecimals(1)
        self.loss.setSuffix(" %")
        self.loss.setKeyboardTracking(False)
        self.loss.setToolTip("packet loss as a network has it; on TCP each lost packet is retransmitted, "
                             "so it shows up as delay (and holds back what follows)")
        self.freeze = QPushButton("Freeze")
        self.freeze.setCheckable(True)
        self.freeze.setToolTip(f"hold every {direction.label} message until thawed")
        self.spike = QPushButton("Spike now")
        self.spike.setToolTip(f"add {SPIKE_MS} ms to {direction.label} messages for the next {SPIKE_S:g} s")
        self.drop_next = QPushButton("Drop next")
        self.drop_next.setToolTip(f"drop the next {direction.label} message (an application-level fault)")
        # UDP: shown when the proxy relays datagrams (ConditionsPanel.set_udp)
        where = f"{direction.label} datagrams"
        self.duplicate = _percent(f"duplicate (netem's duplicate): this share of {where} is sent twice; the copy "
                                  "is a row of its own, origin duplicate")
        self.duplicate_ms = _spin(0, 10_000, " ms", "the copy's delay after the original (0: right after it)")
        self.reorder = _percent(f"reorder (netem's reorder): after gap − 1 delayed {where}, each one skips latency "
                                "and jitter with this probability and overtakes those before it; it needs latency "
                                "to have any effect (its row says sent ahead)")
        self.reorder_gap = _spin(1, 1000, "", "reorder gap (netem's gap): at least gap − 1 delayed datagrams lie "
                                 "between two that are sent ahead")
        self.corrupt = _percent(f"corrupt (netem's corrupt): one random bit flipped in this share of {where}; the "
                                "row says corrupted and the detail pane shows which bit, marked in the hex")
        self.mtu = _spin(0, MTU_MAX, " B", f"MTU: {where} larger than this many bytes are dropped or cut (as "
                         "chosen below), as a path with a smaller MTU does; off: no limit")
        self.mtu.setSpecialValueText("off")
        self.mtu_action = QComboBox()
        self.mtu_action.addItems(["drop", "truncate"])
        self.mtu_action.setToolTip("what happens to a datagram larger than the MTU: dropped whole (what a network "
                                   "does) or cut to the MTU")
        ge = "Gilbert-Elliott burst loss (netem's loss gemodel p r 1-h 1-k): the channel is good or bad"
        self.ge_p = _percent(f"{ge}; p: the chance, after each datagram, that a good channel turns bad")
        self.ge_r = _percent(f"{ge}; r: the chance, after each datagram, that a bad channel turns good (bursts "
                             "last 100/r datagrams on average)")
        self.ge_bad = _percent(f"{ge}; 1-h: the share of datagrams lost while the channel is bad")
        self.ge_good = _percent(f"{ge}; 1-k: the share of datagrams lost while the channel is good")
        self.ge_r.setValue(25.0)
        self.ge_bad.setValue(100.0)
        self.udp_widgets: list[QWidget] = [self.duplicate, self.duplicate_ms, self.reorder, self.reorder_gap,
                                           self.corrupt, self.mtu, self.mtu_action, self.ge_p, self.ge_r,
                                           self.ge_bad, self.ge_good]
        self.udp = False
        self.extra: DirectionConditions = DirectionConditions()
        """Fields the panel has no editor for (spikes, rto, bandwidth burst and queue ...), kept from presets."""
        for w in (self.latency, self.jitter):
            w.changed.connect(on_change)
        self.distribution.currentIndexChanged.connect(lambda _i: on_change())
        self.bandwidth.currentIndexChanged.connect(lambda _i: on_change())
        self.loss.valueChanged.connect(lambda _v: on_change())
        self.freeze.toggled.connect(lambda _b: on_change())
        for u in self.udp_widgets:
            if isinstance(u, QComboBox):
                u.currentIndexChanged.connect(lambda _i: on_change())
            else:
                u.valueChanged.connect(lambda _v: on_change())  # type: ignore[attr-defined]

    def set_udp(self, on: bool) -> None:
        """Loss goes to 100 % on UDP (a datagram can be lost; a TCP stream with 100 % loss is a freeze)."""
        self.udp = on
        self.loss.blockSignals(True)
        self.loss.setMaximum(100 if on else 99)
        self.loss.blockSignals(False)
        self.loss.setToolTip(
            "UDP: each datagram is lost with this probability, independently of the others (Bernoulli loss; "
            "its row says dropped, and why); TCP: each lost packet is retransmitted, so it shows up as delay"
            if on else "packet loss as a network has it; on TCP each lost packet is retransmitted, so it shows up "
            "as delay (and holds back what follows)")

    def burst_loss(self) -> GilbertElliott | None:
        p, k = self.ge_p.value(), self.ge_good.value()
        if p == 0 and k == 0:
            return None  # never leaves the good state, which loses nothing: no model
        return GilbertElliott(p, self.ge_r.value(), self.ge_bad.value(), k)

    def value(self) -> DirectionConditions:
        bw = BANDWIDTHS[self.bandwidth.currentIndex()][1] if self.bandwidth.currentIndex() < len(BANDWIDTHS) \
            else self.bandwidth.currentData()
        loss = float(self.loss.value())
        burst = self.burst_loss()
        if loss >= 100:
            loss, burst = 0.0, ALL_LOST
        return replace(self.extra, latency_ms=float(self.latency.value()),
                       jitter=Jitter(float(self.jitter.value()), self.distribution.currentText()),  # type: ignore[arg-type]
                       bandwidth_bps=bw, loss_pct=loss, frozen=self.freeze.isChecked(),
                       drop_next=0, duplicate_fraction=self.duplicate.value() / 100,
                       duplicate_delay_ms=float(self.duplicate_ms.value()), reorder_pct=self.reorder.value(),
                       reorder_gap=self.reorder_gap.value(), corrupt_pct=self.corrupt.value(),
                       mtu=self.mtu.value() or None, mtu_action=self.mtu_action.currentText(), burst_loss=burst)

    def set_value(self, c: DirectionConditions) -> None:
        widgets: list[Any] = [self.distribution, self.bandwidth, self.loss, self.freeze, *self.udp_widgets]
        for w in widgets:
            w.blockSignals(True)
        self.latency.set_value(c.latency_ms)
        self.jitter.set_value(c.jitter.ms)
        self.distribution.setCurrentText(c.jitter.distribution)
        i = next((k for k, (_, v) in enumerate(BANDWIDTHS) if v == c.bandwidth_bps), None)
        if i is None:
            label = format_bandwidth(c.bandwidth_bps)
            i = self.bandwidth.findText(label)
            if i < 0:
                self.bandwidth.addItem(label, c.bandwidth_bps)
                i = self.bandwidth.count() - 1
        self.bandwidth.setCurrentIndex(i)
        burst = c.burst_loss
        if burst == ALL_LOST:
            self.loss.setMaximum(100)
            self.loss.setValue(100)
            burst = None
        else:
            self.loss.setValue(c.loss_pct)
        self.ge_p.setValue(0.0 if burst is None else burst.p_pct)
        self.ge_r.setValue(25.0 if burst is None else burst.r * 100)
        self.ge_bad.setValue(100.0 if burst is None else burst.bad_loss_pct)
        self.ge_good.setValue(0.0 if burst is None else burst.good_loss_pct)
        self.duplicate.setValue(c.duplicate_fraction * 100)
        self.duplicate_ms.setValue(round(c.duplicate_delay_ms))
        self.reorder.setValue(c.reorder_pct)
        self.reorder_gap.setValue(c.reorder_gap)
        self.corrupt.setValue(c.corrupt_pct)
        self.mtu.setValue(c.mtu or 0)
        self.mtu_action.setCurrentText(c.mtu_action)
        self.freeze.setChecked(c.frozen)
        self.freeze.setText("Thaw" if c.frozen else "Freeze")
        self.extra = replace(c, drop_next=0)
        for w in widgets:
            w.blockSignals(False)


class ConditionsPanel(QWidget):
    """Emits nothing itself: calls ``send(command, **args)`` (the window routes it to the link)."""

    def __init__(self, send: Callable[..., Any], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.send = send
        self.conditions = Conditions()
        self.cols = {d: _DirectionColumn(d, self._changed) for d in Direction}
        self._apply_timer = QTimer(self)
        self._apply_timer.setSingleShot(True)
        self._apply_timer.setInterval(150)
        self._apply_timer.timeout.connect(self.apply)
        colours = palette.current()

        self.preset = QComboBox()
        self.preset.addItem("(custom)")
        self.preset.addItem("pass through")
        for name in PRESETS:
            self.preset.addItem(name)
        self.preset.setToolTip("network presets, each with its source and date")
        self.preset.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.preset.setMinimumContentsLength(14)
        self.preset.activated.connect(self._preset_chosen)
        self.preset_source = QLabel()
        self.preset_source.setWordWrap(True)

        grid = QGridLayout()
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(4)
        self.head_c2s = QLabel()
        self.head_s2c = QLabel()
        for head in (self.head_c2s, self.head_s2c):
            head.setWordWrap(True)  # in a narrow panel "client→server" goes under "c2s ↑"
        grid.addWidget(self.head_c2s, 0, 1)
        grid.addWidget(self.head_s2c, 0, 2)
        rows: list[tuple[str, str, str]] = [
            ("latency", "latency", "one-way delay added to every message"),
            ("jitter", "jitter", "random extra delay on top of the latency"),
            ("jitter shape", "distribution", "how the jitter is spread"),
            ("bandwidth", "bandwidth", "link rate: big messages take longer"),
            ("loss", "loss", "lost packets; on TCP they are resent, so loss is felt as delay"),
            ("freeze", "freeze", "hold everything in that direction until thawed"),
        ]
        for r, (label, attr, tip) in enumerate(rows, start=1):
            row_label = QLabel(label)
            row_label.setToolTip(tip)
            grid.addWidget(row_label, r, 0)
            for c, d in enumerate(Direction, start=1):
                grid.addWidget(getattr(self.cols[d], attr), r, c)
        r = len(rows) + 1
        # UDP datagrams only: shown by set_udp; the burst-loss rows also wait for "Burst loss…"
        self.udp_head = QLabel()
        self.udp_head.setWordWrap(True)
        grid.addWidget(self.udp_head, r, 0, 1, 3)
        r += 1
        udp_rows: list[tuple[str, str, str]] = [
            ("duplicate", "duplicate", "datagrams sent twice (netem's duplicate)"),
            ("reorder", "reorder", "datagrams that skip the delay and overtake (netem's reorder); needs latency"),
            ("corrupt", "corrupt", "one bit flipped in this share of datagrams (netem's corrupt)"),
            ("MTU", "mtu", "the largest datagram that passes (bigger ones are dropped, or cut: see More…)"),
        ]
        self.burst_button = QPushButton("More: burst loss (Gilbert-Elliott) …")
        self.burst_button.setCheckable(True)
        self.burst_button.setToolTip("advanced: bursty loss with the Gilbert-Elliott model (netem's loss gemodel "
                                     "p r 1-h 1-k, on top of the loss above; docs/udp.md), the reorder gap, the "
                                     "duplicate's delay and what happens above the MTU")
        self.burst_button.toggled.connect(self._show_burst)
        burst_rows: list[tuple[str, str, str]] = [
            ("p good→bad", "ge_p", "Gilbert-Elliott: after each datagram, the chance that a good channel turns bad"),
            ("r bad→good", "ge_r", "Gilbert-Elliott: after each datagram, the chance that a bad channel turns good"),
            ("1-h loss bad", "ge_bad", "Gilbert-Elliott: share lost while the channel is bad"),
            ("1-k loss good", "ge_good", "Gilbert-Elliott: share lost while the channel is good"),
            ("reorder gap", "reorder_gap", "at least gap − 1 delayed datagrams between two sent ahead"),
            ("copy after", "duplicate_ms", "how long after the original a duplicate's copy leaves"),
            ("above MTU", "mtu_action", "drop a bigger datagram, or cut it to the MTU"),
        ]
        self.udp_rows: list[QWidget] = [self.udp_head, self.burst_button]
        self.burst_rows: list[QWidget] = []
        for group, target in ((udp_rows, self.udp_rows), (burst_rows, self.burst_rows)):
            if group is burst_rows:
                grid.addWidget(self.burst_button, r, 0, 1, 3)
                r += 1
            for label, attr, tip in group:
                row_label = QLabel(label)
                row_label.setToolTip(tip)
                grid.addWidget(row_label, r, 0)
                target.append(row_label)
                for c, d in enumerate(Direction, start=1):
                    w = getattr(self.cols[d], attr)
                    grid.addWidget(w, r, c)
                    target.append(w)
                r += 1
        once = QLabel("once")
        once.setToolTip("one-shot faults: a latency spike now, or drop the next message")
        grid.addWidget(once, r, 0)
        for c, d in enumerate(Direction, start=1):
            grid.addWidget(self.cols[d].spike, r, c)
            grid.addWidget(self.cols[d].drop_next, r + 1, c)
            self.cols[d].spike.clicked.connect(lambda _=False, dd=d: self.spike_now(dd))
            self.cols[d].drop_next.clicked.connect(lambda _=False, dd=d: self.drop_next(dd))
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(2, 1)

        self.readout = QLabel()
        self.readout.setWordWrap(True)  # a long read-out (a preset's losses) wraps; it never widens the panel
        self.readout.setStyleSheet("font-size: 15px; font-weight: bold")
        self.note = QLabel("On TCP nothing is lost: a lost packet is sent again, so loss shows up as "
                           "<i>delay</i> (and holds back what follows).")
        self.note.setWordWrap(True)
        self.preset_source.hide()
        self.udp = False
        for w in (*self.udp_rows, *self.burst_rows):
            w.hide()

        self.close_button = QPushButton("Close (FIN)")
        self.close_button.setToolTip("close the selected connection cleanly (both sides see FIN)")
        self.reset_button = QPushButton("Reset (RST)")
        self.reset_button.setToolTip("reset the selected connection (both sides see a connection reset)")
        self.clear_button = QPushButton("Pass through")
        self.clear_button.setToolTip("remove every condition")
        self.clear_button.clicked.connect(self.clear)
        conn_row = QHBoxLayout()
        conn_row.addWidget(self.clear_button)
        conn_row.addStretch(1)
        conn_row2 = QHBoxLayout()
        conn_row2.addWidget(QLabel("selected connection:"))
        conn_row2.addStretch(1)
        conn_row2.addWidget(self.close_button)
        conn_row2.addWidget(self.reset_button)

        preset_row = QHBoxLayout()
        preset_row.addWidget(QLabel("Preset"))
        preset_row.addWidget(self.preset, 1)
        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addLayout(preset_row)
        lay.addWidget(self.preset_source)
        lay.addLayout(grid)
        lay.addWidget(line)
        lay.addWidget(self.readout)
        lay.addWidget(self.note)
        lay.addLayout(conn_row)
        lay.addLayout(conn_row2)
        lay.addStretch(1)
        self.set_colours(colours)

    def set_colours(self, colours: palette.Colours) -> None:
        """The look changed (light or dark): the colours that are not the palette's own."""
        self.head_c2s.setText(f"<b style='color:{colours.c2s.name()}'>c2s ↑</b> client→server")
        self.head_s2c.setText(f"<b style='color:{colours.s2c.name()}'>s2c ↓</b> server→client")
        self.preset_source.setStyleSheet(f"color: {colours.muted.name()}; font-size: small")
        self.note.setStyleSheet(f"color: {colours.muted.name()}")
        self.udp_head.setText(f"<b>UDP datagrams</b> <span style='color:{colours.muted.name()}'>(TCP ignores "
                              "these)</span>")
        self._update_readout()

    def set_udp(self, on: bool) -> None:
        """Show the datagram impairments (the proxy relays UDP) or hide them (TCP only)."""
        self.udp = on
        for d in Direction:
            self.cols[d].set_udp(on)
        for w in self.udp_rows:
            w.setVisible(on)
        self._show_burst(on and self.burst_button.isChecked())
        self.note.setText(
            "On UDP loss is real: a lost datagram never arrives (its row says dropped, and why). On TCP nothing "
            "is lost: a lost packet is sent again, so loss shows up as <i>delay</i>." if on else
            "On TCP nothing is lost: a lost packet is sent again, so loss shows up as <i>delay</i> (and holds "
            "back what follows).")
        self._update_readout()

    def _show_burst(self, on: bool) -> None:
        for w in self.burst_rows:
            w.setVisible(on and self.udp)
        self.burst_button.setText("Less ▴" if on else "More: burst loss (Gilbert-Elliott) …")
    # ---------------------------------------------------------------------------------------------------

    def value(self) -> Conditions:
        return Conditions(c2s=self.cols[Direction.C2S].value(), s2c=self.cols[Direction.S2C].value())

    @property
    def change_pending(self) -> bool:
        """Whether an edit waits to be sent (edits are sent once they have settled for a moment)."""
        return self._apply_timer.isActive()

    def set_conditions(self, c: Conditions, *, send: bool = False) -> None:
        for d in Direction:
            self.cols[d].set_value(c.for_direction(d))
        self.conditions = c
        self._update_readout()
        if send:
            self.apply()

    def show_conditions(self, c: Conditions) -> None:
        """Show conditions in force elsewhere (the proxy's), naming the preset they are, if any; sends nothing."""
        self.set_conditions(c)
        name = next((n for n, p in PRESETS.items() if p.conditions == c), None)
        if name is not None:
            self.preset.setCurrentIndex(self.preset.findText(name))
            self._show_source(name)
        elif c.is_passthrough:
            self.preset.setCurrentIndex(1)
            self._set_source("")
        else:
            self.preset.setCurrentIndex(0)
            self._set_source("")

    def _changed(self) -> None:
        self.preset.setCurrentIndex(0)
        self._set_source("")
        for d in Direction:
            self.cols[d].freeze.setText("Thaw" if self.cols[d].freeze.isChecked() else "Freeze")
        self._update_readout()
        self._apply_timer.start()

    def _preset_chosen(self, index: int) -> None:
        if index == 0:
            return
        if index == 1:
            self._set_source("")
            self.set_conditions(Conditions(), send=True)
            return
        name = self.preset.itemText(index)
        self.set_conditions(PRESETS[name].conditions, send=True)
        self.preset.setCurrentIndex(index)
        self._show_source(name)

    def _show_source(self, name: str) -> None:
        p = PRESETS[name]
        # short in the panel (it must not push the controls out of view), the rest in the tooltip
        self._set_source(f"{p.description}. Source: {p.family}, {p.source_date} (details: hover here).")
        self.preset_source.setToolTip(f"{p.description}. Source: {p.family}, {p.source_date}; values "
                                      f"{p.source_values}." + (f" {p.notes}" if p.notes else "") + f"\n{p.source}")

    def _set_source(self, text: str) -> None:
        self.preset_source.setText(text)
        self.preset_source.setVisible(bool(text))

    def select_preset(self, name: str) -> None:
        i = self.preset.findText(name)
        if i >= 0:
            self.preset.setCurrentIndex(i)
            self._preset_chosen(i)

    def clear(self) -> None:
        self.preset.setCurrentIndex(1)
        self._preset_chosen(1)

    def apply(self) -> None:
        self._apply_timer.stop()
        self.conditions = self.value()
        self._update_readout()
        self.send("set_conditions", conditions=self.conditions.to_dict())

    def spike_now(self, d: Direction) -> None:
        self.send("spike", direction=d.label, add_ms=float(SPIKE_MS), for_s=SPIKE_S)

    def drop_next(self, d: Direction) -> None:
        c = self.value()
        dc = c.for_direction(d)
        self.send("set_conditions", conditions=c.replace_direction(d, replace(dc, drop_next=dc.drop_next + 1))
                  .to_dict())

    def added_rtt_ms(self) -> float:
        c = self.value()
        return sum(dc.latency_ms + dc.jitter.mean_ms for dc in (c.c2s, c.s2c))

    def _update_readout(self) -> None:
        c = self.value()
        rtt = self.added_rtt_ms()
        extra = []
        for d in Direction:
            dc = c.for_direction(d)
            if dc.frozen:
                extra.append(f"{d.label} FROZEN")
            if dc.bandwidth_bps is not None:
                extra.append(f"{d.label} {format_bandwidth(dc.bandwidth_bps)}")
            lost = 100.0 if dc.burst_loss == ALL_LOST else dc.loss_pct
            if lost:
                extra.append(f"{d.label} loss {lost:g} %" + ("" if self.udp else " → delay"))
            if self.udp:
                if dc.burst_loss is not None and dc.burst_loss != ALL_LOST:
                    extra.append(f"{d.label} bursts ≈{dc.burst_loss.mean_loss_pct:.2g} %")
                for name, v in (("dup", dc.duplicate_fraction * 100), ("reorder", dc.reorder_pct),
                                ("corrupt", dc.corrupt_pct)):
                    if v:
                        extra.append(f"{d.label} {name} {v:g} %")
                if dc.mtu is not None:
                    extra.append(f"{d.label} MTU {dc.mtu}")
        self.readout.setText(f"added round trip ≈ {rtt:.0f} ms" + (" · " + " · ".join(extra) if extra else ""))
        colours = palette.current()
        frozen = any(c.for_direction(d).frozen for d in Direction)
        self.readout.setStyleSheet("font-size: 15px; font-weight: bold"
                                   + (f"; color: {colours.held.name()}" if frozen else ""))

    def summary(self) -> str:
        """One line for the status bar: everything that shapes traffic now."""
        c = self.conditions
        if c.is_passthrough:
            return "no conditions"
        return f"+{self.added_rtt_ms():.0f} ms RTT" + (" · FROZEN" if any(
            c.for_direction(d).frozen for d in Direction) else "")
