"""``modelpack card PKG [-o DIR]``: a package's model card, as README.md and card.html."""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``card``."""
    p = subparsers.add_parser("card", help="write a package's model card (README.md, card.html)",
                              description="Write the model card of a package: README.md with Hugging Face "
                                          "front matter, a self-contained card.html and, with matplotlib "
                                          "(modelpack[card]), a plot of the per-row fidelity differences.")
    p.add_argument("package", help="a package folder, .mpk archive or URL")
    p.add_argument("-o", "--output", default="model-card", metavar="DIR", help="the folder to write into")
    p.add_argument("--no-plots", action="store_true", help="leave the plot out even if matplotlib is here")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from .._card import build_card, signature_status
    from .._load import open_for_reading

    with open_for_reading(args.package) as package:  # a card is a view: no runtime needed
        card = build_card(package.manifest, package.read_bytes, package=args.package, plots=not args.no_plots,
                          signature=signature_status(package.signature, args.package))
    written = card.save(args.output)
    sys.stdout.write("".join(f"wrote {path}\n" for path in written))
    return 0
