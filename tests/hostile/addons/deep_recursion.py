"""Recurses until RecursionError: a traceback of a thousand frames is cut to its end in the report."""

from proxy.addons import Addon


def down(n):
    return down(n + 1) + 1


class Deep(Addon):
    modifies = True

    def message(self, ctx, msg):
        down(0)


addons = [Deep()]
