"""Missing values: the ordinary pipeline with missing strings, and NaN where the model refuses it.

It exports to ONNX (and to PMML), and predicts on DataFrames, records and CSV files
holding NaN, None or pd.NA in that column with exactly scikit-learn's answers.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("skl2onnx")
pd = pytest.importorskip("pandas")

from sklearn.compose import make_column_transformer  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402

import modelpack  # noqa: E402


def _frame(n: int, seed: int) -> Any:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"age": rng.normal(40, 10, n),
                          "plan": rng.choice(["basic", "pro", "team", ""], n).astype(object),
                          "region": rng.choice(["north", "south"], n).astype(object)})
    frame.loc[::7, "plan"] = np.nan
    frame.loc[3::11, "plan"] = None
    frame.loc[5::9, "region"] = None
    frame.loc[::13, "age"] = np.nan
    return frame


def _pipeline(strategy: str) -> Any:
    imputer = (SimpleImputer(strategy="constant", fill_value="unknown") if strategy == "constant"
               else SimpleImputer(strategy="most_frequent"))
    return make_pipeline(make_column_transformer(
        (make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), ["age"]),
        (make_pipeline(imputer, OneHotEncoder(handle_unknown="ignore")), ["plan", "region"])),
        LogisticRegression())


@pytest.fixture(scope="module", params=["most_frequent", "constant"])
def fitted(request: pytest.FixtureRequest) -> tuple[Any, Any]:
    train = _frame(300, 0)
    y = ((train["age"].fillna(40) > 40) ^ (train["plan"] == "pro") ^ train["plan"].isna()).astype(int)
    return _pipeline(request.param).fit(train, y), _frame(120, 1)


def test_it_exports_and_predicts_missing_strings_as_scikit_learn_does(fitted, tmp_path: Path) -> None:
    pipe, test = fitted
    manifest = modelpack.export(pipe, tmp_path / "m.mpk", sample=test[:20])
    assert manifest.fidelity.passed
    imputer = pipe[0].named_transformers_["pipeline-2"][0]
    assert math.isnan(imputer.missing_values)  # the user's model is left as it was
    fills = {s.name: s.columns[0].missing_value_replacement for s in manifest.inputs}
    assert fills["plan"] == imputer.statistics_[0] and fills["region"] == imputer.statistics_[1]
    assert {s.columns[0].missing_value_treatment for s in manifest.inputs if s.dtype == "string"} == {"asValue"}
    expected = pipe.predict(test)
    with modelpack.load(tmp_path / "m.mpk") as model:
        np.testing.assert_array_equal(model.predict(test), expected)
        np.testing.assert_array_equal(model.predict(test.astype({"plan": "string", "region": "string"})),
                                      expected)  # pd.NA
        records = test.astype(object).where(test.notna(), None).to_dict("records")
        np.testing.assert_array_equal(model.predict(records), expected)
        np.testing.assert_allclose(model.predict_proba(test), pipe.predict_proba(test), atol=1e-5)
        # "" is a category of its own, as in scikit-learn, not a missing value
        blank = test.assign(plan="")
        np.testing.assert_array_equal(model.predict(blank), pipe.predict(blank))
    assert modelpack.verify(tmp_path / "m.mpk").ok


def test_modelpack_predict_scores_a_csv_with_empty_cells_like_the_frame_pandas_reads(fitted, tmp_path: Path) -> None:
    pipe, test = fitted
    modelpack.export(pipe, tmp_path / "m.mpk", sample=test[:20])
    test.drop(columns="plan").assign(plan=test["plan"].where(test["plan"] != "", "x")).to_csv(
        tmp_path / "rows.csv", index=False)  # an empty cell in a CSV is a missing value
    read = pd.read_csv(tmp_path / "rows.csv")
    assert read["plan"].isna().sum() > 10
    script = shutil.which("modelpack", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the modelpack console script is not installed in this environment")
    done = subprocess.run([script, "predict", str(tmp_path / "m.mpk"), "--input", str(tmp_path / "rows.csv"),
                           "--output", str(tmp_path / "out.csv")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(pd.read_csv(tmp_path / "out.csv")["prediction"], pipe.predict(read))


def test_a_string_column_no_imputer_fills_still_refuses_missing_values_with_a_working_fix(tmp_path: Path) -> None:
    train = _frame(200, 2).fillna({"plan": "basic", "region": "north"})
    pipe = make_pipeline(make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["plan", "region"]),
                                                 (StandardScaler(), ["age"])), LogisticRegression())
    pipe.fit(train.fillna({"age": 40.0}), (train["plan"] == "pro").astype(int))
    modelpack.export(pipe, tmp_path / "m.mpk", sample=train.fillna({"age": 40.0})[:20])
    rows = train.fillna({"age": 40.0})[:5].assign(plan=[None, "pro", "basic", "team", "pro"])
    with modelpack.load(tmp_path / "m.mpk") as model:
        with pytest.raises(modelpack.DTypeError, match="holds a missing value") as caught:
            model.predict(rows)
        assert "fillna(" in caught.value.fix
        filled = rows.fillna({"plan": "basic"})  # the fix, followed
        np.testing.assert_array_equal(model.predict(filled), pipe.predict(filled))


def test_the_pmml_route_takes_missing_strings_too(fitted, tmp_path: Path) -> None:
    pytest.importorskip("sklearn2pmml", reason="sklearn2pmml is not installed: pip install sklearn2pmml")
    from modelpack.testing import missing_java

    if missing_java():
        pytest.skip(f"PMML needs Java: {missing_java()}")
    pipe, test = fitted
    modelpack.export(pipe, tmp_path / "m.mpk", sample=test[:20], format="pmml")
    with modelpack.load(tmp_path / "m.mpk") as model:
        np.testing.assert_array_equal(model.predict(test), pipe.predict(test))


def test_nan_is_refused_where_scikit_learn_refuses_it_and_taken_where_it_is_imputed(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(120, 3)), columns=["a", "b", "c"])
    y = (frame["a"] > 0).astype(int)
    plain = LogisticRegression().fit(frame, y)
    imputed = make_pipeline(SimpleImputer(strategy="median"), LogisticRegression()).fit(frame, y)
    bad = frame[:4].copy()
    bad.loc[2, "b"] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        plain.predict(bad)  # the reference: scikit-learn refuses it
    manifest = modelpack.export(plain, tmp_path / "plain.mpk", sample=frame[:20])
    assert {c.missing_value_treatment for c in manifest.inputs[0].columns} == {"returnInvalid"}
    with modelpack.load(tmp_path / "plain.mpk") as model:
        with pytest.raises(modelpack.InputError, match="column 'b' holds NaN"):
            model.predict(bad)
        np.testing.assert_array_equal(model.predict(frame[:4]), plain.predict(frame[:4]))
    manifest = modelpack.export(imputed, tmp_path / "imputed.mpk", sample=frame[:20])
    assert {c.missing_value_treatment for c in manifest.inputs[0].columns} == {None}
    with modelpack.load(tmp_path / "imputed.mpk") as model:
        np.testing.assert_array_equal(model.predict(bad), imputed.predict(bad))


def test_the_manifest_records_where_it_was_written(fitted, tmp_path: Path) -> None:
    import platform

    pipe, test = fitted
    manifest = modelpack.export(pipe, tmp_path / "m.mpk", sample=test[:20])
    env = manifest.source.environment
    assert env["python"] == platform.python_version() and env["numpy"] == np.__version__
    assert {"onnx", "onnxruntime", "skl2onnx", "platform"} <= set(env)
    assert manifest.schema_version == "1.2" and modelpack.inspect(tmp_path / "m.mpk").source.environment == env


def test_columns_behind_an_imputer_record_their_encoders_categories(fitted, tmp_path: Path) -> None:
    pipe, test = fitted
    manifest = modelpack.export(pipe, tmp_path / "m.mpk", sample=test[:20])
    encoder = pipe[0].named_transformers_["pipeline-2"][1]
    columns = {s.name: s.columns[0] for s in manifest.inputs}
    for name, learnt in zip(["plan", "region"], encoder.categories_, strict=True):
        assert columns[name].categories == tuple(v for v in learnt.tolist() if isinstance(v, str))
        assert columns[name].optype == "categorical"
    assert columns["age"].categories is None
    # Recording them changes nothing the model accepts: a category it never saw still gets
    # scikit-learn's answer (handle_unknown="ignore"), and so do missing values.
    unseen = test.assign(region="east")
    with modelpack.load(tmp_path / "m.mpk") as model:
        np.testing.assert_array_equal(model.predict(unseen), pipe.predict(unseen))
        np.testing.assert_allclose(model.predict_proba(unseen), pipe.predict_proba(unseen), atol=1e-5)
        np.testing.assert_array_equal(model.predict(test), pipe.predict(test))
