"""The one door for converter plugins: everything a plugin may use of modelpack's core.

A converter plugin is a distribution that declares an entry point in the group
``modelpack.converters`` and imports only ``modelpack``, ``modelpack.plugin``
and ``modelpack.testing``. What it finds here:

The protocol
    :class:`Converter` (what a plugin provides), :class:`Conversion` (what its
    ``convert`` returns), :func:`register` (a converter for this process only,
    without an entry point); :func:`find_converter` (which converter takes a model),
    :func:`available_converters` and :func:`list_converters`.
Checks of the caller's request
    :func:`check_request` (format and option keys), :func:`check_options`,
    :func:`check_opset`; each raises a :class:`ConversionError` naming the fix.
Output planning, for networks that do not say what they compute
    :func:`plan_outputs` reads ``task``, ``classes``, ``logits`` and
    ``output_names`` from the options into an :class:`OutputPlan`.
ONNX graph edits
    :func:`rename_values` and :func:`declare_signature` give a converter's graph
    the names, dtypes and shapes the manifest promises.
Reading what a model file declares
    :func:`describe_model`, and :func:`adapt_sample` to turn a sample into the
    feeds a model with given inputs takes (as ``Model.predict`` would).
The spec types and errors
    :class:`TensorSpec`, :class:`ColumnSpec`, :class:`Source`, :class:`Manifest`;
    :class:`ConversionError`, :class:`InputError`, :class:`MissingColumnError`,
    :class:`ShapeError`, :class:`ModelpackError`.

Example
-------
A minimal plugin module (``converters/README.md`` shows a complete one):

>>> from modelpack.plugin import Conversion, Source, check_request
>>> class MyConverter:
...     name, frameworks, formats = "mylib", ("mylib",), ("onnx",)
...     def convert(self, model, sample, *, format, options):
...         check_request(format, options, ("dtype",), "mylib")
...         return Conversion(model=model.to_onnx(), format="onnx", task="regression",
...                           source=Source(framework="mylib"), reference={"value": model.predict(sample)})
>>> converter = MyConverter()   # named by the entry point: mylib = "mylib_modelpack:converter"

Everything here follows semantic versioning with the rest of the public API.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._conversion import OutputPlan, check_opset, check_options, check_request, plan_outputs
from ._formats import Description, describe
from ._formats.onnx_edits import declare_signature, rename_values
from ._registry import Conversion, Converter, available_converters, find_converter, list_converters, register
from .errors import ConversionError, InputError, MissingColumnError, ModelpackError, ShapeError
from .manifest import ColumnSpec, Manifest, Source, TensorSpec

__all__ = [
    "ColumnSpec", "Conversion", "ConversionError", "Converter", "Description", "InputError", "Manifest",
    "MissingColumnError", "ModelpackError", "OutputPlan", "ShapeError", "Source", "TensorSpec", "adapt_sample",
    "available_converters", "check_opset", "check_options", "check_request", "declare_signature",
    "describe_model", "find_converter", "list_converters", "plan_outputs", "register", "rename_values",
]


def describe_model(data: bytes, format: str = "onnx") -> Description:
    """What a model file declares: inputs, outputs (with dtypes and named dimensions), task, classes.

    Example
    -------
    >>> describe_model(onnx_bytes).outputs[0].name   # doctest: +SKIP
    'label'
    """
    return describe(format, data, name=f"model.{format}")


def adapt_sample(inputs: Sequence[TensorSpec], data: Any) -> dict[str, np.ndarray]:
    """The feeds a model with ``inputs`` takes for ``data``, adapted as ``Model.predict`` adapts it.

    Raises :class:`InputError` (and its subclasses) when ``data`` does not fit.

    Example
    -------
    >>> adapt_sample([TensorSpec("x", "float32", ("N", 2))], [[1, 2]])["x"].dtype
    dtype('float32')
    """
    from ._inputs import InputAdapter

    return InputAdapter(inputs, "sample")(data)
