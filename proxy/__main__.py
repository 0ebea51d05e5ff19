"""``python -m proxy``: the headless proxy (same as ``sockscope-proxy``).

Must not import: Qt, ``inspector``. Thread: main.
"""

import sys

from proxy.cli import main

sys.exit(main())
