"""An endless loop in a modifier's message hook, on the message "spin": the message goes on after the timeout, the
hook is interrupted, and the next messages are handled again."""

from proxy.addons import Addon


class Spinner(Addon):
    modifies = True
    timeout = 0.2

    def message(self, ctx, msg):
        while msg.data == b"spin\n":
            pass


addons = [Spinner()]
