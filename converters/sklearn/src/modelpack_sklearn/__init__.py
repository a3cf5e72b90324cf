"""modelpack converter plugin for scikit-learn: estimators and pipelines to ONNX or PMML.

The plugin is found through the entry point ``modelpack.converters: sklearn``, so
:func:`modelpack.export` picks it for any model whose class comes from scikit-learn
(a ``Pipeline`` with XGBoost or LightGBM steps included)::

    >>> import modelpack
    >>> modelpack.export(pipeline, "churn.mpk", sample=X_train[:200])   # doctest: +SKIP

Importing this module imports neither scikit-learn nor skl2onnx: they are imported by
:meth:`SklearnConverter.convert`.
"""

from __future__ import annotations

from ._converter import SklearnConverter

__version__ = "0.1.0"

#: The instance the entry point names.
converter = SklearnConverter()

__all__ = ["SklearnConverter", "__version__", "converter"]
