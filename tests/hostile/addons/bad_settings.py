"""A hold timeout of a billion seconds would let a held message block its connection for ever."""

from proxy.addons import Addon


class Patient(Addon):
    modifies = True
    timeout = 1e9

    def message(self, ctx, msg):
        pass


addons = [Patient()]
