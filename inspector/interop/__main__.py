"""``python -m inspector.interop export|import ...``: the same as ``sockscope export|import``.

Must not import: PySide6. Thread: main thread.
"""

import sys

from inspector.interop.cli import main

sys.exit(main(sys.argv[1:]))
