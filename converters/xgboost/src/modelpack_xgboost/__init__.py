"""modelpack converter plugin for XGBoost: ``modelpack.export(xgb_model, ...)`` writes ONNX.

Registered through the ``modelpack.converters`` entry point named ``xgboost``;
importing this package imports neither XGBoost nor onnxmltools.
"""

from __future__ import annotations

from ._converter import XGBoostConverter

__version__ = "0.1.0"

#: The instance the entry point names.
converter = XGBoostConverter()

__all__ = ["XGBoostConverter", "__version__", "converter"]
