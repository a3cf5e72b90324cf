"""modelpack: trained models as portable data.

Export a model once (ONNX or PMML plus a manifest), then load and predict it
anywhere through one API, on the CPU, a GPU or another accelerator, without the
training framework and without pickle.

>>> import modelpack
>>> modelpack.export(clf, "churn.mpk", sample=X_train[:200])   # doctest: +SKIP
>>> m = modelpack.load("churn.mpk")                            # doctest: +SKIP
>>> m.predict(X_test)                                          # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

from .devices import DeviceWarning, PlacementWarning, devices
from .errors import (
    ConversionError,
    DeviceError,
    DeviceUnavailableError,
    DTypeError,
    FidelityError,
    InputError,
    ManifestError,
    MissingColumnError,
    ModelpackError,
    NoConverterError,
    PackageError,
    PackageIntegrityError,
    PackageNotFoundError,
    RuntimeBackendError,
    SchemaVersionError,
    ShapeError,
    SignatureError,
    TaskError,
    UnsafePackageError,
)
from .exporting import export
from .loading import load
from .manifest import Manifest, TensorSpec
from .model import Model
from .package import inspect
from .packing import pack
from .registry import list_converters, register
from .verification import VerifyReport, verify

__all__ = [
    "ConversionError",
    "DTypeError",
    "DeviceError",
    "DeviceUnavailableError",
    "DeviceWarning",
    "FidelityError",
    "InputError",
    "Manifest",
    "ManifestError",
    "MissingColumnError",
    "Model",
    "ModelpackError",
    "NoConverterError",
    "PackageError",
    "PackageIntegrityError",
    "PackageNotFoundError",
    "PlacementWarning",
    "RuntimeBackendError",
    "SchemaVersionError",
    "ShapeError",
    "SignatureError",
    "TaskError",
    "TensorSpec",
    "UnsafePackageError",
    "VerifyReport",
    "__version__",
    "devices",
    "export",
    "inspect",
    "list_converters",
    "load",
    "pack",
    "register",
    "verify",
]

# Reprs and docs say modelpack.Model, not modelpack.model.Model.
for _name in __all__:
    _obj = globals()[_name]
    if hasattr(_obj, "__module__") and not isinstance(_obj, str):
        try:
            _obj.__module__ = "modelpack"
        except (AttributeError, TypeError):
            pass
del _name, _obj
