"""Hooks return values no hook should return, including one whose repr raises and one bytes subclass that lies
about equality: all ignored, the messages unchanged."""

from proxy.addons import Addon


class Evil:
    def __repr__(self):
        raise RuntimeError("repr is a trap")


class LyingBytes(bytes):
    def __eq__(self, other):
        raise RuntimeError("eq is a trap")

    def __ne__(self, other):
        raise RuntimeError("ne is a trap")

    __hash__ = bytes.__hash__


class Garbage(Addon):
    modifies = True

    def message(self, ctx, msg):
        ctx.replace(LyingBytes(msg.data))
        return Evil()

    def connection_opened(self, ctx, conn):
        return (x for x in range(10))


addons = [Garbage()]
