"""The converter object that modelpack's registry loads."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from modelpack.plugin import Conversion, ConversionError, OutputPlan, Source, check_options, plan_outputs

from ._export import EXPORTERS, INLINE_LIMIT, Exported, dynamic_axes, export_onnx, weights_size
from ._sample import Inputs, read_sample

__all__ = ["OPTIONS", "TorchConverter"]

#: The keys ``options`` may hold; see the package README for each.
OPTIONS = ("task", "classes", "logits", "input_names", "output_names", "dynamic_axes", "exporter",
           "opset", "external_data", "export_kwargs", "dtype")
DTYPES = ("float16", "float32", "float64")


class TorchConverter:
    """Convert a ``torch.nn.Module`` to ONNX with ``torch.onnx.export``.

    The module is exported in eval mode (its training flags are restored after), with
    the first axis of every input dynamic (``N``). ``options`` (all optional):
    ``task``, ``classes``, ``logits``, ``output_names`` (see :mod:`modelpack.converting`),
    ``input_names``, ``dynamic_axes`` (``{input: {axis: name}}``), ``exporter``
    (``"auto"``, ``"dynamo"``, ``"torchscript"``), ``opset``, ``external_data`` (force
    weights in or out of the ONNX file; by default out only above 2 GB) and
    ``export_kwargs`` (passed to ``torch.onnx.export``). ``export(dtype="float64")``
    exports a copy of the module cast to that precision.

    Example
    -------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Softmax(dim=1))
    >>> conv = TorchConverter().convert(net, torch.rand(8, 4), format="onnx",
    ...                                 options={"task": "classification"})
    >>> conv.task, conv.classes, conv.source.converter
    ('classification', (0, 1, 2), 'torch.onnx.export (dynamo)')
    """

    name = "torch"
    frameworks = ("torch",)
    formats = ("onnx",)

    def convert(self, model: Any, sample: Any, *, format: str, options: Mapping[str, Any]) -> Conversion:
        """Export ``model`` to ONNX; ``sample`` fixes the inputs and gives the reference outputs.

        Raises
        ------
        modelpack.ConversionError
            The module is not an ``nn.Module``, an option is wrong, or neither exporter
            can translate it: the message names the failing operator and the ways out.
        modelpack.InputError
            ``sample`` cannot be read as the module's inputs.
        """
        import torch

        if format != "onnx":
            raise ConversionError(f"the torch converter writes ONNX, not {format!r}",
                                  fix="Pass format='onnx'.")
        if not isinstance(model, torch.nn.Module):
            raise ConversionError(f"{type(model).__qualname__} is not a torch.nn.Module",
                                  fix="Pass the nn.Module (for a plain function, wrap it in one).")
        check_options(options, OPTIONS, self.name)
        exporter = options.get("exporter", "auto")
        if exporter not in EXPORTERS:
            raise ConversionError(f"options['exporter'] is {exporter!r}, not one of {EXPORTERS}",
                                  fix="Pass 'auto', 'dynamo' or 'torchscript'.")
        plan = plan_outputs(options)
        model = _with_dtype(model, options.get("dtype"))
        inputs = read_sample(model, sample, options)
        with _eval_mode(model), torch.no_grad():
            wrapper = _wrapper_class()(model, inputs, plan)
            reference = wrapper(*inputs.tensors)
        names = plan.output_names(len(reference), wrapper.keys)
        values = [r.cpu().numpy() for r in reference]
        if "task" not in options:
            _hint_classifier(values[0])
        checked = (plan.reference(names, values), plan.classes_for(values[0]))  # before the slow part
        exported = export_onnx(
            wrapper, inputs.names, inputs.tensors, names,
            axes=dynamic_axes(inputs.names, inputs.tensors, options.get("dynamic_axes")),
            exporter=exporter, opset=options.get("opset"), external=_external(model, options),
            extra=_extra_kwargs(options))
        return _conversion(model, exported, plan, *checked, values)

    def __repr__(self) -> str:
        return "<modelpack_torch.TorchConverter formats=['onnx']>"


#: ``torch.onnx.export`` arguments this converter sets itself, and the option that sets each.
_OWN_KWARGS = {"input_names": "input_names", "output_names": "output_names", "dynamic_axes": "dynamic_axes",
               "dynamic_shapes": "dynamic_axes", "opset_version": "opset", "external_data": "external_data",
               "dynamo": "exporter", "f": "", "args": "", "kwargs": "", "verbose": ""}


def _hint_classifier(first: Any) -> None:
    """Warn when the first output looks like class probabilities but no task says so.

    Without ``options["task"]`` the package has no predict_proba and predict returns the
    raw output. Rows of non-negative numbers summing to one are probabilities; scores
    (logits) cannot be told from other outputs, so the message names both options.
    """
    import numpy as np

    if first.ndim != 2 or first.shape[1] < 2 or first.dtype.kind != "f" or not len(first):
        return
    if (first >= 0).all() and np.allclose(first.sum(axis=1), 1.0, atol=1e-4):
        warnings.warn("the first output looks like class probabilities, but no task was given, so the "
                      "package will have no predict_proba: export with options={'task': 'classification'} "
                      "(and 'classes': [...] for the labels); for raw scores add 'logits': True",
                      UserWarning, stacklevel=2)


def _extra_kwargs(options: Mapping[str, Any]) -> dict[str, Any]:
    extra = dict(options.get("export_kwargs") or {})
    for key in extra:
        if key in _OWN_KWARGS:
            way = f"Use options[{_OWN_KWARGS[key]!r}] instead." if _OWN_KWARGS[key] else "Leave it out."
            raise ConversionError(f"options['export_kwargs'] sets {key!r}, which the torch converter sets "
                                  "itself", fix=way)
    return extra


def _with_dtype(model: Any, dtype: str | None) -> Any:
    """The module itself, or a copy in the floating precision ``export(dtype=...)`` asks for."""
    import copy

    import torch

    if dtype is None:
        return model
    if dtype not in DTYPES:
        raise ConversionError(f"dtype={dtype!r} is not a floating precision the torch converter exports",
                              fix=f"Pass one of {', '.join(DTYPES)} or leave dtype out.")
    target = getattr(torch, dtype)
    floats = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    if all(t.dtype == target for t in floats):
        return model
    return copy.deepcopy(model).to(target)  # the caller's module keeps its precision


def _external(model: Any, options: Mapping[str, Any]) -> bool:
    given = options.get("external_data")
    return weights_size(model) > INLINE_LIMIT if given is None else bool(given)


def _conversion(model: Any, exported: Exported, plan: OutputPlan, reference: dict[str, Any],
                classes: tuple[Any, ...] | None, values: list[Any]) -> Conversion:
    import torch

    from modelpack.plugin import describe_model

    description = describe_model(exported.model)
    metadata: dict[str, Any] = {"torch_exporter": exported.exporter}
    if exported.fallback_reason:
        metadata["torch_dynamo_error"] = exported.fallback_reason
    return Conversion(
        model=exported.model, format="onnx", task=plan.task,
        source=Source(framework="torch", framework_version=torch.__version__,
                      model_class=f"{type(model).__module__}.{type(model).__qualname__}",
                      converter=f"torch.onnx.export ({exported.exporter})",
                      converter_version=torch.__version__),
        reference=reference, classes=classes,
        outputs=plan.with_roles(description.outputs), dtype=_float_dtype(values),
        external_data=exported.external_data, metadata=metadata)


def _float_dtype(values: list[Any]) -> str | None:
    floats = [str(v.dtype) for v in values if v.dtype.kind == "f"]
    return floats[0] if floats else None


@contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """Eval mode for the export; each submodule's own training flag is restored after."""
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, flag in flags.items():
            module.training = flag


