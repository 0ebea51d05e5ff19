"""Development tools run from a checkout (``python tools/NAME.py ...``): the documentation's pictures. Not part of
the installed package; importable as ``tools`` from the repository root (tests do).
Must not import: nothing special. Thread: each tool's own.
"""
