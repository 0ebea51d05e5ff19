"""Logs ten megabytes in one line: the line is cut, the proxy's memory is not."""

from proxy.addons import Addon


class Loud(Addon):
    def message(self, ctx, msg):
        ctx.log("x" * 10_000_000)


addons = [Loud()]
