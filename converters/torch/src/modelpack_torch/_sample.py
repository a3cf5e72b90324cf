"""The sample as named tensors in ``forward``'s order.

A sample is one tensor or array (one input), a tuple or list of them (positional
inputs), or a dict (keyword inputs, matched to ``forward``'s parameters by name).
Input names come from ``options["input_names"]``, the dict keys, or the names of
``forward``'s parameters. Floating arrays are cast to the module's floating dtype, so
a float64 numpy sample feeds a float32 network.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelpack.plugin import ConversionError, InputError

__all__ = ["Inputs", "read_sample"]


@dataclass(frozen=True)
class Inputs:
    """Named sample tensors; ``by_keyword`` calls ``forward(**inputs)`` instead of ``forward(*inputs)``."""

    names: tuple[str, ...]
    tensors: tuple[Any, ...]
    by_keyword: bool


def forward_parameters(module: Any) -> list[str]:
    """Names of ``forward``'s positional parameters (``*args`` and ``**kwargs`` left out)."""
    try:
        signature = inspect.signature(module.forward)
    except (TypeError, ValueError):  # builtins and some scripted modules have none
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in signature.parameters.values() if p.kind in kinds]


def read_sample(module: Any, sample: Any, options: Mapping[str, Any]) -> Inputs:
    """The sample as named tensors, on the module's device, in its floating dtype."""
    params = forward_parameters(module)
    if isinstance(sample, Mapping):
        names = tuple(str(k) for k in sample)
        values: Sequence[Any] = list(sample.values())
        by_keyword = True
        unknown = [n for n in names if params and n not in params]
        if unknown:
            raise InputError(f"sample keys {unknown} are not parameters of {type(module).__name__}.forward",
                             input=unknown[0], expected=f"keys among {params}", got=f"{list(names)}",
                             fix="Key the sample by forward()'s parameter names, or pass a tuple.")
    else:
        values = list(sample) if isinstance(sample, (tuple, list)) else [sample]
        names = _positional_names(options, params, len(values))
        by_keyword = False
    if not values:
        raise InputError("the sample is empty", expected="one tensor or array per input", got="nothing",
                         fix="Pass a few rows of real input data as sample=.")
    if options.get("input_names") is not None and by_keyword:
        raise ConversionError("options['input_names'] and a dict sample both name the inputs",
                              fix="Drop input_names: the dict keys name the inputs.")
    device, dtype = _device_and_dtype(module)
    tensors = tuple(_tensor(v, n, device, dtype) for n, v in zip(names, values, strict=True))
    return Inputs(names=names, tensors=tensors, by_keyword=by_keyword)


def _positional_names(options: Mapping[str, Any], params: list[str], count: int) -> tuple[str, ...]:
    given = options.get("input_names")
    if given is not None:
        if len(given) != count:
            raise ConversionError(f"options['input_names'] has {len(given)} name(s) for {count} input(s)",
                                  fix="Give one name per tensor of the sample.")
        return tuple(str(n) for n in given)
    if len(params) >= count:
        return tuple(params[:count])
    return ("input",) if count == 1 else tuple(f"input_{i}" for i in range(count))


def _device_and_dtype(module: Any) -> tuple[Any, Any]:
    import torch

    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.float32


def _tensor(value: Any, name: str, device: Any, dtype: Any) -> Any:
    import torch

    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError, RuntimeError) as exc:
            raise InputError(f"cannot be read as a tensor ({exc})", input=name,
                             expected="a torch tensor or a numeric array", got=type(value).__name__,
                             fix="Pass the sample as torch tensors or numpy arrays.") from exc
    if value.is_floating_point() and value.dtype != dtype:
        value = value.to(dtype)
    return value.detach().to(device)
