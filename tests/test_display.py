"""Short reprs and notebook HTML: readable, escaped, and free of empty rows."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

import modelpack
from modelpack._verify import VerifyReport
from modelpack.manifest import ColumnSpec, Fidelity, Manifest, ModelInfo, OutputFidelity, TensorSpec

EVIL = '<script>alert(1)</script>"'


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text = ""

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text += data


def _parse(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    return parser


def _spec(n_columns: int = 3, name: str = "X") -> TensorSpec:
    columns = tuple(ColumnSpec(f"c{i}{EVIL}", "float32") for i in range(n_columns))
    return TensorSpec(name, "float32", ("N", n_columns), columns=columns)


def test_tensor_spec_repr_is_one_short_line():
    spec = _spec()
    assert repr(spec) == "<TensorSpec X: float32[N, 3], 3 columns>"
    assert repr(TensorSpec("p", "float32", ("N", 3), role="probabilities")) == \
        "<TensorSpec p: float32[N, 3], role=probabilities>"
    assert repr(TensorSpec("z", "float32", kind="sequence")) == "<TensorSpec z: sequence of float32?>"


def test_model_inputs_print_briefly_and_show_column_names_in_html(add_one):
    with modelpack.load(add_one) as m:
        assert repr(m.inputs) == "(X: float32[N, 4])" and m.inputs == m.manifest.inputs
        assert isinstance(m.outputs, tuple) and len(repr(m.outputs)) < 80
    from modelpack._display import TensorSpecs

    html = TensorSpecs((_spec(15),))._repr_html_()
    parsed = _parse(html)
    assert "script" not in parsed.tags and f"c0{EVIL}" in parsed.text
    assert "… and 3 more" in parsed.text and "c11" in parsed.text and "c12" not in parsed.text


def test_one_column_inputs_show_their_categories_not_their_name_again():
    from modelpack._display import specs_html

    plan = TensorSpec("plan", "string", ("N", 1), columns=(ColumnSpec("plan", "string", categories=("a", EVIL)),))
    size = TensorSpec("size", "float32", ("N", 1), columns=(ColumnSpec("size", "float32"),))
    parsed = _parse(specs_html((plan, size)))
    assert "script" not in parsed.tags
    assert f"(a, {EVIL})" in parsed.text and "columns (categories)" in parsed.text
    assert parsed.text.count("plan") == 1 and parsed.text.count("size") == 1
    assert "columns" not in _parse(specs_html((size,))).text  # nothing to say: no column


def test_model_html_hides_empty_rows(add_one):
    with modelpack.load(add_one) as m:
        html = m._repr_html_()
    assert "description" not in html and "fidelity" not in html and "classes" not in html
    assert "runs on" in html and "CPUExecutionProvider" in html


def test_manifest_html_escapes_hostile_values():
    m = Manifest(name=EVIL, task="classification", model=ModelInfo("onnx", "model.onnx"), description=EVIL,
                 inputs=(_spec(2),), outputs=(TensorSpec("label", "string", ("N",), role="label"),), classes=(EVIL,))
    parsed = _parse(m._repr_html_())
    assert "script" not in parsed.tags
    assert parsed.text.count(EVIL) >= 3  # name, description, class
    assert "role" in parsed.text and "columns" in parsed.text


def test_fidelity_certificate_repr_and_html():
    fid = Fidelity(rows=50, passed=False, outputs=(
        OutputFidelity("label", 0.0, 0.0, 0, tolerance=0.0, label_agreement=0.98, passed=False),
        OutputFidelity(f"p{EVIL}", 2e-5, 1e-4, 7, tolerance=1e-4)))
    assert repr(fid) == "<Fidelity FAILED on 50 rows: 2 output(s), max abs diff 2e-05>"
    parsed = _parse(fid._repr_html_())
    assert "script" not in parsed.tags and f"p{EVIL}" in parsed.text
    assert "FAIL" in parsed.text and "98.00%" in parsed.text and "2e-05" in parsed.text


def test_verify_report_repr_and_html():
    report = VerifyReport(path=EVIL, ok=False, providers=("CPUExecutionProvider",),
                          checks=(("checksums", True, "9 files"), ("recorded outputs", False, EVIL)))
    assert repr(report) == (f"<VerifyReport {EVIL}: FAILED, 2 checks on CPUExecutionProvider, "
                            "failed: recorded outputs>")
    parsed = _parse(report._repr_html_())
    assert "script" not in parsed.tags and parsed.text.count(EVIL) == 2 and "FAIL" in parsed.text


def test_device_report_repr_and_html():
    pytest.importorskip("onnxruntime", reason="the device report probes ONNX Runtime's providers")
    report = modelpack.devices()
    assert repr(report).startswith("<DeviceReport onnxruntime ") and "cpu" in repr(report)
    assert len(repr(report)) < 150
    parsed = _parse(report._repr_html_())
    assert "CPUExecutionProvider" in parsed.text and "table" in parsed.tags
