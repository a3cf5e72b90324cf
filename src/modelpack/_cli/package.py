"""``modelpack inspect``, ``verify`` and ``pack``: commands on one package."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from ..manifest import TASKS

if TYPE_CHECKING:
    from ..manifest import Manifest

__all__ = ["add_parsers", "add_trusted_key", "describe"]


def add_trusted_key(parser: argparse.ArgumentParser) -> None:
    """``--trusted-key KEY.pub``, repeatable: the package must be signed by one of them."""
    parser.add_argument("--trusted-key", action="append", metavar="KEY.pub", dest="trusted_keys",
                        help="refuse the package unless it is signed by this public key (repeatable; "
                             "default: signatures are not checked)")


def add_engine(parser: argparse.ArgumentParser) -> None:
    """``--engine``: what runs a tree ensemble (see ``modelpack.load``)."""
    from .._runtime.trees import ENGINES

    parser.add_argument("--engine", choices=ENGINES, default="auto",
                        help="what runs a tree ensemble: the tree engine where it can (auto), ONNX Runtime "
                             "only, or the tree engine or an error (default: auto)")


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add ``inspect``, ``verify`` and ``pack``."""
    p = subparsers.add_parser("inspect", help="show a package's manifest (no runtime needed)")
    p.add_argument("package", help="a package folder, .mpk archive or URL")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(handler=_inspect)

    p = subparsers.add_parser("verify", help="check checksums and re-run the stored samples here")
    p.add_argument("package", help="a package folder, .mpk archive or URL")
    p.add_argument("--device", default="cpu", help="device to re-run the samples on")
    p.add_argument("--strict", action="store_true",
                   help="fail when the device is not here, instead of running on the next one")
    add_trusted_key(p)
    add_engine(p)
    p.set_defaults(handler=_verify)

    p = subparsers.add_parser("pack", help="wrap an .onnx or .pmml file into a package")
    p.add_argument("model", help="an .onnx or .pmml file")
    p.add_argument("output", help="destination: NAME.mpk for an archive, else a folder")
    p.add_argument("--name", help="the package name (default: the model file's name)")
    p.add_argument("--version", default="0.0.0", help="the package version")
    p.add_argument("--description", default="", help="one line on what the model does")
    p.add_argument("--task", choices=TASKS, help="what the model does (default: read from the model file)")
    p.add_argument("--metadata", help="JSON object of free metadata")
    p.add_argument("--session", metavar="JSON",
                   help='ONNX Runtime settings stored in the package, e.g. \'{"intra_op_num_threads": 1}\'')
    p.add_argument("--card", action="store_true", help="also write a model card into the package's extra/card/")
    p.add_argument("--compile", choices=("auto", "onnx", "never"), default="auto",
                   help="PMML: also compile the document to ONNX (auto: where it agrees with the evaluator; "
                        "onnx: required; never: the evaluator only)")
    p.set_defaults(handler=_pack)


def _inspect(args: argparse.Namespace) -> int:
    from .._package import read_head, resolve, short_ids, signers

    manifest, signature = read_head(resolve(args.package))
    if args.json:
        sys.stdout.write(manifest.to_json().decode())
        return 0
    claimed = signers(signature, args.package)
    signed = (f"  signature: by key {short_ids(claimed)} (not checked; "
              "`modelpack verify --trusted-key KEY.pub` checks it)" if claimed else "  signature: none")
    sys.stdout.write(describe(manifest) + "\n" + signed + "\n")
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
    if m.compiled:
        lines.append("  " + _compiled_line(m))
    if m.runtime.placement:
        from .._devices.placement import describe as describe_placement

        lines.append("  " + describe_placement(m.runtime.placement).replace("\n", "\n  "))
    if m.metadata:
        lines.append(f"  metadata: {json.dumps(m.metadata)[:300]}")
    lines.append(f"  files: {len(m.files)}, {sum(f.size for f in m.files):,} bytes")
    return "\n".join(lines)


def _compiled_line(m: Manifest) -> str:
    c = m.compiled
    if c is None:
        return "compiled: no record (written before schema 1.2)"
    runs = "the compiled ONNX model" if c.default == "onnx" else "the PMML evaluator"
    kept = f"compiled to {c.file}" if c.file else "not compiled"
    certified = ""
    if c.fidelity is not None:
        certified = (f"; against the evaluator on {c.fidelity.rows} rows: "
                     f"{'agrees' if c.fidelity.passed else 'DIFFERS'}")
    return f"compiled: {kept}; {runs} runs by default{certified}" + (f" ({c.reason})" if c.reason else "")


def _verify(args: argparse.Namespace) -> int:
    from .._verify import verify

    report = verify(args.package, device=args.device, trusted_keys=args.trusted_keys, strict=args.strict,
                    engine=args.engine)
    sys.stdout.write(f"{report}\n")
    return 0 if report.ok else 1


def _pack(args: argparse.Namespace) -> int:
    from .._export import pack

    metadata = json.loads(args.metadata) if args.metadata else None
    session = json.loads(args.session) if args.session else None
    manifest = pack(args.model, args.output, name=args.name, version=args.version,
                    description=args.description, metadata=metadata, task=args.task, session=session,
                    card=args.card, compile=args.compile)
    sys.stdout.write(f"wrote {args.output}: {manifest.name} {manifest.version} ({manifest.task}, "
                     f"{len(manifest.files)} files)\n")
    return 0
