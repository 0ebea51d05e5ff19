"""One palette for the whole window: a colour per direction, for held, for injected/edited/replayed, dropped.

Role: the table, the connections list, the intercept panel and the timeline all take their colours from here,
so "blue means client→server" holds everywhere. Dark or light follows the system palette (checked at start
and whenever Qt reports a palette change).
Must not import: ``inspector.bridge``, ``proxy`` beyond ``proxy.model``.
Thread: GUI thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QColor, QGuiApplication, QPalette

from proxy.model import Direction


@dataclass(frozen=True)
class Colours:
    dark: bool
    c2s: QColor
    """Text colour for client→server (arrows, counters, plot lines)."""
    s2c: QColor
    c2s_bg: QColor
    s2c_bg: QColor
    held: QColor
    held_bg: QColor
    special: QColor
    """Injected, edited, replayed."""
    special_bg: QColor
    dropped: QColor
    error: QColor
    muted: QColor

    def direction(self, d: Direction) -> QColor:
        return self.c2s if d is Direction.C2S else self.s2c

    def direction_bg(self, d: Direction) -> QColor:
        return self.c2s_bg if d is Direction.C2S else self.s2c_bg

    def css(self, colour: QColor) -> str:
        return colour.name()


LIGHT = Colours(
    dark=False,
    c2s=QColor("#1f62c4"), s2c=QColor("#1d7d35"),
    c2s_bg=QColor("#eef4fc"), s2c_bg=QColor("#eef8f0"),
    held=QColor("#b35c00"), held_bg=QColor("#ffe7b8"),
    special=QColor("#7a3db8"), special_bg=QColor("#f3eafc"),
    dropped=QColor("#8a8a8a"), error=QColor("#c62828"), muted=QColor("#6b6b6b"),
)

DARK = Colours(
    dark=True,
    c2s=QColor("#6cb2ff"), s2c=QColor("#74d68a"),
    c2s_bg=QColor("#1b2633"), s2c_bg=QColor("#1b2c21"),
    held=QColor("#ffb74d"), held_bg=QColor("#4a3510"),
    special=QColor("#c79bff"), special_bg=QColor("#2f2540"),
    dropped=QColor("#8d8d8d"), error=QColor("#ff6b6b"), muted=QColor("#a0a0a0"),
)


def system_is_dark() -> bool:
    app = QGuiApplication.instance()
    if app is None:
        return False
    pal = QGuiApplication.palette()
    return pal.color(QPalette.ColorRole.Window).lightness() < 128


def current() -> Colours:
    return DARK if system_is_dark() else LIGHT
