"""Running ``torch.onnx.export``: the dynamo exporter first, TorchScript as the fallback.

The dynamo exporter (``torch.export`` + onnxscript) is the one PyTorch develops;
the TorchScript tracer still converts some modules it cannot (data-dependent Python
control flow that traces to a fixed path, some older operators). ``exporter="auto"``
tries dynamo and falls back to TorchScript, and the result records which one ran.

Weights stay inside the ONNX file up to the protobuf limit of 2 GB; above it they are
written as ONNX external data and returned as separate files, which the package
stores beside ``model.onnx``.
"""

from __future__ import annotations

import io
import logging
import re
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelpack.plugin import ConversionError

__all__ = ["EXPORTERS", "Exported", "export_onnx", "dynamic_axes", "weights_size"]

logger = logging.getLogger("modelpack_torch")

EXPORTERS = ("auto", "dynamo", "torchscript")
#: Largest weight total kept inline: the 2 GiB protobuf limit less room for the graph.
INLINE_LIMIT = 2**31 - 2**26
MODEL_FILE = "model.onnx"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_OP = re.compile(r"\b(aten|prim|quantized|torchvision)(?:::|\.)([A-Za-z_]\w*)")
# Loggers that report, on every export, optional operator sets that are not installed.
_NOISY_LOGGERS = ("torch.onnx._internal.exporter._registration",)


@dataclass
class Exported:
    """An exported model: the file, its external data files, and how it was made."""

    model: bytes
    exporter: str
    external_data: dict[str, bytes] = field(default_factory=dict)
    fallback_reason: str | None = None


