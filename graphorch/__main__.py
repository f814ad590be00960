"""``python -m graphorch``: the ``graphorch`` command."""

import sys

from graphorch.cli import main

sys.exit(main())