@lru_cache(maxsize=1)
def _wrapper_class() -> type:
    """The export wrapper, defined once torch is imported (it subclasses nn.Module)."""
    import torch

    class ExportWrapper(torch.nn.Module):
        """Calls the model as the sample says, flattens its outputs, adds the softmax asked for."""

        def __init__(self, model: Any, inputs: Inputs, plan: OutputPlan) -> None:
            super().__init__()
            self.model = model
            self._names = inputs.names
            self._by_keyword = inputs.by_keyword
            self._plan = plan
            self.keys: list[str] | None = None
            self._binary: bool | None = None

        def forward(self, *inputs: Any) -> tuple[Any, ...]:
            if self._by_keyword:
                out = self.model(**dict(zip(self._names, inputs, strict=True)))
            else:
                out = self.model(*inputs)
            flat = self._flatten(out)
            if self._plan.classifier:
                if self._binary is None:  # decided on the eager reference call, not while tracing
                    self._binary = flat[0].dim() == 2 and flat[0].shape[1] == 1
                flat = (_probabilities(flat[0], self._plan.logits, self._binary), *flat[1:])
            return flat

        def _flatten(self, out: Any) -> tuple[Any, ...]:
            if isinstance(out, torch.Tensor):
                return (out,)
            if isinstance(out, Mapping):
                self.keys = [str(k) for k in out]
                out = tuple(out.values())
            if isinstance(out, (tuple, list)) and out and all(isinstance(t, torch.Tensor) for t in out):
                return tuple(out)
            raise ConversionError(f"{type(self.model).__name__}.forward returns {type(out).__name__}, "
                                  "not tensors", fix="Return a tensor, a tuple of tensors or a dict "
                                                     "of tensors (wrap the module to do so).")

    def _probabilities(scores: Any, logits: bool, binary: bool) -> Any:
        if binary:
            positive = torch.sigmoid(scores) if logits else scores
            return torch.cat([1 - positive, positive], dim=1)
        return torch.softmax(scores, dim=-1) if logits else scores

    return ExportWrapper
