"""One palette for the whole window: a colour per direction, for held, for injected/edited/replayed, dropped.

Role: the table, the connections list, the intercept panel and the timeline all take their colours from here,
so "blue means client→server" holds everywhere. Dark or light follows the application's palette (checked at start
and whenever Qt reports a palette change), which is the system's unless the user picked a look (View ▸ Look):
:func:`apply_look` sets Qt's Fusion style with a light or a dark palette, or gives the system's back.
Must not import: ``inspector.bridge``, ``proxy`` beyond ``proxy.model``.
Thread: GUI thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

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


LOOKS: Final = ("system", "light", "dark")
"""The looks a user can pick: the system's, or sockscope's own light or dark one."""

_system_look: tuple[str, QPalette] | None = None
"""The style and palette the application started with (what "system" gives back)."""


def _fusion_palette(dark: bool) -> QPalette:
    pal = QPalette()
    R = QPalette.ColorRole
    if dark:
        colours = {R.Window: "#2b2b2b", R.WindowText: "#e8e8e8", R.Base: "#1f1f1f", R.AlternateBase: "#282828",
                   R.ToolTipBase: "#3a3a3a", R.ToolTipText: "#f0f0f0", R.Text: "#e8e8e8", R.Button: "#383838",
                   R.ButtonText: "#e8e8e8", R.BrightText: "#ffffff", R.Link: "#6cb2ff", R.Highlight: "#2f65ca",
                   R.HighlightedText: "#ffffff", R.Light: "#505050", R.Midlight: "#444444", R.Mid: "#2f2f2f",
                   R.Dark: "#1a1a1a", R.Shadow: "#000000", R.PlaceholderText: "#9a9a9a"}
    else:
        colours = {R.Window: "#efefef", R.WindowText: "#1e1e1e", R.Base: "#ffffff", R.AlternateBase: "#f6f6f6",
                   R.ToolTipBase: "#ffffdc", R.ToolTipText: "#1e1e1e", R.Text: "#1e1e1e", R.Button: "#e8e8e8",
                   R.ButtonText: "#1e1e1e", R.BrightText: "#ffffff", R.Link: "#1f62c4", R.Highlight: "#3b78d8",
                   R.HighlightedText: "#ffffff", R.Light: "#ffffff", R.Midlight: "#f4f4f4", R.Mid: "#b8b8b8",
                   R.Dark: "#9f9f9f", R.Shadow: "#606060", R.PlaceholderText: "#7a7a7a"}
    for role, colour in colours.items():
        pal.setColor(role, QColor(colour))
    disabled = "#7a7a7a" if dark else "#a0a0a0"
    for role in (R.WindowText, R.Text, R.ButtonText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, QColor(disabled))
    pal.setColor(QPalette.ColorGroup.Disabled, R.Button, QColor("#303030" if dark else "#e0e0e0"))
    return pal


def apply_look(look: str) -> None:
    """Use ``look`` ("system", "light" or "dark") for the whole application; widgets get a PaletteChange."""
    global _system_look
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        return
    if look not in LOOKS:
        look = "system"
    if _system_look is None:
        _system_look = (app.style().name(), QPalette(app.palette()))
    if look == "system":
        name, pal = _system_look
        if app.style().name() != name:
            app.setStyle(name)
        app.setPalette(pal)
        return
    if app.style().name().lower() != "fusion":
        app.setStyle("Fusion")  # draws every control from the palette, so the dark look is dark everywhere
    app.setPalette(_fusion_palette(look == "dark"))
