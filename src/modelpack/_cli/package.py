"""``modelpack inspect``, ``verify`` and ``pack``: commands on one package."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from ..manifest import TASKS

if TYPE_CHECKING:
    from ..manifest import Manifest

__all__ = ["add_parsers", "describe"]


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add ``inspect``, ``verify`` and ``pack``."""
    p = subparsers.add_parser("inspect", help="show a package's manifest (no runtime needed)")
    p.add_argument("package")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(handler=_inspect)

    p = subparsers.add_parser("verify", help="check checksums and re-run the stored samples here")
    p.add_argument("package")
    p.add_argument("--device", default="cpu")
    p.set_defaults(handler=_verify)

    p = subparsers.add_parser("pack", help="wrap an .onnx or .pmml file into a package")
    p.add_argument("model")
    p.add_argument("output", help="destination: NAME.mpk for an archive, else a folder")
    p.add_argument("--name")
    p.add_argument("--version", default="0.0.0")
    p.add_argument("--description", default="")
    p.add_argument("--task", choices=TASKS)
    p.add_argument("--metadata", help="JSON object of free metadata")
    p.set_defaults(handler=_pack)


def _inspect(args: argparse.Namespace) -> int:
    from .._load import inspect

    manifest = inspect(args.package)
    if args.json:
        sys.stdout.write(manifest.to_json().decode())
        return 0
    sys.stdout.write(describe(manifest) + "\n")
    return 0


def describe(m: Manifest) -> str:
    """The manifest as ``modelpack inspect`` prints it."""
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
        from .._fidelity import summary

        lines.append(f"  fidelity ({m.fidelity.rows} rows, {'passed' if m.fidelity.passed else 'FAILED'}): "
                     f"{summary(m.fidelity)}")
    if m.runtime.placement:
        from .._devices.placement import describe as describe_placement

        lines.append("  " + describe_placement(m.runtime.placement).replace("\n", "\n  "))
    if m.metadata:
        lines.append(f"  metadata: {json.dumps(m.metadata)[:300]}")
    lines.append(f"  files: {len(m.files)}, {sum(f.size for f in m.files):,} bytes")
    return "\n".join(lines)


def _verify(args: argparse.Namespace) -> int:
    from .._verify import verify

    report = verify(args.package, device=args.device)
    sys.stdout.write(f"{report}\n")
    return 0 if report.ok else 1


def _pack(args: argparse.Namespace) -> int:
    from .._export import pack

    metadata = json.loads(args.metadata) if args.metadata else None
    manifest = pack(args.model, args.output, name=args.name, version=args.version,
                    description=args.description, metadata=metadata, task=args.task)
    sys.stdout.write(f"wrote {args.output}: {manifest.name} {manifest.version} ({manifest.task}, "
                     f"{len(manifest.files)} files)\n")
    return 0
