"""modelpack converter plugin for Keras 3 and TensorFlow: models, tf.functions, SavedModels to ONNX.

The plugin is found through the entry points ``modelpack.converters: keras`` (Keras
models) and ``tensorflow`` (``tf.function``\\ s and loaded SavedModels), so
:func:`modelpack.export` picks it for those objects::

    >>> import modelpack
    >>> modelpack.export(net, "digits.mpk", sample=X[:64],
    ...                  options={"task": "classification"})   # doctest: +SKIP

A SavedModel folder is exported with :func:`export_saved_model`. Importing this module
imports neither TensorFlow nor tf2onnx: :meth:`KerasConverter.convert` does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelpack.plugin import Manifest

from ._converter import OPTIONS, KerasConverter

__version__ = "0.1.0"

#: The instance the entry points name.
converter = KerasConverter()

__all__ = ["OPTIONS", "KerasConverter", "__version__", "converter", "export_saved_model"]


def export_saved_model(path: str | os.PathLike[str], dest: str | os.PathLike[str], *, sample: Any,
                       signature: str = "serving_default", options: Mapping[str, Any] | None = None,
                       **export_args: Any) -> Manifest:
    """Export the SavedModel folder ``path`` (one of its signatures) to a package at ``dest``.

    The folder is loaded with ``tf.saved_model.load`` and exported through
    :func:`modelpack.export`; ``export_args`` (``name``, ``tolerance``...) are passed on.
    The package is named after the folder (its parent for a numbered version folder).
    Inputs are named after the signature's keyword arguments, outputs after its keys.

    Example
    -------
    >>> from modelpack_keras import export_saved_model
    >>> export_saved_model("exported/1", "model.mpk", sample={"inputs": X[:64]})   # doctest: +SKIP
    <Manifest ...>

    Raises
    ------
    modelpack.ConversionError
        ``path`` is not a SavedModel folder or lacks the signature.
    """
    import modelpack

    from ._targets import load_saved_model

    loaded = load_saved_model(path)
    folder = Path(path).resolve()
    # TensorFlow Serving keeps versions in numbered folders: model/1, model/2...
    export_args.setdefault("name", folder.parent.name if folder.name.isdigit() else folder.name)
    return modelpack.export(loaded, dest, sample=sample, options={**(options or {}), "signature": signature},
                            **export_args)
