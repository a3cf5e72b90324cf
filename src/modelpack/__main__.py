"""``python -m modelpack``: the same as the ``modelpack`` command."""

import sys

from ._cli import main

sys.exit(main())
