"""Arrow tables, record batches and polars frames in: the answers pandas gets, every hostile column refused."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pd = pytest.importorskip("pandas")
pl = pytest.importorskip("polars")
pytest.importorskip("skl2onnx")

from sklearn.compose import make_column_transformer  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402

import modelpack  # noqa: E402
from modelpack._inputs import arrow  # noqa: E402


def _frame(n: int, seed: int) -> Any:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"age": rng.normal(40, 10, n),
                          "plan": rng.choice(["basic", "pro", "team", ""], n).astype(object),
                          "region": rng.choice(["north", "south"], n).astype(object)})
    frame.loc[::7, "plan"] = None
    frame.loc[5::9, "region"] = None
    frame.loc[::13, "age"] = np.nan
    return frame


@pytest.fixture(scope="module")
def churn(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Any]:
    """A ColumnTransformer over a numeric and two string columns, with missing values, exported."""
    train = _frame(300, 0)
    y = ((train["age"].fillna(40) > 40) ^ (train["plan"] == "pro")).astype(int)
    pipe = make_pipeline(make_column_transformer(
        (make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), ["age"]),
        (make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
         ["plan", "region"])), LogisticRegression()).fit(train, y)
    path = tmp_path_factory.mktemp("churn") / "churn.mpk"
    modelpack.export(pipe, path, sample=train[:20])
    with modelpack.load(path) as model:
        yield model, pipe, _frame(200, 1)


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A logistic regression on three named float columns: it refuses NaN in each."""
    rng = np.random.default_rng(2)
    X = pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "c"])
    path = tmp_path_factory.mktemp("strict") / "strict.mpk"
    modelpack.export(LogisticRegression().fit(X, X["a"] > 0), path, sample=X[:20])
    with modelpack.load(path) as model:
        yield model, X


def test_arrow_and_polars_inputs_give_the_answers_of_the_pandas_frame(churn) -> None:
    model, pipe, test = churn
    expected, proba = pipe.predict(test), pipe.predict_proba(test)
    table = pa.Table.from_pandas(test, preserve_index=False)
    frames = {
        "table": table,
        "record batch": table.to_batches()[0],
        "chunked table": pa.concat_tables([table.slice(0, 77), table.slice(77)]),
        "dictionary columns": table.set_column(1, "plan", table["plan"].dictionary_encode()),
        "string_view": table.set_column(2, "region", table["region"].cast(pa.string_view())),
        "polars": pl.from_pandas(test),
        "polars categorical": pl.from_pandas(test).with_columns(pl.col("plan", "region").cast(pl.Categorical)),
        "extra nested column": table.append_column("tags", pa.array([[1, 2]] * len(test))),
    }
    for name, frame in frames.items():
        np.testing.assert_array_equal(model.predict(frame), expected, err_msg=name)
        np.testing.assert_allclose(model.predict_proba(frame), proba, atol=1e-5, err_msg=name)


def test_a_lazyframe_is_collected_in_batches_with_the_same_answers(churn, monkeypatch) -> None:
    model, pipe, test = churn
    monkeypatch.setattr("modelpack._model._LAZY_ROWS", 32)
    seen: list[int] = []
    real = arrow.lazy_batches

    def counted(*args: Any) -> Any:
        for batch in real(*args):
            seen.append(batch.height)
            yield batch
    monkeypatch.setattr("modelpack._model.lazy_batches", counted)
    lazy = pl.from_pandas(test).lazy().with_columns(pl.lit(1).alias("unused"))
    np.testing.assert_array_equal(model.predict(lazy), pipe.predict(test))
    assert len(seen) > 1 and max(seen) <= 32 and sum(seen) == len(test)
    run = model.run(lazy)
    np.testing.assert_allclose(run["probabilities"], pipe.predict_proba(test), atol=1e-5)
    assert model.predict(lazy.filter(pl.col("age") > 1e9)).shape == (0,)
    broken = lazy.with_columns(pl.col("no such column") * 2)
    with pytest.raises(modelpack.InputError, match="the LazyFrame's query failed in polars"):
        model.predict(broken)


def test_string_nulls_are_filled_as_recorded_and_refused_where_nothing_fills_them(churn, tmp_path: Path) -> None:
    model, pipe, test = churn
    only_nulls = test.assign(plan=None)
    table = pa.Table.from_pandas(only_nulls, preserve_index=False)
    assert table["plan"].type == pa.null()
    # (scikit-learn's imputer leaves an all-None object column as it is, so it is given NaN)
    np.testing.assert_array_equal(model.predict(table), pipe.predict(test.assign(plan=np.nan)))
    # no imputer before the encoder: a null string is refused, naming the input
    train = _frame(100, 3).fillna({"plan": "basic", "region": "north", "age": 40})
    bare = make_pipeline(make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["plan", "region"]),
                                                 remainder="drop"), LogisticRegression()).fit(train, train["age"] > 40)
    modelpack.export(bare, tmp_path / "bare.mpk", sample=train[:20])
    with modelpack.load(tmp_path / "bare.mpk") as m, pytest.raises(modelpack.DTypeError) as err:
        m.predict(pa.table({"age": [1.0, 2.0], "plan": ["pro", None], "region": ["north", "south"]}))
    assert "input 'plan'" in str(err.value) and "fillna" in str(err.value)


