"""What every example does around its ``main``: an output folder from the command line, or a temporary one."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path


def run(main: Callable[[Path], int]) -> None:
    """``python examples/NAME.py [OUTPUT_DIR]``: run ``main`` there (a temporary folder without one)."""
    if len(sys.argv) > 1:
        Path(sys.argv[1]).mkdir(parents=True, exist_ok=True)
        sys.exit(main(Path(sys.argv[1])))
    with tempfile.TemporaryDirectory() as tmp:
        sys.exit(main(Path(tmp)))
