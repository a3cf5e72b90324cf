"""modelpack converter plugin for PyTorch: ``torch.nn.Module`` to ONNX.

The plugin is found through the entry point ``modelpack.converters: torch``, so
:func:`modelpack.export` picks it for any model whose class subclasses
``torch.nn.Module``::

    >>> import modelpack
    >>> modelpack.export(net, "digits.mpk", sample=X[:64],
    ...                  options={"task": "classification", "logits": True})   # doctest: +SKIP

Importing this module does not import torch: :meth:`TorchConverter.convert` does.
"""

from __future__ import annotations

from ._converter import OPTIONS, TorchConverter

__version__ = "0.1.0"

#: The instance the entry point names.
converter = TorchConverter()

__all__ = ["OPTIONS", "TorchConverter", "__version__", "converter"]
