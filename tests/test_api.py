"""The public surface: exactly what is documented, presented as modelpack.*"""

import modelpack

DOCUMENTED = {
    # functions
    "load", "pack", "export", "inspect", "verify", "fetch", "register", "list_converters", "devices",
    "from_mlflow",
    # types
    "Model", "Manifest", "TensorSpec", "VerifyReport", "DeviceReport", "ModelCard",
    # errors
    "ModelpackError", "PackageError", "PackageNotFoundError", "PackageIntegrityError", "UnsafePackageError",
    "SignatureError", "ManifestError", "SchemaVersionError", "InputError", "MissingColumnError", "DTypeError",
    "ShapeError", "TaskError", "ConversionError", "NoConverterError", "FidelityError", "DeviceError",
    "DeviceUnavailableError", "RuntimeBackendError",
    # warnings
    "DeviceWarning", "PlacementWarning",
    "__version__",
}


def test_all_is_the_documented_api():
    assert set(modelpack.__all__) == DOCUMENTED


def test_exported_objects_present_themselves_as_modelpack():
    for name in modelpack.__all__:
        obj = getattr(modelpack, name)
        if callable(obj):
            assert obj.__module__ == "modelpack", name


def test_every_public_function_has_a_docstring_with_an_example():
    for name in ("load", "pack", "export", "inspect", "verify", "fetch", "register", "from_mlflow"):
        doc = getattr(modelpack, name).__doc__
        assert doc and "Example" in doc, name


def test_every_error_is_a_modelpack_error():
    for name in modelpack.__all__:
        obj = getattr(modelpack, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and not issubclass(obj, Warning):
            assert issubclass(obj, modelpack.ModelpackError), name
