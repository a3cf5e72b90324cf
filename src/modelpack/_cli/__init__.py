"""The ``modelpack`` command.

Built on argparse so the core gains no dependency. One module per group of
commands, each with ``add_parser(s)(subparsers)``; a command imports what it
runs only when it runs, so ``modelpack --help`` is fast, and a command whose
extra is not installed still exists and then says what to install. Errors
print as one line (``error: ...``) with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .._version import __version__
from ..errors import ModelpackError
from . import deploy, devices, package, predict, serve, sign

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    """The parser of every ``modelpack`` command."""
    parser = argparse.ArgumentParser(prog="modelpack", description="Trained models as portable data.")
    parser.add_argument("--version", action="version", version=f"modelpack {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    package.add_parsers(sub)
    predict.add_parser(sub)
    sign.add_parsers(sub)
    deploy.add_parsers(sub)
    devices.add_parser(sub)
    serve.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``modelpack`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ModelpackError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except (json.JSONDecodeError, OSError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
