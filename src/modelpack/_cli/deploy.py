"""``modelpack export-triton`` and ``modelpack export-kserve``: packages for cluster model servers."""

from __future__ import annotations

import argparse
import sys

from ..deploy._triton import ACCELERATORS, DEFAULT_MAX_BATCH_SIZE, KINDS
from ..errors import ConversionError

__all__ = ["add_parsers"]


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add both commands."""
    add_triton(subparsers)
    add_kserve(subparsers)


def add_triton(subparsers: argparse._SubParsersAction) -> None:
    """Add ``modelpack export-triton PKG REPO_DIR``."""
    p = subparsers.add_parser("export-triton", help="write an ONNX package into a Triton model repository")
    p.add_argument("package", help="an ONNX package folder or .mpk archive")
    p.add_argument("repository", help="the model repository folder (created if absent)")
    p.add_argument("--name", help="Triton model name (default: the package name)")
    p.add_argument("--version", type=int, default=1, help="model version folder")
    p.add_argument("--max-batch-size", type=int, help=f"default {DEFAULT_MAX_BATCH_SIZE} when batchable; 0: off")
    p.add_argument("--instances", type=int, default=1, help="instances per device")
    p.add_argument("--kind", choices=sorted(KINDS), default="auto",
                   help="where Triton places the instances (auto: its own choice)")
    p.add_argument("--gpus", type=int, nargs="+", help="GPU indices (with --kind gpu)")
    p.add_argument("--accelerator", choices=sorted(ACCELERATORS),
                   help="an ONNX Runtime accelerator inside Triton (default: none)")
    p.add_argument("--accelerator-option", action="append", default=[], metavar="KEY=VALUE",
                   help="accelerator parameter, e.g. precision_mode=FP16 (repeatable)")
    p.add_argument("--outputs", nargs="+", help="outputs to serve (default: all)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model folder")
    p.set_defaults(handler=_triton)


def _triton(args: argparse.Namespace) -> int:
    options = {}
    for item in args.accelerator_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConversionError(f"--accelerator-option {item!r} is not KEY=VALUE",
                                  fix="Write it as e.g. precision_mode=FP16.")
        options[key] = value
    from ..deploy import export_triton

    dest = export_triton(args.package, args.repository, name=args.name, version=args.version,
                         max_batch_size=args.max_batch_size, instance_count=args.instances, kind=args.kind,
                         gpus=args.gpus, accelerator=args.accelerator, accelerator_options=options or None,
                         outputs=args.outputs, overwrite=args.overwrite)
    sys.stdout.write(f"wrote {dest}\n")
    return 0


def add_kserve(subparsers: argparse._SubParsersAction) -> None:
    """Add ``modelpack export-kserve PKG --storage-uri URI``."""
    p = subparsers.add_parser("export-kserve", help="print a KServe InferenceService for a package (V2 protocol)")
    p.add_argument("package", help="a package folder or .mpk archive")
    p.add_argument("--storage-uri", required=True, help="where KServe downloads the model (s3://, gs://, pvc://...)")
    p.add_argument("--name", help="InferenceService name (default: from the package name)")
    p.add_argument("--namespace", help="Kubernetes namespace (default: none, kubectl's current one)")
    p.add_argument("--runtime", help="serving runtime to pin (default: KServe chooses by model format)")
    p.add_argument("--gpus", type=int, default=0, help="nvidia.com/gpu limit")
    p.add_argument("--min-replicas", type=int, help="fewest replicas (default: KServe's)")
    p.add_argument("--max-replicas", type=int, help="most replicas (default: KServe's)")
    p.add_argument("--write", metavar="DIR", help="also write the files to upload to the storage URI into DIR")
    p.set_defaults(handler=_kserve)


def _kserve(args: argparse.Namespace) -> int:
    from ..deploy import inference_service, to_yaml, write_storage

    resource = inference_service(args.package, storage_uri=args.storage_uri, name=args.name,
                                 namespace=args.namespace, runtime=args.runtime, gpus=args.gpus,
                                 min_replicas=args.min_replicas, max_replicas=args.max_replicas)
    if args.write:
        folder = write_storage(args.package, args.write)
        sys.stderr.write(f"wrote {folder}: upload its content to {args.storage_uri}\n")
    sys.stdout.write(to_yaml(resource))
    return 0
