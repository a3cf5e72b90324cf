"""``modelpack devices``: which devices work here, and what to install for the others."""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """The ``modelpack devices`` sub-command."""
    p = subparsers.add_parser("devices", help="which devices work here, and what to install for the others")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-probe", action="store_true", help="list what is installed without creating sessions")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    """Print the device report; exit status 1 when no ONNX Runtime works here."""
    from .._devices import devices

    report = devices(probe=not args.no_probe)
    sys.stdout.write((json.dumps(report.to_dict(), indent=2) if args.json else str(report)) + "\n")
    return 0 if report.onnxruntime else 1
