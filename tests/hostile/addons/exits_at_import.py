"""Calls sys.exit() at import: SystemExit must end the load, not the proxy."""

import sys

sys.exit(3)
