"""PMML models running as their ONNX translation: the compile option, packages, hostile files.

Packages are written by ``pack`` (which certifies the compiled model against the
PMML evaluator on a real JVM) and loaded with each ``compile`` choice; hostile
packages replace the compiled model with other ONNX bytes and fix the checksums.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import modelpack
from modelpack._package import write_package
from modelpack.errors import ManifestError, ModelpackError, PackageError, RuntimeBackendError
from modelpack.manifest import Manifest

CORPORA = Path(__file__).resolve().parents[1] / "data" / "corpora" / "pmml"
IRIS = CORPORA / "pypmml-tests" / "single_iris_dectree.xml"
# A model type the compiler leaves to the evaluator
UNCOMPILED = CORPORA / "pmml4s-dmg-examples" / "models" / "anomaly" / "dmg_anomaly_iforest.xml"
AUDIT = CORPORA / "pmml4s-dmg-examples" / "models" / "tree" / "single_audit_dectree.xml"
ROWS = {"sepal_length": [5.1, 6.0, None, 7.7], "sepal_width": [3.5, 2.2, 3.0, 2.6],
        "petal_length": [1.4, 5.0, 4.0, 6.9], "petal_width": [0.2, 1.5, None, 2.3]}


def corpus(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"PMML corpus not found at {path}")
    return path


@pytest.fixture(scope="module")
def iris_package(pmml_java: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("pkg") / "iris.mpk"
    modelpack.pack(corpus(IRIS), dest, sample=ROWS)
    return dest


def same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert list(a) == list(b)
    for name in a:
        x, y = np.asarray(a[name]), np.asarray(b[name])
        if x.dtype == object or y.dtype == object:
            assert list(x) == list(y), name
        else:
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6, err_msg=name)


def test_pack_keeps_both_files_and_certifies_the_compiled_model(iris_package: Path) -> None:
    m = modelpack.inspect(iris_package)
    assert m.schema_version == "1.2"
    assert {f.path for f in m.files} >= {"model.pmml", "model.onnx"}
    assert m.compiled is not None and m.compiled.default == "onnx" and m.compiled.file == "model.onnx"
    assert m.compiled.fidelity is not None and m.compiled.fidelity.passed
    assert m.compiled.fidelity.rows == 512 + len(ROWS["sepal_length"])  # probe rows and the sample
    assert Manifest.from_json(m.to_json()) == m
    report = modelpack.verify(iris_package)
    assert report.ok, report


def test_the_manifest_validates_against_the_shipped_schema(iris_package: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(modelpack.__file__).parent / "schema" / "manifest-1.json").read_text())
    document = json.loads(modelpack.inspect(iris_package).to_json())
    document.pop("source", None)  # source.environment (schema 1.1) is not in the JSON Schema
    jsonschema.validate(document, schema)


def test_each_compile_choice_runs_what_it_says_and_they_agree(iris_package: Path) -> None:
    with modelpack.load(iris_package) as auto, modelpack.load(iris_package, compile="never") as jvm, \
            modelpack.load(iris_package, compile="onnx") as onnx_model:
        assert auto.engine == onnx_model.engine == "onnx (compiled from PMML)"
        assert "against the PMML evaluator on" in auto.engine_reason
        assert jvm.engine == "pmml4s" and jvm.engine_reason == "compile='never'"
        same(auto.run(ROWS), jvm.run(ROWS))
        assert list(auto.predict(ROWS)) == list(jvm.predict(ROWS))
        np.testing.assert_allclose(auto.predict_proba(ROWS), jvm.predict_proba(ROWS), rtol=1e-6)


def test_a_bare_pmml_file_compiles_at_load_and_falls_back_with_the_element(pmml_java: None) -> None:
    with modelpack.load(corpus(IRIS)) as bare:
        assert bare.engine == "onnx (compiled from PMML)" and "at load" in bare.engine_reason
    with modelpack.load(corpus(UNCOMPILED)) as uncompiled:
        assert uncompiled.engine == "pmml4s"
        assert "<AnomalyDetectionModel>" in uncompiled.engine_reason
    with pytest.raises(PackageError, match="AnomalyDetectionModel"):
        modelpack.load(UNCOMPILED, compile="onnx")
    with pytest.raises(RuntimeBackendError, match="compile"):
        modelpack.load(IRIS, compile="sometimes")


def test_pack_records_why_a_document_is_not_compiled(pmml_java: None, tmp_path: Path) -> None:
    m = modelpack.pack(corpus(UNCOMPILED), tmp_path / "uncompiled.mpk")
    assert m.compiled is not None and m.compiled.default == "pmml" and m.compiled.file is None
    assert "AnomalyDetectionModel" in m.compiled.reason
    with modelpack.load(tmp_path / "uncompiled.mpk") as model:
        assert model.engine == "pmml4s" and "AnomalyDetectionModel" in model.engine_reason
    with pytest.raises(ModelpackError, match="AnomalyDetectionModel"):
        modelpack.pack(UNCOMPILED, tmp_path / "no.mpk", compile="onnx")
    assert not (tmp_path / "no.mpk").exists()
    never = modelpack.pack(corpus(IRIS), tmp_path / "never.mpk", compile="never")
    assert never.compiled is not None and never.compiled.file is None
    with modelpack.load(tmp_path / "never.mpk") as model:
        assert model.engine == "pmml4s"


def test_strings_missing_values_and_integers_for_string_fields_as_the_evaluator_takes_them(pmml_java: None) -> None:
    rows = {"Age": [38, 50, None], "Employment": ["Private", None, "Consultant"], "Education": ["College", 7, None],
            "Marital": ["Married", "Absent", "Unmarried"], "Occupation": ["Service", "Executive", None],
            "Income": [81838.0, 72099.0, None], "Gender": ["Female", "Male", None],
            "Deductions": [0.0, 0.0, None], "Hours": [72, 30, 40]}
    with modelpack.load(corpus(AUDIT), compile="onnx") as compiled, \
            modelpack.load(AUDIT, compile="never") as jvm:
        same(compiled.run(rows), jvm.run(rows))


def _rewrite(package: Path, dest: Path, model: bytes) -> Path:
    with zipfile.ZipFile(package) as z:
        manifest = Manifest.from_json(z.read("modelpack.json"))
        files = {name: z.read(name) for name in z.namelist()
                 if name not in ("modelpack.json",) and not name.startswith(("schema/", "modelpack."))
                 and name in {f.path for f in manifest.files}}
    files["model.onnx"] = model
    write_package(dest, manifest.replace(files=()), files)
    return dest


def test_a_compiled_model_pointing_at_external_data_is_refused(iris_package: Path, tmp_path: Path) -> None:
    model = onnx.load_from_string(zipfile.ZipFile(iris_package).read("model.onnx"))
    secret = helper.make_tensor("leak", TensorProto.DOUBLE, [1], [0.0])
    secret.data_location = TensorProto.EXTERNAL
    del secret.double_data[:]
    secret.external_data.add(key="location", value="/etc/passwd")
    model.graph.initializer.append(secret)
    hostile = _rewrite(iris_package, tmp_path / "hostile.mpk", model.SerializeToString())
    with pytest.raises(ModelpackError, match="external"):
        modelpack.load(hostile)
    with modelpack.load(hostile, compile="never") as jvm:  # the document itself is untouched
        assert jvm.engine == "pmml4s"


def test_a_compiled_model_with_other_outputs_is_refused(iris_package: Path, tmp_path: Path) -> None:
    model = onnx.load_from_string(zipfile.ZipFile(iris_package).read("model.onnx"))
    old = model.graph.output[0].name
    model.graph.output[0].name = "something_else"
    for node in model.graph.node:
        node.output[:] = ["something_else" if o == old else o for o in node.output]
    hostile = _rewrite(iris_package, tmp_path / "renamed.mpk", model.SerializeToString())
    with pytest.raises(ManifestError, match="outputs"):
        modelpack.load(hostile)


def test_a_tampered_compiled_model_fails_its_checksum(iris_package: Path, tmp_path: Path) -> None:
    dest = tmp_path / "tampered.mpk"
    with zipfile.ZipFile(iris_package) as src, zipfile.ZipFile(dest, "w") as out:
        for item in src.infolist():
            data = src.read(item.filename)
            out.writestr(item, data + b"\x00" if item.filename == "model.onnx" else data)
    with pytest.raises(ModelpackError, match="model.onnx"):
        modelpack.load(dest)


def test_a_manifest_naming_the_document_as_its_compiled_model_is_refused(iris_package: Path) -> None:
    m = modelpack.inspect(iris_package)
    bad = json.loads(m.to_json())
    bad["compiled"]["file"] = "model.pmml"
    with pytest.raises(ManifestError, match="compiled.file"):
        Manifest.from_dict(bad)


def test_without_java_pack_writes_the_compiled_model_uncompared_and_it_runs(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    dest = tmp_path / "iris.mpk"
    script = ("import modelpack\n"
              f"m = modelpack.pack({str(corpus(IRIS))!r}, {str(dest)!r})\n"
              "print('DEFAULT', m.compiled.default, m.compiled.fidelity is None)\n"
              "print('REASON', m.compiled.reason)\n"
              f"model = modelpack.load({str(dest)!r})\n"
              "print('ENGINE', model.engine)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "PATH")}
    env.update(PATH=str(tmp_path), JAVA_HOME="")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "DEFAULT onnx True" in done.stdout
    assert "not compared with the PMML evaluator" in done.stdout and "no Java" in done.stdout
    assert "ENGINE onnx (compiled from PMML)" in done.stdout


def test_the_tree_engine_may_take_compiled_trees_but_not_the_evaluator(iris_package: Path) -> None:
    # engine= concerns ONNX tree ensembles: a compiled PMML tree is one, the JVM's document is not.
    with modelpack.load(iris_package, engine="modelpack-trees") as model:
        assert model.engine != "pmml4s"
        rows = {k: [v if v is not None else 1.0 for v in vals] * 16 for k, vals in ROWS.items()}
        with modelpack.load(iris_package, compile="never") as jvm:
            np.testing.assert_array_equal(model.predict(rows), jvm.predict(rows))
    with pytest.raises(RuntimeBackendError, match=r"tree engine runs ONNX tree ensembles.*compile='never'"):
        modelpack.load(iris_package, compile="never", engine="modelpack-trees")