def test_float_nulls_are_nan_and_refused_where_the_source_model_refuses_nan(strict) -> None:
    model, X = strict
    table = pa.Table.from_pandas(X[:5], preserve_index=False)
    np.testing.assert_array_equal(model.predict(table), model.predict(X[:5]))
    chunked = pa.concat_tables([table.slice(0, 2), table.slice(2)])
    np.testing.assert_array_equal(model.predict_proba(chunked), model.predict_proba(X[:5]))
    holed = table.set_column(1, "b", pa.array([0.5, None, 1.0, 2.0, 3.0]))
    with pytest.raises(modelpack.InputError, match="column 'b' holds NaN"):
        model.predict(holed)
    with pytest.raises(modelpack.InputError, match="column 'b' holds NaN"):
        model.predict(pl.from_arrow(holed))
    ints = table.set_column(2, "c", pa.array([1, None, 3, 4, 5], pa.int64()))
    with pytest.raises(modelpack.InputError, match="column 'c' holds NaN"):
        model.predict(ints)
    whole = table.set_column(2, "c", pa.array([1, 2, 3, 4, 5], pa.int64()))
    np.testing.assert_array_equal(model.predict(whole), model.predict(X[:5].assign(c=[1.0, 2, 3, 4, 5])))


def _hostile_columns() -> dict[str, tuple[Any, str]]:
    n = 3
    return {
        "list": (pa.array([[1.0], [2.0, 3.0], []]), "nested"),
        "struct": (pa.array([{"x": 1.0}] * n), "nested"),
        "timestamp": (pa.array(np.array(["2024-01-01"] * n, dtype="datetime64[ns]")), "dates, times"),
        "decimal": (pa.array([Decimal("1.5")] * n), "decimals"),
        "extension": (pa.FixedShapeTensorArray.from_numpy_ndarray(np.ones((n, 2))), "extension type"),
        "text": (pa.array(["1.5", "2", "x"]), "strings given for a numeric input, such as '1.5'"),
        "big ints with nulls": (pa.array([2**40, None, 1]), "not exact"),
    }


@pytest.mark.parametrize("kind", list(_hostile_columns()))
def test_hostile_arrow_columns_are_refused_naming_the_column_and_the_fix(strict, kind: str) -> None:
    model, X = strict
    column, words = _hostile_columns()[kind]
    table = pa.Table.from_pandas(X[:3], preserve_index=False).set_column(1, "b", column)
    with pytest.raises(modelpack.DTypeError) as err:
        model.predict(table)
    message = str(err.value)
    assert "'b'" in message and words in message
    assert "e.g." in message or "Pass" in message or "first" in message  # a fix is named


def test_a_null_inside_a_dictionary_is_a_missing_value_too(churn) -> None:
    model, pipe, test = churn
    table = pa.Table.from_pandas(test[:3], preserve_index=False)
    plan = pa.DictionaryArray.from_arrays(pa.array([0, 1, 0], pa.int32()), pa.array(["pro", None]))
    assert plan.null_count == 0  # the indices hold no null; the dictionary does
    expected = pipe.predict_proba(test[:3].assign(plan=["pro", np.nan, "pro"]))
    np.testing.assert_allclose(model.predict_proba(table.set_column(1, "plan", plan)), expected, atol=1e-5)


def test_numbers_for_a_string_input_and_bad_tables_are_refused(churn) -> None:
    model, _, test = churn
    table = pa.Table.from_pandas(test[:3], preserve_index=False)
    with pytest.raises(modelpack.DTypeError, match="column 'plan' .int64.: numbers given for a string input"):
        model.predict(table.set_column(1, "plan", pa.array([1, 2, 3])))
    with pytest.raises(modelpack.DTypeError, match="not UTF-8"):
        model.predict(table.set_column(1, "plan", pa.array([b"\xff", b"a", b"b"])))
    with pytest.raises(modelpack.InputError, match="appears 2 times"):
        model.predict(pa.Table.from_arrays([table["age"], table["plan"], table["region"], table["plan"]],
                                           names=["age", "plan", "region", "plan"]))
    with pytest.raises(modelpack.MissingColumnError, match="did you mean 'regoin' for 'region'"):
        model.predict(table.rename_columns(["age", "plan", "regoin"]))
    with pytest.raises(modelpack.DTypeError, match="column 'n' holds 1 null.*int64 input cannot hold"):
        arrow.column_values(pa.array([1, None], pa.int64()), "n", np.dtype(np.int64), "pkg")
    objects = pl.DataFrame({"age": [1.0], "plan": ["pro"], "region": [object()]}, schema_overrides={"region": pl.Object})
    with pytest.raises(modelpack.InputError, match="column 'region'"):
        model.predict(objects)


