"""Export an ONNX package as a Triton Inference Server model repository entry.

What is written, for the ONNX Runtime backend::

    REPOSITORY/NAME/config.pbtxt      inputs, outputs, batching, instances, accelerators
    REPOSITORY/NAME/labels.txt        class labels, one a line (classifiers only)
    REPOSITORY/NAME/VERSION/model.onnx  (and its external data files beside it)

Triton counts the batch as a dimension apart: when every input and output
starts with a dynamic dimension, ``max_batch_size`` is set and ``dims`` leave
that dimension out; otherwise ``max_batch_size`` is 0 and ``dims`` are full.
A ``[N]`` tensor becomes ``dims: [1]`` with an empty ``reshape``, Triton's own
idiom for one value per row. Triton serves tensors only, so sequence and map
outputs (scikit-learn's ZipMap) must be left out with ``outputs=``; the model
file is then rewritten with only those graph outputs.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._atomic import replacing_folder
from ..errors import ConversionError, PackageError
from ..manifest import Manifest, TensorSpec

if TYPE_CHECKING:
    from .._package import Package
    from .._types import PathLike

__all__ = ["export_triton", "triton_config"]

DEFAULT_MAX_BATCH_SIZE = 256
LABELS_FILE = "labels.txt"
MODEL_FILE = "model.onnx"
KINDS = {"auto": "KIND_AUTO", "cpu": "KIND_CPU", "gpu": "KIND_GPU"}
# Accelerators of Triton's ONNX Runtime backend, and the instance kind each needs.
ACCELERATORS = {"tensorrt": "gpu", "openvino": "cpu"}
TRITON_DTYPES = {
    "bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16", "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64", "int8": "TYPE_INT8", "int16": "TYPE_INT16", "int32": "TYPE_INT32",
    "int64": "TYPE_INT64", "float16": "TYPE_FP16", "float32": "TYPE_FP32", "float64": "TYPE_FP64",
    "string": "TYPE_STRING", "bfloat16": "TYPE_BF16",
}
# Triton model names are folder names that also appear in URLs.
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class _Enum(str):
    """A protobuf enum value: written bare, not quoted."""


# -- the configuration ---------------------------------------------------------------
def triton_config(manifest: Manifest, *, name: str | None = None, max_batch_size: int | None = None,
                  instance_count: int = 1, kind: str = "auto", gpus: Sequence[int] | None = None,
                  accelerator: str | None = None, accelerator_options: Mapping[str, str] | None = None,
                  outputs: Sequence[str] | None = None, labels: bool = True) -> str:
    """The ``config.pbtxt`` text for an ONNX package's manifest.

    Parameters
    ----------
    manifest:
        The package's manifest (e.g. from :func:`modelpack.inspect`).
    name:
        Triton model name; defaults to the manifest's name.
    max_batch_size:
        Largest batch Triton forms; defaults to 256 when every tensor has a dynamic
        first dimension, else 0. Pass 0 to switch batching off.
    instance_count, kind, gpus:
        The instance group: how many copies, on ``"auto"``, ``"cpu"`` or ``"gpu"``, and which GPUs.
    accelerator, accelerator_options:
        ``"tensorrt"`` (GPU) or ``"openvino"`` (CPU), with its parameters, e.g.
        ``{"precision_mode": "FP16"}``.
    outputs:
        The outputs to serve (all by default); needed to leave out non-tensor outputs.
    labels:
        Point the probabilities output at ``labels.txt`` (classifiers with classes).

    Example
    -------
    >>> import modelpack
    >>> print(triton_config(modelpack.inspect("iris.mpk"), kind="gpu"))   # doctest: +SKIP
    name: "iris"
    ...
    """
    model_name = _model_name(manifest, name)
    served = _served_outputs(manifest, outputs)
    tensors = (*manifest.inputs, *served)
    batch = _max_batch_size(manifest, tensors, max_batch_size)
    config: dict[str, Any] = {
        "name": model_name, "platform": "onnxruntime_onnx", "backend": "onnxruntime",
        "default_model_filename": MODEL_FILE, "max_batch_size": batch,
        "input": [_tensor(manifest, s, batch > 0) for s in manifest.inputs],
        "output": [_tensor(manifest, s, batch > 0) for s in served],
        "instance_group": [_instance_group(manifest, instance_count, kind, gpus)],
    }
    labelled = _label_output(manifest, served) if labels else None
    for entry in config["output"]:
        if entry["name"] == labelled:
            entry["label_filename"] = LABELS_FILE
    if batch > 0:
        config["dynamic_batching"] = {}
    if accelerator is not None:
        config["optimization"] = _accelerators(manifest, accelerator, accelerator_options, kind)
    return _render(config)


def _model_name(manifest: Manifest, name: str | None) -> str:
    chosen = name or manifest.name
    if not _MODEL_NAME.match(chosen):
        raise ConversionError(f"{chosen!r} cannot be a Triton model name (letters, digits, '_', '.', '-')",
                              package=manifest.name, fix="Pass name= (--name) with such a name.")
    return chosen


def _served_outputs(manifest: Manifest, outputs: Sequence[str] | None) -> tuple[TensorSpec, ...]:
    if manifest.model.format != "onnx":
        raise ConversionError(f"Triton has no backend for {manifest.model.format.upper()} models",
                              package=manifest.name,
                              fix="Serve this package with `modelpack serve` or KServe's PMML server "
                                  "(modelpack export-kserve).")
    for spec in manifest.inputs:
        if spec.kind != "tensor" or spec.dtype not in TRITON_DTYPES:
            raise ConversionError(f"input {spec.name!r} is a {spec.kind} of {spec.dtype}; Triton takes "
                                  "tensors of plain dtypes only", package=manifest.name,
                                  fix="Re-export the model with tensor inputs.")
    names = [o.name for o in manifest.outputs]
    chosen = list(outputs) if outputs is not None else names
    unknown = [o for o in chosen if o not in names]
    if unknown or not chosen:
        raise ConversionError(f"unknown output(s) {unknown}; the model has {names}", package=manifest.name,
                              fix="Pass outputs= (--outputs) with names among those.")
    served = tuple(o for o in manifest.outputs if o.name in chosen)
    bad = [o.name for o in served if o.kind != "tensor" or o.dtype not in TRITON_DTYPES or o.shape is None]
    if bad:
        tensors = [o.name for o in served if o.name not in bad]
        raise ConversionError(
            f"output(s) {bad} are not tensors of known rank (e.g. a ZipMap list of dicts); Triton serves "
            "tensors only", package=manifest.name,
            fix=f"Leave them out with outputs={tensors} (--outputs {' '.join(tensors) or 'NAME'}), or "
                "re-export the classifier without ZipMap (skl2onnx option zipmap=False).")
    return served


def _batchable(spec: TensorSpec) -> bool:
    return bool(spec.shape) and not isinstance(spec.shape[0], int)  # type: ignore[index]


def _max_batch_size(manifest: Manifest, tensors: Sequence[TensorSpec], requested: int | None) -> int:
    batchable = all(_batchable(s) for s in tensors)
    if requested is None:
        return DEFAULT_MAX_BATCH_SIZE if batchable else 0
    if requested < 0:
        raise ConversionError(f"max_batch_size must be 0 or more, not {requested}", package=manifest.name,
                              fix="Pass 0 to switch batching off, or a positive batch size.")
    if requested > 0 and not batchable:
        fixed = [s.name for s in tensors if not _batchable(s)]
        raise ConversionError(f"{fixed} have no dynamic first dimension, so Triton cannot batch them",
                              package=manifest.name, fix="Pass max_batch_size=0 (--max-batch-size 0).")
    return requested


def _tensor(manifest: Manifest, spec: TensorSpec, batched: bool) -> dict[str, Any]:
    shape = list(spec.shape or ())
    if batched:
        shape = shape[1:]
    entry: dict[str, Any] = {"name": spec.name, "data_type": _Enum(TRITON_DTYPES[spec.dtype])}
    if batched and not shape:
        # One value per row: Triton wants dims [1] and reshapes to the model's [N].
        entry["dims"] = [1]
        entry["reshape"] = {"shape": []}
    elif not shape:
        raise ConversionError(f"{spec.name!r} is a scalar; Triton needs at least one dimension",
                              package=manifest.name, fix="Re-export the model with a batch dimension.")
    else:
        entry["dims"] = [d if isinstance(d, int) and d > 0 else -1 for d in shape]
    return entry


def _label_output(manifest: Manifest, served: Sequence[TensorSpec]) -> str | None:
    if not manifest.classes:
        return None
    proba = [s for s in served if s.role == "probabilities" and s.shape and len(s.shape) == 2]
    return proba[0].name if len(proba) == 1 else None


def _instance_group(manifest: Manifest, count: int, kind: str, gpus: Sequence[int] | None) -> dict[str, Any]:
    if kind not in KINDS:
        raise ConversionError(f"instance kind {kind!r} is not one of {sorted(KINDS)}", package=manifest.name,
                              fix="Pass kind='auto', 'cpu' or 'gpu'.")
    if count < 1:
        raise ConversionError(f"instance_count must be at least 1, not {count}", package=manifest.name,
                              fix="Pass a positive instance count.")
    group: dict[str, Any] = {"count": count, "kind": _Enum(KINDS[kind])}
    if gpus:
        if kind != "gpu":
            raise ConversionError(f"gpus={list(gpus)} needs kind='gpu', not {kind!r}", package=manifest.name,
                                  fix="Pass kind='gpu' (--kind gpu) with gpus.")
        group["gpus"] = [int(g) for g in gpus]
    return group


def _accelerators(manifest: Manifest, accelerator: str, options: Mapping[str, str] | None,
                  kind: str) -> dict[str, Any]:
    needs = ACCELERATORS.get(accelerator)
    if needs is None:
        raise ConversionError(f"accelerator {accelerator!r} is not one of {sorted(ACCELERATORS)}",
                              package=manifest.name, fix="Pass 'tensorrt' (GPU) or 'openvino' (CPU).")
    if kind not in (needs, "auto"):
        raise ConversionError(f"{accelerator} runs on the {needs.upper()}, but the instances are kind={kind!r}",
                              package=manifest.name, fix=f"Pass kind={needs!r} with accelerator={accelerator!r}.")
    entry: dict[str, Any] = {"name": accelerator}
    if options:
        entry["parameters"] = [{"key": str(k), "value": str(v)} for k, v in options.items()]
    return {"execution_accelerators": {f"{needs}_execution_accelerator": [entry]}}


# -- protobuf text format --------------------------------------------------------------
def _render(message: Mapping[str, Any], indent: int = 0) -> str:
    pad = "  " * indent
    lines = []
    for key, value in message.items():
        if isinstance(value, Mapping):
            lines.append(f"{pad}{key} {{\n{_render(value, indent + 1)}{pad}}}")
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            for item in value:  # a repeated message: one block per item
                lines.append(f"{pad}{key} {{\n{_render(item, indent + 1)}{pad}}}")
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: [{', '.join(_scalar(v) for v in value)}]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return "".join(line + "\n" for line in lines)


def _scalar(value: Any) -> str:
    if isinstance(value, _Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


# -- the repository entry ----------------------------------------------------------------
def export_triton(package: PathLike, repository: PathLike, *, name: str | None = None, version: int = 1,
                  max_batch_size: int | None = None, instance_count: int = 1, kind: str = "auto",
                  gpus: Sequence[int] | None = None, accelerator: str | None = None,
                  accelerator_options: Mapping[str, str] | None = None,
                  outputs: Sequence[str] | None = None, overwrite: bool = False) -> Path:
    """Write an ONNX package into a Triton model repository; return the model's folder.

    The package is verified first (checksums, limits). The model folder is built
    beside its destination and moved into place in one step, so a failed export
    leaves nothing behind. The other parameters are those of :func:`triton_config`.

    Example
    -------
    >>> from modelpack.deploy import export_triton
    >>> export_triton("iris.mpk", "models/", kind="gpu", accelerator="tensorrt",
    ...               accelerator_options={"precision_mode": "FP16"})   # doctest: +SKIP
    PosixPath('models/iris')
    """
    from .._package import open_package, resolve

    if version < 1:
        raise ConversionError(f"version must be 1 or more, not {version}", fix="Pass version=1 or higher.")
    with open_package(resolve(package)) as pkg:
        manifest = pkg.manifest
        config = triton_config(manifest, name=name, max_batch_size=max_batch_size,
                               instance_count=instance_count, kind=kind, gpus=gpus, accelerator=accelerator,
                               accelerator_options=accelerator_options, outputs=outputs)
        dest = Path(repository) / _model_name(manifest, name)
        if dest.exists() and not overwrite:
            raise PackageError(f"{dest} already exists", package=manifest.name,
                               fix="Pass overwrite=True (--overwrite) or choose another name.")
        with replacing_folder(dest) as tmp:
            _fill(tmp, pkg, config, str(version), outputs)
    return dest


def _fill(folder: Path, pkg: Package, config: str, version: str, outputs: Sequence[str] | None) -> None:
    manifest = pkg.manifest
    (folder / "config.pbtxt").write_text(config, encoding="utf-8")
    if _label_output(manifest, _served_outputs(manifest, outputs)) is not None:
        (folder / LABELS_FILE).write_text("".join(f"{c}\n" for c in manifest.classes or ()), encoding="utf-8")
    model_dir = folder / version
    model_dir.mkdir()
    data = pkg.read_bytes(manifest.model.file)
    if outputs is not None:
        data = _keep_outputs(data, outputs)
    (model_dir / MODEL_FILE).write_bytes(data)
    for location in manifest.model.external_data:
        target = model_dir / location
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pkg.local_path(location), target)


def _keep_outputs(data: bytes, outputs: Sequence[str]) -> bytes:
    """The model with only ``outputs`` as graph outputs; ONNX Runtime drops the dead nodes."""
    import onnx

    model = onnx.load_model_from_string(data)
    kept = [o for o in model.graph.output if o.name in set(outputs)]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    return model.SerializeToString()
