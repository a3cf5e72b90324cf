"""The PMML backend against the pmml4s DMG cases and pypmml's own test model.

Every test here runs the real evaluator on a real JVM; without Java or pypmml
they skip and say why. The no-Java path is checked in a subprocess whose PATH
and JAVA_HOME are emptied.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelpack
from modelpack._formats.pmml import describe
from modelpack._package import Package
from modelpack.errors import (
    DeviceError,
    DeviceUnavailableError,
    DTypeError,
    InputError,
    MissingColumnError,
    RuntimeBackendError,
    ShapeError,
    UnsafePackageError,
)
from modelpack.manifest import Manifest

CORPORA = Path(__file__).resolve().parents[1] / "data" / "corpora" / "pmml"
DMG = CORPORA / "pmml4s-dmg-examples"
PYPMML = CORPORA / "pypmml-tests"
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def java() -> Any:
    pytest.importorskip("pypmml", reason="pypmml is not installed: pip install 'modelpack[pmml]'")
    from modelpack._runtime.pmml import runtime

    try:
        return runtime()
    except RuntimeBackendError as exc:
        pytest.skip(f"no JVM for PMML here: {exc}")


def corpus(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"PMML corpus not found at {path.resolve()}")
    return path


def dmg_cases() -> list[dict[str, Any]]:
    cases = DMG / "cases.json"
    if not cases.is_file():
        return []
    return json.loads(cases.read_text())["cases"]  # type: ignore[no-any-return]


def open_backend(data: bytes, name: str = "model.pmml", **options: Any) -> Any:
    """The backend over a package held in memory, its manifest from describe()."""
    from modelpack._runtime.pmml import open

    d = describe(data, name="model.pmml")
    manifest = Manifest(name="t", task=d.task or "other", model=d.model, inputs=d.inputs, outputs=d.outputs,
                        classes=d.classes)
    options.setdefault("compile", "never")  # the evaluator; the compiled model: test_pmml_compiled.py
    return open(Package(path=Path(name), manifest=manifest, manifest_bytes=b"", _data={"model.pmml": data}),
                **options)


def assert_matches(expected: dict[str, Any], got: dict[str, Any], where: str) -> None:
    for name, want in expected.items():
        value = got[name]
        if want is None:
            assert value is None or (isinstance(value, float) and math.isnan(value)), (where, name, value)
        elif isinstance(want, bool) or isinstance(want, str):
            assert value == want, (where, name, value)
        else:
            assert abs(float(value) - want) <= TOLERANCE, (where, name, value, want)


# -- the corpora ----------------------------------------------------------------------------
@pytest.mark.parametrize("case", dmg_cases(), ids=lambda c: f"{c['model']}:{sorted(c['input'])}")
def test_dmg_case(java: Any, case: dict[str, Any]) -> None:
    backend = open_backend(corpus(DMG / "models" / case["model"]).read_bytes())
    # Fields absent from the record are missing values, as in pmml4s's own tests.
    names = list(case["expected"])
    out = backend.run({k: np.array([v]) for k, v in case["input"].items()}, names)
    assert_matches(case["expected"], {n: o[0] for n, o in zip(names, out, strict=True)}, case["model"])


def test_dmg_cases_through_load(java: Any) -> None:
    checked = 0
    for case in dmg_cases():
        path = corpus(DMG / "models" / case["model"])
        with modelpack.load(path) as model:
            fields = {i.name: i.dtype for i in model.inputs}
            absent = set(fields) - set(case["input"])
            if set(case["input"]) - set(fields) or any(fields[f] != "float64" for f in absent):
                # The target as input (read only for residuals), or a missing text field (Model
                # wants strings there): covered through the backend above.
                continue
            record = {**case["input"], **{f: float("nan") for f in absent}}
            outputs = model.run(record)
            assert_matches(case["expected"], {n: outputs[n][0] for n in case["expected"]}, case["model"])
            checked += 1
    assert checked >= 20


def test_pypmml_iris_model(java: Any) -> None:
    expected = json.loads(corpus(PYPMML / "expected.json").read_text())
    with modelpack.load(PYPMML / expected["model"]) as model:
        assert [o.name for o in model.outputs] == expected["output_names"]
        for case in expected["cases"]:
            outputs = model.run(case["input"])
            assert_matches(case["expected"], {n: v[0] for n, v in outputs.items()}, "iris")
        assert model.predict(expected["cases"][1]["input"]).tolist() == ["Iris-versicolor"]
        np.testing.assert_allclose(model.predict_proba(expected["cases"][1]["input"]),
                                   [[0.0, 0.9074074074074074, 0.09259259259259259]], atol=TOLERANCE)


def test_whole_csv_in_one_batch_equals_pypmml_record_by_record(java: Any) -> None:
    pd = pytest.importorskip("pandas")
    from pypmml import Model as PypmmlModel

    frame = pd.read_csv(corpus(PYPMML / "Iris.csv"))
    evaluator = PypmmlModel.fromFile(str(PYPMML / "single_iris_dectree.xml"))
    reference = [dict(evaluator.predict(record)) for record in frame.drop(columns="class").to_dict("records")]
    with modelpack.load(PYPMML / "single_iris_dectree.xml") as model:
        ours = model.run(frame)
        for name, column in ours.items():
            want = [r[name] for r in reference]
            if column.dtype == object:
                assert column.tolist() == [str(v) for v in want], name
            else:
                np.testing.assert_allclose(column, np.array(want, dtype=float), atol=TOLERANCE, err_msg=name)
        assert (model.predict(frame) == frame["class"].to_numpy()).mean() > 0.9


def test_describe_agrees_with_the_evaluator(java: Any) -> None:
    """Names and kinds of inputs and outputs, for every document pmml4s loads."""
    checked = 0
    for path in sorted(corpus(CORPORA).glob("**/*.xml")):
        data = path.read_bytes()
        try:
            model = java.load(data.decode("utf-8"))
        except java.JException:
            continue  # model composition: pmml4s has no implementation (tested below)
        d = describe(data, name="model.pmml")
        assert [i.name for i in d.inputs] == [str(n) for n in model.inputNames()], path.name
        kinds = {"number": "float64", "bool": "bool", "string": "string"}
        assert [(o.name, o.dtype) for o in d.outputs] == [
            (name, kinds[kind]) for name, kind in java.output_fields(model)], path.name
        checked += 1
    assert checked >= 45


# -- batches, dtypes, missing values ------------------------------------------------------------
def test_batch_equals_row_by_row_with_missing_values(java: Any) -> None:
    backend = open_backend(corpus(DMG / "models" / "tree" / "dmg_tree_missing_value_strategies.xml").read_bytes())
    rng = np.random.default_rng(0)
    n = 60
    temperature = rng.uniform(30, 90, n)
    temperature[::7] = np.nan
    outlook = np.array(rng.choice(["sunny", "overcast", "rain"], n), dtype=object)
    outlook[::5] = None
    feeds = {"temperature": temperature, "humidity": rng.uniform(40, 100, n), "outlook": outlook}
    batch = backend.run(feeds)
    for i in range(n):
        row = backend.run({k: v[i:i + 1] for k, v in feeds.items()})
        for column, value in zip(batch, row, strict=True):
            assert column[i] == value[0] or (column[i] != column[i] and value[0] != value[0])
    assert batch[0].dtype == object and batch[1].dtype == np.float64


def test_missing_integer_is_missing_not_zero(java: Any) -> None:
    """NaN in an integer field must reach pmml4s as missing (a plain cast would make it 0)."""
    backend = open_backend(corpus(DMG / "models" / "regression" / "dmg_regression_multi_classes.xml").read_bytes())
    feeds = {"age": np.array([20.0] * 3), "work": np.array([10.0] * 3), "sex": np.array(["0"] * 3, dtype=object),
             "minority": np.array([0.0, np.nan, 1.0])}
    proba = backend.run(feeds, ["probability_clerical"])[0]
    absent = backend.run({k: v[:1] for k, v in feeds.items() if k != "minority"}, ["probability_clerical"])[0]
    assert proba[1] == absent[0] and proba[1] not in (proba[0], proba[2])


def test_output_dtypes(java: Any) -> None:
    backend = open_backend(corpus(DMG / "models" / "anomaly" / "dmg_anomaly_iforest.xml").read_bytes())
    score, flag = backend.run({"sepal_length": np.array([4.6, 5.0]), "petal_length": np.array([1.5, 1.4]),
                               "petal_width": np.array([5.8, 0.2])})
    assert score.dtype == np.float64 and flag.dtype == np.bool_ and flag[0]


def test_empty_batch(java: Any) -> None:
    backend = open_backend(corpus(PYPMML / "single_iris_dectree.xml").read_bytes())
    out = backend.run({"sepal_length": np.empty(0)}, ["predicted_class", "probability"])
    assert [o.shape for o in out] == [(0,), (0,)] and out[1].dtype == np.float64


ECHO = b"""<PMML version="4.4"><Header/><DataDictionary>
<DataField name="x" optype="continuous" dataType="double"/><DataField name="name" optype="categorical" dataType="string"/>
<DataField name="y" optype="continuous" dataType="double"/></DataDictionary>
<RegressionModel functionName="regression"><MiningSchema><MiningField name="x"/><MiningField name="name"/>
<MiningField name="y" usageType="target"/></MiningSchema>
<Output><OutputField name="y_hat" feature="predictedValue" dataType="double"/>
<OutputField name="echo" feature="transformedValue" dataType="string"><FieldRef field="name"/></OutputField></Output>
<RegressionTable intercept="1"><NumericPredictor name="x" coefficient="2"/></RegressionTable></RegressionModel></PMML>"""


def test_text_outputs_survive_any_character(java: Any) -> None:
    backend = open_backend(ECHO)
    names = np.array(["plain", "with\x01separator", None, "é ünïcode", ""], dtype=object)
    y_hat, echo = backend.run({"x": np.arange(5.0), "name": names})
    np.testing.assert_allclose(y_hat, 1 + 2 * np.arange(5.0))
    assert echo.tolist() == names.tolist()


def test_the_tree_engine_is_refused_before_java_starts() -> None:
    """engine= concerns ONNX tree ensembles: naming the tree engine on PMML is an error, not ignored."""
    with pytest.raises(RuntimeBackendError, match="tree engine runs ONNX tree ensembles") as info:
        open_backend(ECHO, engine="modelpack-trees")
    assert "engine='auto'" in info.value.fix
    with pytest.raises(RuntimeBackendError, match="unknown engine 'fast'"):
        open_backend(ECHO, engine="fast")


def test_threads_share_a_model(java: Any) -> None:
    backend = open_backend(corpus(PYPMML / "single_iris_dectree.xml").read_bytes())
    rng = np.random.default_rng(1)
    feeds = [{c: rng.uniform(0, 7, 200) for c in backend.input_names} for _ in range(4)]
    alone = [backend.run(f, ["probability_Iris-setosa"])[0] for f in feeds]
    together: list[Any] = [None] * 4

    def work(i: int) -> None:
        for _ in range(5):
            together[i] = backend.run(feeds[i], ["probability_Iris-setosa"])[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_array_equal(a, b)


# -- bad input and bad models -----------------------------------------------------------------------
@pytest.fixture
def iris(java: Any) -> Any:
    return open_backend(corpus(PYPMML / "single_iris_dectree.xml").read_bytes())


def test_unknown_input_suggests_the_name(iris: Any) -> None:
    with pytest.raises(MissingColumnError, match="sepal_lenght") as caught:
        iris.run({"sepal_lenght": np.array([1.0])})
    assert "sepal_length" in str(caught.value)


def test_unknown_output(iris: Any) -> None:
    with pytest.raises(InputError, match="no output"):
        iris.run({"sepal_length": np.array([1.0])}, ["probability_Iris-rosa"])


def test_text_for_a_number_is_a_dtype_error(iris: Any) -> None:
    with pytest.raises(DTypeError, match="sepal_width"):
        iris.run({"sepal_width": np.array(["wide"], dtype=object)})


def test_ragged_fields(iris: Any) -> None:
    with pytest.raises(ShapeError, match="different lengths"):
        iris.run({"sepal_width": np.ones(3), "petal_width": np.ones(2)})


def test_closed_backend(iris: Any) -> None:
    iris.close()
    iris.close()
    with pytest.raises(RuntimeBackendError, match="closed"):
        iris.run({"sepal_width": np.ones(1)})


def test_model_pmml4s_cannot_score(java: Any) -> None:
    data = corpus(DMG / "models" / "mining" / "dmg_model_selection_mining.xml").read_bytes()
    with pytest.raises(RuntimeBackendError, match="does not implement") as caught:
        open_backend(data)
    assert caught.value.__cause__ is not None


def test_hostile_document_never_reaches_java(java: Any) -> None:
    evil = b'<?xml version="1.0"?><!DOCTYPE PMML [<!ENTITY x SYSTEM "file:///etc/passwd">]><PMML/>'
    good = describe(corpus(PYPMML / "single_iris_dectree.xml").read_bytes(), name="model.pmml")
    manifest = Manifest(name="t", task="classification", model=good.model, inputs=good.inputs,
                        outputs=good.outputs, classes=good.classes)
    from modelpack._runtime.pmml import open

    with pytest.raises(UnsafePackageError):
        open(Package(path=Path("evil"), manifest=manifest, manifest_bytes=b"", _data={"model.pmml": evil}))


# -- devices ------------------------------------------------------------------------------------
def test_devices(java: Any) -> None:
    data = corpus(PYPMML / "single_iris_dectree.xml").read_bytes()
    assert open_backend(data, device="auto").providers == ["PMML"]
    with pytest.warns(RuntimeWarning, match="CPU inside the Java virtual machine"):
        open_backend(data, device="cuda")
    with pytest.raises(DeviceUnavailableError, match="CPU inside the Java"):
        open_backend(data, device=["cuda", "cpu"], fallback=False)
    with pytest.raises(DeviceError, match="cuda"):
        open_backend(data, device="cdua")


# -- Java missing, Java left behind --------------------------------------------------------------
def test_without_java_the_error_says_how_to_install_it(tmp_path: Path) -> None:
    model = corpus(PYPMML / "single_iris_dectree.xml")
    script = ("import modelpack\n"
              "try:\n"
              f"    modelpack.load({str(model)!r}, compile='never')\n"
              "except modelpack.RuntimeBackendError as exc:\n"
              "    print('ERROR', exc)\n"
              f"m = modelpack.load({str(model)!r})\n"  # compiled: no Java needed
              "print('COMPILED', m.engine, [str(v) for v in m.predict({'sepal_length': [5.1], "
              "'sepal_width': [3.5], 'petal_length': [1.4], 'petal_width': [0.2]})])\n")
    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "PATH")}
    env.update(PATH=str(tmp_path), JAVA_HOME="")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    print(done.stdout, done.stderr)
    assert done.returncode == 0 and done.stdout.startswith("ERROR")
    assert "no Java was found" in done.stdout and "JAVA_HOME" in done.stdout and "Java 8" in done.stdout
    assert "COMPILED onnx (compiled from PMML) ['Iris-setosa']" in done.stdout


def test_a_wrong_java_home_is_named(tmp_path: Path) -> None:
    from modelpack._runtime.pmml import find_libjvm

    with pytest.raises(RuntimeBackendError, match="is not a Java installation"):
        find_libjvm({"JAVA_HOME": str(tmp_path)})


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to list child processes")
def test_no_java_process_is_left_behind(java: Any) -> None:
    before = java_children()  # other tests may run their own (Spark's gateway is one)
    with modelpack.load(corpus(PYPMML / "single_iris_dectree.xml")) as model:
        model.predict({"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2})
    assert java_children() - before == set()


def java_children() -> set[int]:
    """Process ids of this process's children whose command is java."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid() and (stat.parent / "comm").read_text().strip() == "java":
                found.add(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we read it
    return found


# -- every model type: one batch equals pypmml record by record ------------------------------------
def random_records(d: Any, rows: int, seed: int) -> list[dict[str, Any]]:
    """Records over the model's fields: categories where declared, numbers otherwise, some missing."""
    rng = np.random.default_rng(seed)
    records: list[dict[str, Any]] = [{} for _ in range(rows)]
    for spec in d.inputs:
        column = spec.columns[0]
        if column.categories:
            values = [column.categories[i] for i in rng.integers(0, len(column.categories), rows)]
        elif spec.dtype == "string":
            values = [str(v) for v in rng.integers(0, 3, rows)]
        else:
            values = rng.uniform(0, 10, rows).round(2).tolist()
        for i, record in enumerate(records):
            record[spec.name] = None if i % 7 == 3 else values[i]
    return records


@pytest.mark.parametrize("path", sorted(DMG.glob("models/*/*.xml")) if DMG.is_dir() else [],
                         ids=lambda p: p.name)
def test_batch_equals_pypmml_on_every_model_type(java: Any, path: Path) -> None:
    from pypmml import Model as PypmmlModel

    data = path.read_bytes()
    try:
        evaluator = PypmmlModel.fromString(data.decode("utf-8"))
    except Exception as exc:  # what pypmml cannot load is tested in test_model_pmml4s_cannot_score
        pytest.skip(f"pmml4s cannot load {path.name}: {exc}")
    backend = open_backend(data)
    d = describe(data, name="model.pmml")
    records = random_records(d, 25, seed=len(path.name))
    feeds = {s.name: np.array([r[s.name] for r in records],
                              dtype=np.float64 if s.dtype == "float64" else object) for s in d.inputs}
    for spec in d.inputs:  # None is NaN in a float column
        if spec.dtype == "float64":
            feeds[spec.name] = np.array([np.nan if v is None else v for v in feeds[spec.name]], dtype=np.float64)
    expected = []
    for record in records:
        try:
            expected.append(dict(evaluator.predict(record)))
        except Exception:  # pmml4s fails on this record (e.g. kNN with two targets)
            expected.append(None)
    if None in expected:  # the batch holding it must fail too, as a modelpack error
        with pytest.raises(RuntimeBackendError, match="PMML evaluator raised"):
            backend.run(feeds)
        keep = [i for i, e in enumerate(expected) if e is not None]
        feeds = {k: v[keep] for k, v in feeds.items()}
        expected = [expected[i] for i in keep]
        if not keep:
            return
    ours = dict(zip(backend.output_names, backend.run(feeds), strict=True))
    for i, theirs in enumerate(expected):
        if set(theirs) != set(ours) and len(theirs) == len(ours) == 1:
            # A model chain: pmml4s names the result after the segment that fired; the
            # backend keeps the declared name.
            theirs = {next(iter(ours)): next(iter(theirs.values()))}
        for name, column in ours.items():
            want, got = theirs.get(name), column[i]
            if want is None or (isinstance(want, float) and math.isnan(want)):
                assert got is None or (isinstance(got, float) and math.isnan(got)), (path.name, i, name, got)
            elif column.dtype == np.float64:
                assert abs(got - float(want)) <= TOLERANCE, (path.name, i, name, got, want)
            else:
                assert str(got).lower() == str(want).lower(), (path.name, i, name, got, want)
