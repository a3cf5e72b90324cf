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

from ._card import ModelCard
from ._devices import DeviceReport, DeviceWarning, PlacementWarning, devices
from ._export import export, pack
from ._load import inspect, load
from ._model import Model
from ._package import fetch
from ._registry import list_converters, register
from ._verify import VerifyReport, verify
from ._version import __version__
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
from .manifest import Manifest, TensorSpec
from .mlflow import from_mlflow

__all__ = [
    "ConversionError",
    "DTypeError",
    "DeviceError",
    "DeviceReport",
    "DeviceUnavailableError",
    "DeviceWarning",
    "FidelityError",
    "InputError",
    "Manifest",
    "ManifestError",
    "MissingColumnError",
    "Model",
    "ModelCard",
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
    "fetch",
    "from_mlflow",
    "inspect",
    "list_converters",
    "load",
    "pack",
    "register",
    "verify",
]

# Reprs and docs say modelpack.Model, not modelpack._model.Model.
for _name in __all__:
    _obj = globals()[_name]
    if hasattr(_obj, "__module__") and not isinstance(_obj, str):
        try:
            _obj.__module__ = "modelpack"
        except (AttributeError, TypeError):
            pass
del _name, _obj
