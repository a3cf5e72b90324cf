"""``modelpack serve``: packages behind the Open Inference Protocol."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ModelpackError
from .package import add_trusted_key

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` sub-command to the ``modelpack`` command's parser."""
    p = subparsers.add_parser(
        "serve", help="serve packages over HTTP (Open Inference Protocol / KServe V2)",
        description="Serve packages over the Open Inference Protocol (KServe V2) REST API, with the "
                    "binary tensor data extension, plus POST /v2/models/NAME/predict.")
    p.add_argument("packages", nargs="*", metavar="PKG",
                   help="package folders or .mpk files; NAME=PKG serves one under another name")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8080, help="port")
    p.add_argument("--grpc-port", type=int, default=None, metavar="PORT",
                   help="also serve the protocol over gRPC on this port (needs modelpack[grpc]; default: off)")
    p.add_argument("--device", default="cpu", help="device for every package")
    p.add_argument("--threads", type=int, default=None,
                   help="model runs at once (default: the number of CPUs, at most 8)")
    p.add_argument("--intra-op-threads", type=int, default=None, metavar="N",
                   help="threads inside one model run (default: the package's setting, else all CPUs)")
    p.add_argument("--max-batch-size", type=int, default=0,
                   help="merge concurrent requests into runs of up to this many rows (0: off)")
    p.add_argument("--max-latency-ms", type=float, default=2.0,
                   help="longest a request waits to be merged")
    p.add_argument("--max-body-size", type=float, default=64.0, metavar="MIB",
                   help="largest request body in MiB; larger ones get HTTP 413")
    p.add_argument("--metrics", action=argparse.BooleanOptionalAction, default=None,
                   help="Prometheus metrics at GET /metrics (default: on when prometheus-client is installed)")
    p.add_argument("--reload-interval", type=float, default=0.0, metavar="SECONDS",
                   help="check the package files this often and reload a changed one (0: never)")
    p.add_argument("--load-in-background", action="store_true",
                   help="open the ports at once and load the packages behind them (readiness false until then)")
    p.add_argument("--grace", type=float, default=30.0, metavar="SECONDS",
                   help="at shutdown, how long gRPC calls in flight get to finish")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="the server's log level")
    add_trusted_key(p)
    p.add_argument("--openapi", action="store_true", help="print the OpenAPI document and exit")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    if args.openapi:
        from ..serve import create_app
        from ..serve._server import import_or_explain

        import_or_explain("fastapi")
        sys.stdout.write(json.dumps(create_app([]).openapi(), indent=2) + "\n")
        return 0
    if not args.packages:
        raise ModelpackError("no package to serve", fix="Name at least one: modelpack serve PKG [PKG ...].")
    _check_options(args)
    from ..serve import serve

    serve(_sources(args.packages), host=args.host, port=args.port, log_level=args.log_level,
          device=args.device, session_options=_session_options(args), threads=args.threads,
          max_batch_size=args.max_batch_size, max_latency_ms=args.max_latency_ms,
          max_body_bytes=int(args.max_body_size * 2**20), trusted_keys=args.trusted_keys,
          grpc_port=args.grpc_port, metrics=args.metrics, reload_interval=args.reload_interval, grace=args.grace,
          load_in_background=args.load_in_background)
    return 0


def _session_options(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.intra_op_threads is None:
        return None
    return {"intra_op_num_threads": args.intra_op_threads}


def _check_options(args: argparse.Namespace) -> None:
    limits = (("--threads", args.threads, 1), ("--intra-op-threads", args.intra_op_threads, 0),
              ("--max-batch-size", args.max_batch_size, 0), ("--max-latency-ms", args.max_latency_ms, 0),
              ("--max-body-size", args.max_body_size, 0), ("--port", args.port, 0),
              ("--grpc-port", args.grpc_port, 0), ("--reload-interval", args.reload_interval, 0),
              ("--grace", args.grace, 0))
    for option, value, low in limits:
        if value is not None and value < low:
            raise ModelpackError(f"{option} is {value}", fix=f"Give {option} a value of at least {low}.")


def _sources(items: Sequence[str]) -> list[str] | list[tuple[str, str]]:
    """Paths, or (name, path) pairs when some are given as NAME=PATH (a name may come twice:
    several versions of one model)."""
    pairs = [_split_name(item) for item in items]
    if all(name is None for name, _ in pairs):
        return list(items)
    return [(name or _manifest_name(path), path) for name, path in pairs]


def _split_name(item: str) -> tuple[str | None, str]:
    name, sep, path = item.partition("=")
    if sep and name and path and not Path(item).exists():  # a path holding "=" is never split
        return name, path
    return None, item


def _manifest_name(path: str) -> str:
    from .._load import inspect

    return inspect(path).name
