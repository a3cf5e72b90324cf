"""modelpack converter plugin for CatBoost: ``modelpack.export(cb_model, ...)`` writes ONNX.

Registered through the ``modelpack.converters`` entry point named ``catboost``;
importing this package does not import CatBoost.
"""

from __future__ import annotations

from ._converter import CatBoostConverter

__version__ = "0.1.0"

#: The instance the entry point names.
converter = CatBoostConverter()

__all__ = ["CatBoostConverter", "__version__", "converter"]
