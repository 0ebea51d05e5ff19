"""An endless loop that catches BaseException, so interrupting it once does not stop it: the addon is disabled.

The loop gives up after 8 s of its own, only so that the test run does not carry a thread spinning for the GIL into
every later test (an addon runs in the proxy's process: a real one like this would spin until the proxy ends)."""

import time

from proxy.addons import Addon

SPIN_S = 8.0


class Stubborn(Addon):
    modifies = True
    timeout = 0.2

    def message(self, ctx, msg):
        deadline = time.monotonic() + SPIN_S
        while msg.data == b"spin\n" and time.monotonic() < deadline:
            try:
                while time.monotonic() < deadline:
                    pass
            except BaseException:
                pass


addons = [Stubborn()]
