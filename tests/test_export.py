"""export() with a real converter registered in-process: fidelity certificate, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import modelpack
from modelpack import _registry as registry
from modelpack.manifest import Source


class TinyLinear:
    """A model of a 'framework' that lives in this test module."""

    def __init__(self, coef: np.ndarray, intercept: float) -> None:
        self.coef, self.intercept = coef, intercept

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) @ self.coef + self.intercept


class TinyConverter:
    name = "tiny"
    frameworks = (TinyLinear.__module__.partition(".")[0],)
    formats = ("onnx",)

    def __init__(self, drift: float = 0.0, crash: bool = False) -> None:
        self.drift, self.crash = drift, crash

    def convert(self, model, sample, *, format, options):
        if self.crash:
            raise ZeroDivisionError("converter bug")
        dtype = np.float64 if options.get("dtype") == "float64" else np.float32
        elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
        W = numpy_helper.from_array(model.coef.reshape(-1, 1).astype(dtype), "W")
        b = numpy_helper.from_array(np.array([model.intercept + self.drift], dtype=dtype), "b")
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["X", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
            "tiny", [helper.make_tensor_value_info("X", elem, ["N", len(model.coef)])],
            [helper.make_tensor_value_info("y", elem, ["N", 1])], [W, b])
        onx = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        spec = modelpack.TensorSpec("y", str(np.dtype(dtype)), ("N", 1), role="value")
        return registry.Conversion(
            model=onx.SerializeToString(), format="onnx", task="regression",
            source=Source(framework="tiny", model_class="TinyLinear"),
            reference={"value": model.predict(sample)}, outputs=(spec,), dtype=str(np.dtype(dtype)))


@pytest.fixture
def tiny():
    registry.register(TinyConverter(), replace=True)
    yield TinyLinear(np.array([0.5, -2.0, 3.0]), 0.25)
    for fw in TinyConverter.frameworks:
        registry._registered.pop(fw, None)


X = np.random.default_rng(0).normal(size=(50, 3))


def test_export_records_a_passing_certificate(tiny, tmp_path):
    m = modelpack.export(tiny, tmp_path / "t.mpk", sample=X, name="tiny", version="1.0.0")
    assert m.fidelity.passed and m.fidelity.rows == 50
    (out,) = m.fidelity.outputs
    assert out.output == "value" and out.max_abs_diff < 1e-5 and out.tolerance == 1e-4
    assert m.samples.reference == "samples/reference.npz"
    with modelpack.load(tmp_path / "t.mpk") as loaded:
        np.testing.assert_allclose(loaded.predict(X), tiny.predict(X), atol=1e-5)
    report = modelpack.verify(tmp_path / "t.mpk")
    assert report.ok, str(report)
    assert [c[0] for c in report.checks] == ["checksums", "signature", "recorded outputs", "source model outputs"]


def test_float64_export_is_recorded_and_tighter(tiny, tmp_path):
    m = modelpack.export(tiny, tmp_path / "t.mpk", sample=X, dtype="float64")
    assert m.fidelity.dtype == "float64" and m.fidelity.outputs[0].max_abs_diff < 1e-12
    assert m.inputs[0].dtype == "float64"


def test_beyond_tolerance_raises_and_writes_nothing(tiny, tmp_path):
    registry.register(TinyConverter(drift=0.01), replace=True)
    with pytest.raises(modelpack.FidelityError) as err:
        modelpack.export(tiny, tmp_path / "t.mpk", sample=X, name="tiny")
    text = str(err.value)
    assert text.startswith("tiny: the exported model differs from the source on the sample: value: max abs diff 0.01")
    assert "worst row" in text and "strict=False" in text and "dtype='float64'" in text
    assert list(tmp_path.iterdir()) == []


def test_strict_false_writes_with_the_figures_and_warns(tiny, tmp_path):
    registry.register(TinyConverter(drift=0.01), replace=True)
    with pytest.warns(RuntimeWarning, match="differs from the source"):
        m = modelpack.export(tiny, tmp_path / "t.mpk", sample=X, strict=False)
    assert not m.fidelity.passed and m.fidelity.outputs[0].max_abs_diff == pytest.approx(0.01, rel=1e-3)
    assert modelpack.inspect(tmp_path / "t.mpk").fidelity == m.fidelity


def test_a_larger_tolerance_accepts_the_drift(tiny, tmp_path):
    registry.register(TinyConverter(drift=0.01), replace=True)
    m = modelpack.export(tiny, tmp_path / "t.mpk", sample=X, tolerance=0.02)
    assert m.fidelity.passed and m.fidelity.outputs[0].tolerance == 0.02


def test_converter_crash_becomes_a_conversion_error(tiny, tmp_path):
    registry.register(TinyConverter(crash=True), replace=True)
    with pytest.raises(modelpack.ConversionError) as err:
        modelpack.export(tiny, tmp_path / "t.mpk", sample=X)
    assert "the tiny converter failed on TinyLinear: ZeroDivisionError: converter bug" in str(err.value)
    assert isinstance(err.value.__cause__, ZeroDivisionError)


def test_no_converter_names_the_class_and_the_install_command(tmp_path):
    class Mystery:
        pass

    Mystery.__module__ = "mysteryml.models"
    with pytest.raises(modelpack.NoConverterError) as err:
        modelpack.export(Mystery(), tmp_path / "m.mpk", sample=X)
    assert "no installed converter exports mysteryml.models." in str(err.value)
    assert "pip install 'modelpack[mysteryml]'" in str(err.value)
    assert isinstance(err.value, TypeError)


def test_register_refuses_duplicates_and_non_converters(tiny):
    with pytest.raises(modelpack.ModelpackError, match="already have a converter"):
        registry.register(TinyConverter())
    with pytest.raises(modelpack.ModelpackError, match="is not a converter"):
        registry.register(object())


def test_dispatch_walks_the_mro_first_match_wins(tiny):
    class FromOtherFramework(TinyLinear):
        pass

    FromOtherFramework.__module__ = "otherml.wrappers"
    conv = TinyConverter()
    assert registry.find_converter(FromOtherFramework(np.ones(3), 0.0)).name == "tiny"

    class OtherConverter(TinyConverter):
        name = "other"
        frameworks = ("otherml",)

    registry.register(OtherConverter())
    try:
        assert registry.find_converter(FromOtherFramework(np.ones(3), 0.0)).name == "other"
    finally:
        registry._registered.pop("otherml")
    assert conv.name == "tiny"


def test_list_converters_shows_registered_ones(tiny):
    rows = {r["name"]: r for r in modelpack.list_converters()}
    assert rows["tiny"]["origin"] == "registered" and rows["tiny"]["formats"] == ["onnx"]


def test_export_with_a_bad_sample_is_an_input_error(tiny, tmp_path):
    with pytest.raises(modelpack.ModelpackError):
        modelpack.export(tiny, tmp_path / "t.mpk", sample=np.array([["a", "b", "c"]]))
    assert list(tmp_path.iterdir()) == []




@pytest.mark.parametrize(("format", "fix"), [("onxx", "Pass format='onnx'."), ("PMLL", "Pass format='pmml'."),
                                             ("tflite", "format='onnx' (the default) or format='pmml'")])
def test_a_format_that_does_not_exist_gets_the_right_name(tiny, tmp_path, format, fix):
    with pytest.raises(modelpack.ConversionError, match=f"format {format!r} is not one of onnx, pmml") as caught:
        modelpack.export(tiny, tmp_path / "t.mpk", sample=X, format=format)
    assert fix in caught.value.fix and not (tmp_path / "t.mpk").exists()
