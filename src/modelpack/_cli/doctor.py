"""``modelpack doctor [PKG]``: what this machine can run, and whether a package runs here."""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``doctor``."""
    p = subparsers.add_parser("doctor", help="what this machine can run, and whether a package will run here",
                              description="Check the runtimes, devices, threads and Java here; with a package, "
                                          "also its versions against this runtime, then load it and re-run "
                                          "its stored samples. Exit status 1 when something is a problem.")
    p.add_argument("package", nargs="?", help="a package folder, .mpk archive or URL to check (optional)")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from .._doctor import diagnose

    findings = diagnose(args.package)
    sys.stdout.write("\n".join(str(f) for f in findings) + "\n")
    return 0 if all(f.level != "problem" for f in findings) else 1
