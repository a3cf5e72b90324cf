"""output="pandas" | "arrow" | "polars": the numpy answers as named columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import modelpack

pa = pytest.importorskip("pyarrow")
pd = pytest.importorskip("pandas")
pl = pytest.importorskip("polars")


@pytest.fixture(params=[False, True], ids=["tensor", "zipmap"])
def iris_model(iris_onnx, tmp_path: Path, request: pytest.FixtureRequest):
    path, _ = iris_onnx(request.param)
    modelpack.pack(path, tmp_path / "iris.mpk")
    with modelpack.load(tmp_path / "iris.mpk") as m:
        yield m


def test_tables_hold_the_numpy_answers_under_their_names(iris_model, iris) -> None:
    X = iris[0][:10]
    labels, proba = iris_model.predict(X), iris_model.predict_proba(X)
    classes = [str(c) for c in iris_model.classes.tolist()]
    for output in ("pandas", "arrow", "polars"):
        table = iris_model.predict(X, output=output)
        assert list(table.columns if output != "arrow" else table.column_names) == ["prediction"]
        np.testing.assert_array_equal(np.asarray(table["prediction"]), labels)
        probs = iris_model.predict_proba(X, output=output)
        names = list(probs.columns if output != "arrow" else probs.column_names)
        assert names == [f"proba_{c}" for c in classes]
        np.testing.assert_array_equal(np.column_stack([np.asarray(probs[n]) for n in names]), proba)
        run = iris_model.run(X, output=output)
        assert len(run) == 10
    assert isinstance(iris_model.predict(X, output="arrow"), pa.Table)
    assert isinstance(iris_model.predict(X, output="polars"), pl.DataFrame)
    assert iris_model.predict(X, output="numpy") is not None


def test_a_pandas_result_keeps_the_frames_index(iris_model, iris) -> None:
    frame = pd.DataFrame(iris[0][:4], index=[10, 20, 30, 40])
    out = iris_model.predict(frame, output="pandas")
    assert out.index.tolist() == [10, 20, 30, 40]
    np.testing.assert_array_equal(out["prediction"].to_numpy(), iris_model.predict(frame))


def test_an_unknown_output_is_refused_with_the_choices(iris_model, iris) -> None:
    with pytest.raises(modelpack.TaskError, match="output='json' is not one of numpy, pandas, arrow, polars"):
        iris_model.predict(iris[0][:1], output="json")


def test_string_labels_become_an_arrow_string_column(tmp_path: Path) -> None:
    pytest.importorskip("skl2onnx")
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(0).normal(size=(60, 3)).astype(np.float32)
    y = np.where(X[:, 0] > 0, "yes", "no")
    modelpack.export(LogisticRegression().fit(X, y), tmp_path / "s.mpk", sample=X[:10])
    with modelpack.load(tmp_path / "s.mpk") as m:
        table = m.predict(pa.table({f"x{j}": X[:, j] for j in range(3)}), output="arrow")
        assert table.schema.field("prediction").type == pa.string()
        assert table["prediction"].to_pylist() == m.predict(X).tolist()