def test_numeric_columns_are_viewed_without_a_copy() -> None:
    data = pa.array(np.arange(6, dtype=np.float32)).slice(2)
    values = arrow.column_values(pa.chunked_array([data]), "x", np.dtype(np.float32), "pkg")
    assert not values.flags.owndata
    np.testing.assert_array_equal(values, np.arange(2, 6, dtype=np.float32))


def test_pyarrow_and_polars_are_not_imported_for_other_inputs() -> None:
    code = ("import sys, numpy as np, modelpack\n"
            "from modelpack._inputs import arrow\n"
            "assert arrow.frame_kind(np.zeros(2)) is None and arrow.frame_kind({}) is None\n"
            "print(sorted(m for m in ('pyarrow', 'polars') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_pandas_arrow_string_columns_take_the_arrow_path_with_the_same_checks(churn) -> None:
    model, pipe, test = churn
    big = pd.concat([test] * 3, ignore_index=True).astype({"plan": "str", "region": "str"})
    assert hasattr(big["plan"].array, "_pa_array")  # pandas keeps these strings in Arrow
    np.testing.assert_array_equal(model.predict(big), pipe.predict(big.astype({"plan": object, "region": object})))
    feeds = model._adapt(big)
    assert feeds["plan"].dtype == object and {type(v) for v in feeds["plan"].ravel()} == {str}
    mixed = big.astype({"plan": object})
    mixed.loc[len(mixed) - 1, "plan"] = 3  # one number deep in an object column is still found
    with pytest.raises(modelpack.DTypeError, match="non-string values such as 3"):
        model.predict(mixed)


def test_one_record_with_integers_or_in_a_list_takes_the_same_answers(churn) -> None:
    model, pipe, test = churn
    record = {"age": 41, "plan": "pro", "region": "north"}
    expected = pipe.predict(pd.DataFrame([record]))
    np.testing.assert_array_equal(model.predict(record), expected)
    np.testing.assert_array_equal(model.predict([record]), expected)
    with pytest.raises(modelpack.DTypeError, match="not exact in float32"):
        model.predict({"age": 2**24 + 1, "plan": "pro", "region": "north"})
    with pytest.raises(modelpack.MissingColumnError, match="unknown field"):
        model.predict([{**record, "extra": 1.0}])


def test_a_dict_of_arrow_arrays_or_polars_series_is_read_as_columns(strict, churn) -> None:
    model, X = strict
    expected = model.predict_proba(X[:4])
    for make in (pa.array, lambda v: pa.chunked_array([v]), pl.Series):
        columns = {c: make(X[c][:4].tolist()) for c in ("a", "b", "c")}
        np.testing.assert_allclose(model.predict_proba(columns), expected, atol=1e-6)
    with pytest.raises(modelpack.InputError, match="column 'b' holds NaN"):
        model.predict({"a": pa.array([1.0]), "b": pa.array([None], pa.float64()), "c": pa.array([2.0])})
    with pytest.raises(modelpack.DTypeError, match="column 'c'.*strings given for a numeric input"):
        model.predict({"a": pl.Series([1.0]), "b": pl.Series([2.0]), "c": pl.Series(["x"])})
    per_column, pipe, test = churn
    table = pa.Table.from_pandas(test, preserve_index=False)
    given = {c: table.column(c).combine_chunks() for c in ("age", "plan", "region")}
    np.testing.assert_array_equal(per_column.predict(given), pipe.predict(test))


def test_one_record_refuses_nan_where_the_source_model_does(tmp_path: Path) -> None:
    train = _frame(200, 7).fillna({"age": 40.0})
    pipe = make_pipeline(make_column_transformer(
        (StandardScaler(), ["age"]),
        (make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
         ["plan", "region"])), LogisticRegression()).fit(train, train["age"] > 40)
    modelpack.export(pipe, tmp_path / "m.mpk", sample=train[:20])
    with modelpack.load(tmp_path / "m.mpk") as model:
        assert model._adapt._record_plan is not None  # the planned one-record path is what is tested
        record = {"age": 41.5, "plan": "pro", "region": "north"}
        np.testing.assert_array_equal(model.predict(record), pipe.predict(pd.DataFrame([record])))
        for bad in ({**record, "age": float("nan")}, [{**record, "age": float("nan")}]):
            with pytest.raises(modelpack.InputError, match="column 'age' holds NaN"):
                model.predict(bad)
        with pytest.raises(modelpack.InputError, match="column 'age' holds NaN"):
            model.predict(pa.table({"age": pa.array([None], pa.float64()), "plan": ["pro"], "region": ["north"]}))
