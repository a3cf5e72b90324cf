"""The ``modelpack`` command.

Built on argparse so the core gains no dependency. Sub-commands of optional
parts (serving, cluster export, signing, devices) live beside their code and
are added here through their ``add_parser(subparsers)``; a part whose extra is
not installed still gets its command, which then says what to install.
Errors print as one line (``error: ...``) with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from importlib import import_module
from typing import Any

from . import __version__
from .errors import ModelpackError

__all__ = ["main"]

# Modules that contribute sub-commands through add_parser(subparsers).
PLUGGED_COMMANDS: tuple[str, ...] = ("._cli_sign", ".deploy", ".devices", ".serve.cli")


def _inspect(args: argparse.Namespace) -> int:
    from .package import inspect

    manifest = inspect(args.package)
    if args.json:
        sys.stdout.write(manifest.to_json().decode())
        return 0
    print(_describe(manifest))
    return 0


def _describe(m: Any) -> str:
    lines = [f"{m.name} {m.version}  ({m.task}, {m.model.format}, schema {m.schema_version})"]
    if m.description:
        lines.append(f"  {m.description}")
    src = " ".join(filter(None, [m.source.framework, m.source.framework_version, m.source.model_class]))
    conv = " ".join(filter(None, [m.source.converter, m.source.converter_version]))
    lines.append(f"  source: {src or 'unknown'}; converter: {conv or 'unknown'}; created {m.created or '?'}")
    for title, specs in (("inputs", m.inputs), ("outputs", m.outputs)):
        lines.append(f"  {title}:")
        for s in specs:
            shape = "?" if s.shape is None else "[" + ", ".join("?" if d is None else str(d) for d in s.shape) + "]"
            extra = f"  role={s.role}" if s.role else ""
            if s.columns:
                extra += f"  columns={[c.name for c in s.columns][:8]}{'…' if len(s.columns) > 8 else ''}"
            lines.append(f"    {s.name}: {s.kind} {s.dtype} {shape}{extra}")
    if m.classes:
        lines.append(f"  classes: {list(m.classes)[:20]}")
    if m.fidelity:
        from .fidelity import summary

        lines.append(f"  fidelity ({m.fidelity.rows} rows, {'passed' if m.fidelity.passed else 'FAILED'}): "
                     f"{summary(m.fidelity)}")
    if m.runtime.placement:
        from .placement import describe as describe_placement

        lines.append("  " + describe_placement(m.runtime.placement).replace("\n", "\n  "))
    if m.metadata:
        lines.append(f"  metadata: {json.dumps(m.metadata)[:300]}")
    lines.append(f"  files: {len(m.files)}, {sum(f.size for f in m.files):,} bytes")
    return "\n".join(lines)


def _verify(args: argparse.Namespace) -> int:
    from .verification import verify

    report = verify(args.package, device=args.device)
    print(report)
    return 0 if report.ok else 1


def _pack(args: argparse.Namespace) -> int:
    from .packing import pack

    metadata = json.loads(args.metadata) if args.metadata else None
    manifest = pack(args.model, args.output, name=args.name, version=args.version,
                    description=args.description, metadata=metadata, task=args.task)
    print(f"wrote {args.output}: {manifest.name} {manifest.version} ({manifest.task}, {len(manifest.files)} files)")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .batch import predict_file
    from .loading import load

    with load(args.package, device=args.device) as model:
        rows = predict_file(model, args.input, args.output, batch_size=args.batch_size, result=args.result,
                            keep=args.keep)
    print(f"wrote {rows} rows to {args.output}", file=sys.stderr)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelpack", description="Trained models as portable data.")
    parser.add_argument("--version", action="version", version=f"modelpack {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("inspect", help="show a package's manifest (no runtime needed)")
    p.add_argument("package")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(handler=_inspect)

    p = sub.add_parser("verify", help="check checksums and re-run the stored samples here")
    p.add_argument("package")
    p.add_argument("--device", default="cpu")
    p.set_defaults(handler=_verify)

    p = sub.add_parser("pack", help="wrap an .onnx or .pmml file into a package")
    p.add_argument("model")
    p.add_argument("output", help="destination: NAME.mpk for an archive, else a folder")
    p.add_argument("--name")
    p.add_argument("--version", default="0.0.0")
    p.add_argument("--description", default="")
    p.add_argument("--task", choices=["classification", "regression", "clustering", "transform", "other"])
    p.add_argument("--metadata", help="JSON object of free metadata")
    p.set_defaults(handler=_pack)

    p = sub.add_parser("predict", help="predict a CSV, Parquet or JSON file in batches")
    p.add_argument("package")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=65_536)
    p.add_argument("--result", choices=["label", "proba", "all"], default="label")
    p.add_argument("--keep", nargs="+", default=[], help="input columns copied to the output (e.g. an id)")
    p.set_defaults(handler=_predict)

    for module in PLUGGED_COMMANDS:
        import_module(module, __package__).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``modelpack`` console script."""
    args = _parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ModelpackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (json.JSONDecodeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
