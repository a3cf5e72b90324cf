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
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from .._version import __version__
from ..errors import ModelpackError
from . import card, deploy, devices, doctor, package, predict, serve, sign

__all__ = ["main"]


def _one_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
              file: Any = None, line: str | None = None) -> None:
    """A warning as the command prints it: one line, without Python's source line."""
    sys.stderr.write(f"warning: {message}\n")


class _HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default after its help, where there is one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        shown = action.default not in (None, False, [], "", argparse.SUPPRESS)
        if shown and action.option_strings and "%(default)" not in text and "default" not in text:
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every ``modelpack`` command."""
    parser = _Parser(prog="modelpack", description="Trained models as portable data.")
    parser.add_argument("--version", action="version", version=f"modelpack {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    package.add_parsers(sub)
    predict.add_parser(sub)
    sign.add_parsers(sub)
    deploy.add_parsers(sub)
    devices.add_parser(sub)
    doctor.add_parser(sub)
    serve.add_parser(sub)
    card.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``modelpack`` console script."""
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line
            return int(args.handler(args))
    except BrokenPipeError:
        # The reader left (`modelpack inspect PKG | head`): stop quietly, and keep Python
        # from failing again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except ModelpackError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except (json.JSONDecodeError, OSError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
