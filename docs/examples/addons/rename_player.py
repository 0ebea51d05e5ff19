"""Rename every player: rewrite the "name" field of the JSON messages the client sends.

    sockscope-proxy --framing lines -s docs/examples/addons/rename_player.py --target 127.0.0.1:5555

Each client message that is a JSON object with a "name" field reaches the server with NEW_NAME instead; every
other message (and everything the server sends) goes on byte for byte. The window shows the changed messages as
edited, with both versions. Works as well on UDP (one JSON object per datagram, ``--udp``).
"""

from __future__ import annotations

import json

from proxy.addons import Addon, AddonContext, Message

NEW_NAME = "Grace"


class RenamePlayer(Addon):
    modifies = True  # hold each message until message() has decided (else it only watches)

    def message(self, ctx: AddonContext, msg: Message) -> None:
        if msg.direction.label != "c2s":
            return
        decoded = msg.decoded  # sockscope's decoders, run here on the addon's thread
        if decoded is None or decoded.decoder != "json" or len(decoded.values) != 1:
            return
        value = decoded.value
        if not isinstance(value, dict) or "name" not in value or value["name"] == NEW_NAME:
            return
        old = value["name"]
        body = msg.data.rstrip()
        ending = msg.data[len(body):]  # keep the message's own line ending ("\n" with --framing lines)
        ctx.replace(json.dumps({**value, "name": NEW_NAME}).encode("utf-8") + ending)
        ctx.log(f"#{msg.conn_id}: renamed {old!r} to {NEW_NAME!r}")


addons = [RenamePlayer()]
