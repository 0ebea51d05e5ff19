"""Drop every third position update a client sends: what a lossy link does to a game, but predictable.

    sockscope-proxy --demo --udp -s docs/examples/addons/drop_every_third.py

(the UDP demo: a player sends ``{"type": "pos", "seq": N, "x": X, "y": Y}`` ten times a second.) Updates 3, 6, 9 ...
of each connection or flow never reach the server; every other message goes on untouched. Watch the server's
replies skip a sequence number, or the window's table show the dropped rows struck through.
"""

from __future__ import annotations

import json

from proxy.addons import Addon, AddonContext, Connection, Message


def is_position(data: bytes) -> bool:
    try:
        value = json.loads(data)
    except ValueError:  # not JSON (or not UTF-8): not a position update
        return False
    return isinstance(value, dict) and value.get("type") == "pos"


class DropEveryThird(Addon):
    modifies = True

    def __init__(self) -> None:
        self.updates: dict[int, int] = {}  # position updates seen per connection (hooks run on one thread)

    def message(self, ctx: AddonContext, msg: Message) -> None:
        if msg.direction.label != "c2s" or not is_position(msg.data):
            return
        n = self.updates.get(msg.conn_id, 0) + 1
        self.updates[msg.conn_id] = n
        if n % 3 == 0:
            ctx.drop()

    def connection_closed(self, ctx: AddonContext, conn: Connection) -> None:
        dropped = self.updates.pop(conn.id, 0) // 3
        if dropped:
            ctx.log(f"#{conn.id} ended: {dropped} position updates dropped")


addons = [DropEveryThird()]
