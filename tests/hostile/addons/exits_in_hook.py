"""sys.exit() and KeyboardInterrupt from hooks: they end the call, never the proxy or the addon's thread."""

import sys

from proxy.addons import Addon


class Quitter(Addon):
    modifies = True

    def message(self, ctx, msg):
        if msg.seq % 2:
            raise KeyboardInterrupt
        sys.exit(0)


addons = [Quitter()]
