"""``modelpack predict``: score a CSV, Parquet or JSON file, or a folder of Parquet files, in batches."""

from __future__ import annotations

import argparse
import sys

from .package import add_engine, add_trusted_key

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``predict``."""
    p = subparsers.add_parser("predict", help="predict a CSV, Parquet or JSON file, or a Parquet folder, in batches")
    p.add_argument("package", help="a package folder, .mpk archive or URL")
    p.add_argument("--input", required=True,
                   help="a .csv, .parquet, .json or .jsonl file of rows, or a folder of Parquet files "
                        "(hive partitions read as columns)")
    p.add_argument("--output", required=True,
                   help="where to write the results (format from the suffix); a name without a suffix is a "
                        "folder of Parquet files laid out as the input's")
    p.add_argument("--device", default="cpu", help="device to run on (cpu, cuda, gpu, auto...)")
    p.add_argument("--batch-size", type=int, default=65_536, help="rows per run; bounds the memory used")
    p.add_argument("--result", choices=["label", "proba", "all"], default="label",
                   help="labels (or values), class probabilities, or every output")
    p.add_argument("--keep", nargs="+", default=[], help="input columns copied to the output (e.g. an id)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar on stderr (default: when stderr is a terminal)")
    add_trusted_key(p)
    add_engine(p)
    p.set_defaults(handler=_predict)


def _predict(args: argparse.Namespace) -> int:
    from .._load import load
    from ..batch import predict_file

    with load(args.package, device=args.device, trusted_keys=args.trusted_keys, engine=args.engine) as model:
        rows = predict_file(model, args.input, args.output, batch_size=args.batch_size, result=args.result,
                            keep=args.keep, progress=args.progress)
    sys.stderr.write(f"wrote {rows} rows to {args.output}\n")
    return 0
