"""Lists the class instead of an instance of it."""

from proxy.addons import Addon


class Forgot(Addon):
    def tick(self, ctx):
        pass


addons = [Forgot]
