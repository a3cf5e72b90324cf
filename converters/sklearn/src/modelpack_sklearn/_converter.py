"""The converter object that modelpack's registry loads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelpack.plugin import Conversion, ConversionError

__all__ = ["SklearnConverter"]


class SklearnConverter:
    """Convert fitted scikit-learn estimators and pipelines to ONNX (skl2onnx) or PMML.

    Attributes
    ----------
    name, frameworks, formats:
        What :mod:`modelpack.registry` matches: models whose class is defined in
        ``sklearn``, exported as ``"onnx"`` or ``"pmml"``.

    Example
    -------
    >>> import numpy as np
    >>> from sklearn.linear_model import LinearRegression
    >>> X = np.arange(8, dtype=np.float32).reshape(4, 2)
    >>> conv = SklearnConverter().convert(LinearRegression().fit(X, X[:, 0]), X,
    ...                                   format="onnx", options={})
    >>> conv.task, [o.role for o in conv.outputs]
    ('regression', ['value'])
    """

    name = "sklearn"
    frameworks = ("sklearn",)
    formats = ("onnx", "pmml")

    def convert(self, model: Any, sample: Any, *, format: str, options: Mapping[str, Any]) -> Conversion:
        """Convert ``model`` to ``format``; ``sample`` fixes the inputs and the reference outputs.

        Raises
        ------
        modelpack.ConversionError
            The model, one of its steps or the requested precision cannot be
            converted; the message names the step and the ways out.
        modelpack.InputError
            ``sample`` does not look like data the model can predict on.
        """
        if format == "pmml":
            from .pmml import convert_pmml

            return convert_pmml(model, sample, options)
        if format == "onnx":
            from ._onnx import convert_onnx

            return convert_onnx(model, sample, options)
        raise ConversionError(f"the sklearn converter writes {' or '.join(self.formats)}, not {format!r}",
                              fix="Pass format='onnx' or format='pmml'.")

    def __repr__(self) -> str:
        return f"<modelpack_sklearn.SklearnConverter formats={list(self.formats)}>"
