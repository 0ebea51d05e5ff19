"""A read whose framing is costly per byte (JSON) is framed a slice per loop iteration, so other connections go on.

The JSON framer scans in Python: a hostile 1 MiB read of nested brackets costs it about 300 ms. Framed in one go
it would hold every other connection for that long; framed in slices of ``JsonFramer.slice_bytes``, another
connection's message that becomes readable meanwhile is relayed before the big read is finished.
"""

from __future__ import annotations

import fcntl
import socket
import sys
import termios
import threading
import time

import pytest

from proxy.framing import parse_framing
from proxy.model import Direction, Message, Record
from tests.conftest import Recorder, connect, recv_exact

ITEM = b"[[[0]]]\n"  # the JSON framer's costliest shape: one message per item


def _unsent(sock: object) -> int:
    buf = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")  # type: ignore[attr-defined]
    return int.from_bytes(buf, sys.byteorder)


@pytest.mark.skipif(sys.platform != "linux", reason="uses TIOCOUTQ to see the bytes reach the proxy's socket")
@pytest.mark.timeout(60)
def test_a_costly_read_does_not_hold_another_connection(start_proxy, recorder: Recorder, echo_server) -> None:
    p = start_proxy(echo_server.port, framing=parse_framing("json"))
    big, small = connect(p.port), connect(p.port)
    for s in (big, small):  # both relaying before the race is set up
        s.sendall(b"[1]")
        assert recv_exact(s, 3) == b"[1]"
    items = 6_000
    blob = ITEM * items  # 48 KB: fits a fresh socket's receive buffer, so the proxy reads it in one read

    # The ping is sent from the engine's thread when the first item of the big read is published: it becomes
    # readable while that read is being framed.
    sent = threading.Event()

    def trigger(r: Record) -> None:
        if not sent.is_set() and type(r) is Message and r.data == ITEM:
            sent.set()
            small.sendall(b'{"ping":1}')

    gate, blocked = threading.Event(), threading.Event()

    def hold() -> None:  # the engine waits while the whole blob lands in its socket's receive buffer
        blocked.set()
        gate.wait(10)

    p.call(p.server.subscribe, trigger)
    p.loop.call_soon_threadsafe(hold)
    assert blocked.wait(10)
    big.sendall(blob)
    deadline = time.monotonic() + 10
    while _unsent(big) and time.monotonic() < deadline:
        time.sleep(0.001)  # polling the kernel's queue, not synchronising with the proxy (it is blocked)
    assert _unsent(big) == 0, "the blob did not fit the proxy's receive buffer"
    gate.set()
    assert recv_exact(small, 10) == b'{"ping":1}'
    assert recv_exact(big, len(blob)) == blob

    def c2s(conn: int) -> list[Message]:
        return [r for r in recorder.of(Message) if r.conn_id == conn and r.direction is Direction.C2S]

    # Every message was published in the loop callback that wrote it, before its echo could come back.
    big_id, small_id = sorted({m.conn_id for m in recorder.of(Message)})
    ping = next(m for m in c2s(small_id) if m.data == b'{"ping":1}')
    before = sum(1 for m in c2s(big_id) if m.id < ping.id)
    print(f"ping relayed after {before} of {items + 1} messages of the other connection")
    # Framed in one go, the ping would wait for all 6,000 items of the read that was being framed.
    assert before < items
    assert b"".join(m.data for m in sorted(c2s(big_id), key=lambda m: m.seq)) == b"[1]" + blob
    big.close()
    small.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("end", ["fin", "close-after-echo"])
def test_a_sliced_read_keeps_its_bytes_in_order_up_to_the_end(start_proxy, recorder: Recorder, echo_server,
                                                              end: str) -> None:
    """The EOF (or the close) that follows a sliced read waits for the slices: every byte, in order, then the end."""
    from tests.conftest import recv_until_eof

    p = start_proxy(echo_server.port, framing=parse_framing("json"))
    s = connect(p.port)
    blob = b"".join(b'{"n": %d, "pad": "%s"}\n' % (i, b"x" * (i % 97)) for i in range(20_000))  # ~1.3 MB
    s.sendall(blob)
    if end == "fin":
        s.shutdown(socket.SHUT_WR)  # the proxy sees the EOF right behind the last slice
        assert recv_until_eof(s) == blob
    else:
        assert recv_exact(s, len(blob)) == blob
    s.close()
    msgs = sorted((r for r in recorder.of(Message) if r.direction is Direction.C2S), key=lambda m: m.seq)
    assert b"".join(m.data for m in msgs) == blob
    assert len(msgs) == 20_000
