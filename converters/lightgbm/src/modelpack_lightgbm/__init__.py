"""modelpack converter plugin for LightGBM: ``modelpack.export(lgbm_model, ...)`` writes ONNX.

Registered through the ``modelpack.converters`` entry point named ``lightgbm``;
importing this package imports neither LightGBM nor onnxmltools.
"""

from __future__ import annotations

from ._converter import LightGBMConverter

__version__ = "0.1.0"

#: The instance the entry point names.
converter = LightGBMConverter()

__all__ = ["LightGBMConverter", "__version__", "converter"]