def weights_size(module: Any) -> int:
    """Bytes held by the module's parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


def dynamic_axes(names: Sequence[str], tensors: Sequence[Any], given: Any) -> dict[str, dict[int, str]]:
    """``{input: {axis: dim name}}``: the first axis of every input is the batch ``N`` by default."""
    if given is None:
        return {n: {0: "N"} for n, t in zip(names, tensors, strict=True) if t.dim() > 0}
    if not isinstance(given, Mapping) or any(n not in names for n in given):
        raise ConversionError(f"options['dynamic_axes'] must map input names {list(names)} to axes, "
                              f"got {given!r:.120}", fix="Pass e.g. {'ids': {0: 'N', 1: 'T'}}.")
    axes = {}
    for name, spec in given.items():
        pairs = spec.items() if isinstance(spec, Mapping) else ((a, f"{name}_{a}") for a in spec)
        axes[name] = {int(a): str(d) for a, d in pairs}
    return axes


def export_onnx(wrapper: Any, names: Sequence[str], tensors: Sequence[Any], output_names: Sequence[str],
                *, axes: Mapping[str, Mapping[int, str]], exporter: str, opset: int | None,
                external: bool, extra: Mapping[str, Any]) -> Exported:
    """Export ``wrapper`` with the requested exporter (``auto`` falls back to TorchScript)."""
    errors: dict[str, BaseException] = {}
    caught: list[warnings.WarningMessage] = []
    if exporter in ("auto", "dynamo"):
        try:
            with _quiet(caught):
                model, data = _dynamo(wrapper, names, tensors, output_names, axes, opset, external, extra)
            _pass_on(caught)
            return Exported(model=model, exporter="dynamo", external_data=data)
        except Exception as exc:  # the exporter raises many unrelated types; all mean "cannot"
            errors["dynamo"] = exc
            logger.info("the dynamo exporter failed (%s); trying TorchScript", _first_line(exc))
    if exporter in ("auto", "torchscript"):
        caught.clear()
        try:
            with _quiet(caught):
                model, data = _torchscript(wrapper, names, tensors, output_names, axes, opset, external,
                                           extra)
        except Exception as exc:  # as above
            errors["torchscript"] = exc
        else:
            _pass_on(caught)
            reason = _first_line(errors["dynamo"]) if "dynamo" in errors else None
            return Exported(model=model, exporter="torchscript", external_data=data, fallback_reason=reason)
    raise _failure(type(wrapper.model).__name__, errors) from errors[list(errors)[-1]]


def _dynamo(wrapper: Any, names: Sequence[str], tensors: Sequence[Any], output_names: Sequence[str],
            axes: Mapping[str, Mapping[int, str]], opset: int | None, external: bool,
            extra: Mapping[str, Any]) -> tuple[bytes, dict[str, bytes]]:
    import torch

    dims: dict[str, Any] = {}
    shapes = tuple({axis: dims.setdefault(dim, torch.export.Dim(_identifier(dim)))
                    for axis, dim in axes.get(name, {}).items()} or None for name in names)
    program: Any = torch.onnx.export(wrapper, tuple(tensors), dynamo=True, input_names=list(names),
                                     output_names=list(output_names), opset_version=opset,
                                     dynamic_shapes={"inputs": shapes}, external_data=external,
                                     verbose=False, **extra)
    if not external:
        return program.model_proto.SerializeToString(), {}
    with tempfile.TemporaryDirectory() as tmp:
        program.save(Path(tmp) / MODEL_FILE, external_data=True)
        return _read_folder(Path(tmp))


def _torchscript(wrapper: Any, names: Sequence[str], tensors: Sequence[Any], output_names: Sequence[str],
                 axes: Mapping[str, Mapping[int, str]], opset: int | None, external: bool,
                 extra: Mapping[str, Any]) -> tuple[bytes, dict[str, bytes]]:
    import torch

    batch = {n: {0: "N"} for n in output_names}
    kwargs = dict(dynamo=False, input_names=list(names), output_names=list(output_names),
                  dynamic_axes={**batch, **axes}, opset_version=opset, **extra)
    if not external:
        buffer: Any = io.BytesIO()  # accepted, though the signature names only paths
        torch.onnx.export(wrapper, tuple(tensors), buffer, **kwargs)
        return buffer.getvalue(), {}
    with tempfile.TemporaryDirectory() as tmp:
        torch.onnx.export(wrapper, tuple(tensors), str(Path(tmp) / MODEL_FILE), **kwargs)
        return _read_folder(Path(tmp))


def _read_folder(folder: Path) -> tuple[bytes, dict[str, bytes]]:
    model = folder / MODEL_FILE
    data = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p != model}
    return model.read_bytes(), data


@contextmanager
def _quiet(caught: list[warnings.WarningMessage]) -> Iterator[None]:
    """Collect the exporters' warnings into ``caught`` instead of raising or printing them.

    Under ``-W error`` a deprecation raised inside torch's internals would abort the
    export, and the user can do nothing about it; :func:`_pass_on` re-issues, once the
    export has succeeded, the ones that concern the user's model.
    """
    saved = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            yield
    finally:
        caught.extend(records)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _pass_on(caught: Sequence[warnings.WarningMessage]) -> None:
    """Tracer warnings say the trace may be wrong for other inputs: the user must see them."""
    import torch

    for w in caught:
        if issubclass(w.category, torch.jit.TracerWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        else:
            logger.debug("torch.onnx.export: %s: %s", w.category.__name__, w.message)


def _identifier(name: str) -> str:
    text = re.sub(r"\W", "_", name)
    return text if text and not text[0].isdigit() else f"d_{text}"


def _first_line(exc: BaseException) -> str:
    """The first line of the innermost cause: the exporters wrap it in pages of advice."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = _ANSI.sub("", str(exc)).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return f"{type(exc).__name__}: {line[:300]}"


def failing_operators(exc: BaseException) -> list[str]:
    """Operator names (``aten.histc``) mentioned by an exception and its causes."""
    found: list[str] = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for namespace, op in _OP.findall(_ANSI.sub("", str(exc))):
            name = f"{namespace}.{op}"
            if name not in found and op not in ("default", "Tensor"):
                found.append(name)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return found


def _failure(model_class: str, errors: Mapping[str, BaseException]) -> ConversionError:
    ops: list[str] = []
    for exc in errors.values():
        ops += [op for op in failing_operators(exc) if op not in ops]
    tried = "; ".join(f"{name}: {_first_line(exc)}" for name, exc in errors.items())
    where = f"operator(s) {', '.join(ops[:5])}" if ops else "the model"
    return ConversionError(
        f"torch.onnx could not export {model_class}: {where} has no ONNX translation ({tried})",
        fix=f"Rewrite forward() without {ops[0] if ops else 'the failing code'} (compute it outside the "
            "model), pass an ONNX translation with options={'export_kwargs': {'custom_translation_table': "
            "{...}}}, or choose the other exporter with options={'exporter': 'dynamo' | 'torchscript'}.")
