"""``python -m inspector``: the same as the ``sockscope`` command."""

import sys

from inspector.app import main

sys.exit(main())
