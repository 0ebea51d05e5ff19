"""The window on a real ENet game: a pyenet server and client through the engine the window runs (``ThreadLink``,
over the control protocol), the rows showing each datagram's channel and reliability, the filter bar selecting by
them, a fragmented message whole on its last datagram, and the timeline's reliable round trips per channel.

Both pyenet hosts are serviced from the test's thread inside ``qtbot.waitUntil`` (their own event loop: a host's
``service`` waits on its socket for a millisecond), so the window keeps processing its events meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import enet  # pyenet, in the test extra
import pytest
from PySide6.QtCore import QSettings

from inspector.bridge import LinkOptions, ThreadLink
from inspector.ui.main_window import MainWindow
from inspector.ui.message_model import Column
from tests.test_ui_window import WAIT, wait_link


class Hosts:
    """A pyenet server and a client whose peer connects to ``port`` (the proxy)."""

    def __init__(self) -> None:
        self.server = enet.Host(enet.Address(b"127.0.0.1", 0), 4, 4, 0, 0)
        self.client: Any = None
        self.peer: Any = None
        self.connected = False
        self.got: list[tuple[int, bytes]] = []

    def connect(self, port: int) -> None:
        self.client = enet.Host(None, 1, 4, 0, 0)
        self.peer = self.client.connect(enet.Address(b"127.0.0.1", port), 4, 0)

    def step(self) -> bool:
        for host in (self.server, self.client):
            ev = host.service(1)
            while ev is not None and ev.type != enet.EVENT_TYPE_NONE:
                if ev.type == enet.EVENT_TYPE_CONNECT and host is self.client:
                    self.connected = True
                elif ev.type == enet.EVENT_TYPE_RECEIVE and host is self.server:
                    self.got.append((ev.channelID, ev.packet.data))
                ev = host.check_events()
        return True


@pytest.fixture
def window(qtbot: Any, tmp_path: Any) -> Iterator[Callable[[int], MainWindow]]:
    made: list[MainWindow] = []
    settings = QSettings(str(tmp_path / "sockscope.ini"), QSettings.Format.IniFormat)

    def make(target_port: int) -> MainWindow:
        w = MainWindow(LinkOptions(listen=("127.0.0.1", 0), target=("127.0.0.1", target_port), tcp=False, udp=True),
                       settings=settings, link_factory=ThreadLink)
        qtbot.addWidget(w)
        w.show()
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop_link()


def summaries(w: MainWindow) -> list[str]:
    return [str(w.model.data(w.model.index(i, Column.SUMMARY))) for i in range(w.model.rowCount())]


@pytest.mark.timeout(90)
def test_enet_rows_show_channel_and_reliability_and_filter_by_them(
        qtbot: Any, window: Callable[[int], MainWindow]) -> None:
    hosts = Hosts()
    w = window(hosts.server.address.port)
    link = wait_link(qtbot, w)
    assert link.listen_addr is not None
    hosts.connect(link.listen_addr[1])
    qtbot.waitUntil(lambda: hosts.step() and hosts.connected, timeout=WAIT)
    big = b'{"level": "' + b"#" * 4000 + b'"}'
    hosts.peer.send(0, enet.Packet(b'{"t": "chat", "text": "gg"}', enet.PACKET_FLAG_RELIABLE))
    hosts.peer.send(1, enet.Packet(b'{"t": "pos", "x": 3}', 0))
    hosts.peer.send(2, enet.Packet(big, enet.PACKET_FLAG_RELIABLE))
    qtbot.waitUntil(lambda: hosts.step() and len(hosts.got) == 3, timeout=WAIT)
    qtbot.waitUntil(lambda: hosts.step() and hosts.peer.reliableDataInTransit == 0, timeout=WAIT)
    qtbot.waitUntil(lambda: any("reassembled from" in s for s in summaries(w)), timeout=WAIT)
    rows = summaries(w)
    assert rows[0].startswith("connect: 4 channels, mtu 1400")
    chat = [s for s in rows if s.startswith("ch0 reliable #")]
    assert chat and 'json {"t": "chat", "text": "gg"}' in chat[0]
    pos = [s for s in rows if "ch1 unreliable #1" in s]
    assert pos and 'json {"t": "pos", "x": 3}' in pos[0]
    whole = [s for s in rows if "reassembled from" in s]
    assert len(whole) == 1 and whole[0].startswith("ch2 reliable #") and f"{len(big)} B reassembled from" in whole[0]
    assert sum("ch2 reliable" in s and "fragment" in s for s in rows) >= 2
    # the filter bar selects by channel and reliability
    w.filter_bar.edit.setText("enet.channel == 1 and enet.reliable == false")
    w.filter_bar.apply()
    qtbot.waitUntil(lambda: w.model.rowCount() == 1, timeout=WAIT)
    assert "ch1 unreliable #1" in summaries(w)[0]
    w.filter_bar.edit.setText('enet.lane == "2/reliable"')
    w.filter_bar.apply()
    qtbot.waitUntil(lambda: 0 < w.model.rowCount() == sum("ch2 reliable" in s for s in rows), timeout=WAIT)
    # the timeline pairs each reliable command with its ack, per channel
    analysis = w.timeline.analysis

    def paired() -> set[int | None]:
        hosts.step()
        analysis.run_to_end()
        return {p.channel for p in analysis.pairer.pairs}

    qtbot.waitUntil(lambda: {0, 2, 255} <= paired(), timeout=WAIT)  # once the acks have reached the window
    plots = w.timeline.plots  # a property: made on first use
    plots.refresh(w.timeline.analysis, None)
    assert {0, 2} <= set(plots.channel_curves) and "ENet reliable round trip" in plots.legend.text()
