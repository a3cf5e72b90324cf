"""Runtime backends, one per model format, loaded on first use.

``open_backend`` picks the backend from the manifest's model format and imports
its module only then, so ``import modelpack`` never imports a runtime.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .base import Backend

if TYPE_CHECKING:
    from .._package import Package

__all__ = ["Backend", "open_backend"]

_BACKENDS = {"onnx": ".onnx", "pmml": ".pmml"}


def open_backend(package: Package, **options: Any) -> Backend:
    """Create the backend for a verified package.

    ``options`` are the keyword arguments of :func:`modelpack.load` that concern
    the runtime (``device``, ``providers``, ``fallback``, ``session_options``...);
    each backend's ``open(package, **options)`` documents those it accepts.
    """
    module = import_module(_BACKENDS[package.manifest.model.format], __name__)
    return module.open(package, **options)
