"""A message hook that takes one argument instead of (ctx, msg)."""


def message(msg):
    pass
