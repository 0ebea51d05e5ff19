"""Waits in C (time.sleep), where no interrupt lands: the message goes on after the timeout, and messages are not
held for this addon while it waits."""

import time

from proxy.addons import Addon


class Sleeper(Addon):
    modifies = True
    timeout = 0.2

    def message(self, ctx, msg):
        if msg.data == b"spin\n":
            time.sleep(3)


addons = [Sleeper()]
