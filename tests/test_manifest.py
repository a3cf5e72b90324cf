import json
import warnings
from pathlib import Path

import pytest

import modelpack
from modelpack.manifest import SCHEMA_VERSION, ColumnSpec, Manifest, ModelInfo, TensorSpec

GOLDEN = Path(__file__).parent / "data" / "golden-1.0"
SCHEMA = Path(modelpack.__file__).parent / "schema" / "manifest-1.json"


def small() -> Manifest:
    return Manifest(name="m", task="regression", model=ModelInfo(format="onnx", file="model.onnx"),
                    inputs=(TensorSpec("X", "float32", ("N", 2), columns=(ColumnSpec("a", "float32"),
                                                                         ColumnSpec("b", "float32"))),),
                    outputs=(TensorSpec("y", "float32", ("N", 1), role="value"),))


def test_golden_manifest_round_trips_byte_for_byte():
    raw = (GOLDEN / "modelpack.json").read_bytes()
    assert Manifest.from_json(raw).to_json() == raw


def test_round_trip_keeps_every_field():
    m = small()
    assert Manifest.from_json(m.to_json()) == m
    assert json.loads(m.to_json())["schema_version"] == SCHEMA_VERSION
    assert list(json.loads(m.to_json()))[0] == "schema_version"


def test_golden_and_written_manifests_match_the_published_schema():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for doc in (json.loads((GOLDEN / "modelpack.json").read_text()), small().to_dict()):
        assert not list(validator.iter_errors(doc))
    bad = {**small().to_dict(), "surprise": 1}
    assert list(validator.iter_errors(bad))


def test_unknown_key_is_refused_with_the_way_out():
    doc = {**small().to_dict(), "surprise": 1}
    with pytest.raises(modelpack.ManifestError) as err:
        Manifest.from_dict(doc)
    assert str(err.value) == ("manifest has unknown key(s) ['surprise']. "
                              "Put your own data under 'metadata' or 'extensions'.")
    assert isinstance(err.value, ValueError)


def test_nested_unknown_key_names_its_place():
    doc = small().to_dict()
    doc["inputs"][0]["colour"] = "red"
    with pytest.raises(modelpack.ManifestError, match=r"manifest\.inputs\[0\] has unknown key"):
        Manifest.from_dict(doc)


def test_newer_major_version_is_refused_naming_the_writer():
    doc = {**small().to_dict(), "schema_version": "2.0", "generator": "modelpack 3.1.0"}
    with pytest.raises(modelpack.SchemaVersionError) as err:
        Manifest.from_dict(doc)
    assert "written by modelpack 3.1.0" in str(err.value)
    assert "pip install -U modelpack" in str(err.value)


def test_newer_minor_version_drops_unknown_keys_with_a_warning():
    doc = {**small().to_dict(), "schema_version": "1.9", "new_field": {"x": 1}}
    doc["outputs"][0]["new_attr"] = True
    with pytest.warns(UserWarning, match="new_field"):
        m = Manifest.from_dict(doc)
    assert m.outputs[0].role == "value"
    assert m.schema_version == "1.9"


@pytest.mark.parametrize(("change", "message"), [
    ({"task": "guessing"}, "task 'guessing' is not one of"),
    ({"name": ""}, "the manifest has no name"),
    ({"inputs": "X"}, "manifest.inputs must be a list"),
    ({"model": {"format": "pickle", "file": "m.pkl"}}, "model format 'pickle'"),
    ({"version": 3}, "manifest.version must be str"),
    ({"schema_version": "one"}, "schema_version 'one' is not 'MAJOR.MINOR'"),
])
def test_bad_values_are_refused(change, message):
    with pytest.raises(modelpack.ManifestError, match=message):
        Manifest.from_dict({**small().to_dict(), **change})


def test_missing_required_key_is_named():
    doc = small().to_dict()
    del doc["outputs"]
    with pytest.raises(modelpack.ManifestError, match=r"lacks required key\(s\) \['outputs'\]"):
        Manifest.from_dict(doc)


def test_bad_json_is_a_manifest_error():
    with pytest.raises(modelpack.ManifestError, match="not valid JSON"):
        Manifest.from_json(b"{")
    with pytest.raises(modelpack.ManifestError, match="not valid JSON"):
        Manifest.from_json(b"[" * 100_000 + b"]" * 100_000)


def test_manifest_displays_in_one_line_and_as_html():
    m = small()
    assert repr(m) == "<Manifest m 0.0.0 regression onnx: 1 input(s), 1 output(s)>"
    html = m._repr_html_()
    assert "<table>" in html and "<code>X</code>" in html


def test_manifest_module_imports_only_the_standard_library():
    import ast

    tree = ast.parse(Path(modelpack.manifest.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert imported <= {"dataclasses", "json", "types", "typing", "warnings", "datetime", "__future__", "collections"}


def test_no_warning_for_current_version():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Manifest.from_json(small().to_json())


@pytest.mark.parametrize(("compiled", "message"), [
    ({"default": "onnx"}, "names no compiled file"),
    ({"default": "onnx", "file": "model.onnx", "fidelity": {"rows": 10, "passed": False}},
     "disagrees with the PMML evaluator"),
])
def test_a_compiled_default_its_own_entry_contradicts_is_refused(compiled, message):
    doc = {**small().to_dict(), "model": {"format": "pmml", "file": "model.pmml"}}
    Manifest.from_dict({**doc, "compiled": {"default": "onnx", "file": "model.onnx",
                                            "fidelity": {"rows": 10, "passed": True}}})
    with pytest.raises(modelpack.ManifestError, match=message):
        Manifest.from_dict({**doc, "compiled": compiled})
