"""The error tree: builtin bases, message format, pickling, and the onnxruntime mapping."""

import inspect
import pickle

import pytest

import modelpack
from modelpack.errors import InputError


def test_builtin_bases_let_callers_catch_what_they_know():
    assert issubclass(modelpack.InputError, ValueError)
    assert issubclass(modelpack.DTypeError, TypeError)
    assert issubclass(modelpack.ManifestError, ValueError)
    assert issubclass(modelpack.PackageNotFoundError, FileNotFoundError)
    assert issubclass(modelpack.NoConverterError, TypeError)
    assert issubclass(modelpack.RuntimeBackendError, RuntimeError)


def test_input_error_message_has_a_fixed_order():
    err = InputError("wrong rank 1", input="X", expected="float32 [?, 4]", got="float64 array of shape (4,)",
                     fix="Reshape it.", package="churn.mpk")
    assert str(err) == ("churn.mpk: input 'X': wrong rank 1; expected float32 [?, 4], "
                        "got float64 array of shape (4,). Reshape it.")


def test_errors_survive_pickling_with_their_fields():
    err = modelpack.ShapeError("bad", input="X", expected="a", got="b", fix="Fix it.", package="p")
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is modelpack.ShapeError and str(clone) == str(err) and clone.input == "X"


def test_every_onnxruntime_exception_is_mapped():
    ort = pytest.importorskip("onnxruntime")
    from modelpack._runtime.onnx import _error_map

    state = ort.capi.onnxruntime_pybind11_state
    theirs = {obj for _, obj in inspect.getmembers(state, inspect.isclass) if issubclass(obj, BaseException)}
    assert theirs <= set(_error_map(ort)), f"unmapped: {sorted(t.__name__ for t in theirs - set(_error_map(ort)))}"


def test_every_error_class_documents_when_it_is_raised():
    for name in modelpack.__all__:
        obj = getattr(modelpack, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert obj.__doc__ and obj.__doc__.strip(), name


def test_an_error_raised_inside_the_callers_except_block_does_not_blame_its_exception(tmp_path):
    import traceback

    try:
        try:
            {}["missing"]
        except KeyError:
            modelpack.load(tmp_path / "absent.mpk")
    except modelpack.ModelpackError as exc:
        caught = exc
    assert caught.__context__ is None and caught.__cause__ is None
    assert "During handling" not in "".join(traceback.format_exception(caught))
    try:  # an error of its own still keeps its own cause
        modelpack.export(object(), tmp_path / "x.mpk", sample=[[1.0]], format="onxx")
    except modelpack.ConversionError as exc:
        assert "format 'onxx'" in str(exc)
