"""Decoded one-line summaries for the terminal printer of ``sockscope-proxy`` and ``sockscope run``.

Role: the ``sockscope.summarisers`` entry point (see pyproject.toml) names :func:`make_summariser`; the printer in
``proxy/printer.py`` loads it through that entry point (``proxy/`` never imports ``inspector``) and calls the
summariser it returns for each message's line: ``pickle Player(game) {'name': 'bob', 'x': 1.5}``,
``msgpack {'t': 'state', 'pos': [1, 2]}``, ``json {"type": "move"}``, ``struct x=1 y=2.5``. Plain text and bytes
no decoder recognises give None: the printer then shows them as text or hex, as it always has. So does a decode
that fails or gives up at its deadline.
Must not import: Qt. ``inspector.decode`` is imported by :func:`make_summariser`, not when this module is.
Thread: the terminal's writer thread (the printer makes and calls the summariser there, never on the relay's).
"""

from __future__ import annotations

from collections.abc import Callable

from proxy.model import Message

SUMMARY_LIMIT = 120
"""Longest summary on a terminal line (the line's head, time, connection and size, comes before it)."""
_AS_BEFORE = frozenset({"text", "hex"})
"""Decoders whose summary says no more than the printer's own text-or-hex preview."""


def make_summariser() -> Callable[[Message, int], str | None]:
    """The summariser the printer calls (see ``proxy.printer.Summariser``); imports the decoders and builds the
    default registry (its plugins included) now, so the first message does not wait for them."""
    from inspector.decode import decode_message, default_registry

    default_registry()

    def summarise(msg: Message, deadline_ns: int) -> str | None:
        view = decode_message(msg, detail=False, deadline_ns=deadline_ns)
        if view.error is not None or view.decoder in _AS_BEFORE or not view.summary:
            return None
        text = f"{view.decoder} {view.summary}"
        if len(text) > SUMMARY_LIMIT:
            text = text[: SUMMARY_LIMIT - 1] + "…"
        return text

    return summarise
