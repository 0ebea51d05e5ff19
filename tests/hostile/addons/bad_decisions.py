"""Every context call given the wrong thing: text for bytes, a negative or NaN delay, an unknown direction, a
connection that does not exist. Each raises in the hook (reported), or, for the unknown connection, is reported
when it is sent; the messages go on unchanged."""

from proxy.addons import Addon


class Wrong(Addon):
    modifies = True

    def message(self, ctx, msg):
        n = msg.seq % 5
        if n == 0:
            ctx.replace("text, not bytes")
        elif n == 1:
            ctx.delay(-1)
        elif n == 2:
            ctx.delay(float("nan"))
        elif n == 3:
            ctx.inject(msg.conn_id, "sideways", b"x")
        else:
            ctx.inject(999_999, "c2s", b"nobody")


addons = [Wrong()]
