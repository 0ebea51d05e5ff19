"""An endless loop that catches BaseException, so interrupting it once does not stop it: the addon is disabled."""

from proxy.addons import Addon


class Stubborn(Addon):
    modifies = True
    timeout = 0.2

    def message(self, ctx, msg):
        while msg.data == b"spin\n":
            try:
                while True:
                    pass
            except BaseException:
                pass


addons = [Stubborn()]
