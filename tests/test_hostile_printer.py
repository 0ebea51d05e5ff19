"""Hostile messages on the terminal of ``sockscope-proxy`` and ``sockscope run`` (issue 20, item 6): the printer
decodes every message for its line, so a peer's bytes reach the decoders there too.

Each file of the decoder corpus (``tests/hostile/{pickle,msgpack,json,text}/``, built by
``tests/hostile_decoders_corpus.py``) is published as a message through a ``Printer`` with the inspector's
summariser: publishing returns at once (the decoding happens on the terminal's writer thread), every message gets
exactly one line of bounded length, the summariser is given the terminal's deadline, and a message it gave up on
is shown as text or hex. pytest-timeout is the backstop for a decode that would not stop.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from proxy.model import Clock, Direction, Message
from proxy.printer import PREVIEW, SUMMARY_DEADLINE_NS, SUMMARY_MAX_BYTES, Printer
from tests import hostile_decoders_corpus as corpus
from tests.conftest import IO_TIMEOUT

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent / "hostile"
FILES = sorted(name for name in corpus.CORPUS if not name.startswith("struct/"))  # struct ones are layouts
HEAD = 60
"""Longest line head: time, connection, direction, size (``12:00:00.000 #1 → c2s  65536 B  ``)."""


def test_every_hostile_message_is_one_bounded_line_made_off_the_publishers_thread() -> None:
    from inspector.summary import SUMMARY_LIMIT, make_summariser

    real = make_summariser()
    calls: list[tuple[str, int, int]] = []  # (thread, deadline - start, message id)

    def watched() -> Callable[[Message, int], str | None]:
        def summarise(m: Message, deadline_ns: int) -> str | None:
            calls.append((threading.current_thread().name, deadline_ns - time.monotonic_ns(), m.id))
            return real(m, deadline_ns)
        return summarise

    buf = io.StringIO()
    p = Printer(Clock.now(), buf, summariser=watched)
    sent = 0
    for i, name in enumerate(FILES):
        data = (ROOT / name).read_bytes()
        assert len(data) <= SUMMARY_MAX_BYTES, name
        p(Message(i + 1, 1, Direction.C2S, i, data, 0, 0))
        sent += 1
    assert p.terminal.flush(IO_TIMEOUT * 6)
    every = buf.getvalue().splitlines()
    lines = [x for x in every if not x.startswith("sockscope: ")]
    notes = [x for x in every if x.startswith("sockscope: ")]  # at most: decoding ran out of its share of time
    assert all("faster than the terminal can decode" in x for x in notes) and len(notes) <= 1, notes
    assert len(lines) == sent == len(FILES)  # one line each: no summary spans lines, none is lost
    assert all(len(x) <= HEAD + max(SUMMARY_LIMIT, PREVIEW + 2) for x in lines), max(map(len, lines))
    assert {t for t, _, _ in calls} == {"sockscope-terminal"}
    assert all(0 < left <= SUMMARY_DEADLINE_NS for _, left, _ in calls)
