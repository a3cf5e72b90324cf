"""predict_file: every input and output format, batches bounded, results equal to the closed form."""

from __future__ import annotations

import json

import numpy as np
import pytest

import modelpack
from modelpack._cli import main
from modelpack._datasets import read as _read
from modelpack.batch import predict_file, score
from modelpack.errors import DTypeError, InputError, MissingColumnError, TaskError

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

COLUMNS = ["f0", "f1", "f2", "f3"]


@pytest.fixture(scope="module")
def table(features):
    """The features only: every column goes to the model."""
    return pd.DataFrame(features.astype(np.float64), columns=COLUMNS)


@pytest.fixture(scope="module")
def with_ids(table):
    """An id column first, passed through with keep=["id"]."""
    return table.assign(id=np.arange(len(table)) * 3)[["id", *COLUMNS]]


def write(df, path):
    suffix = path.suffix
    if suffix == ".parquet":
        df.to_parquet(path, row_group_size=7)  # row groups smaller than the batch: re-cut
    elif suffix == ".csv":
        df.to_csv(path, index=False)
    elif suffix == ".jsonl":
        df.to_json(path, orient="records", lines=True)
    else:
        df.to_json(path, orient="records")
    return path


def read(path):
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path)
    return pd.read_json(path, lines=path.suffix == ".jsonl")


@pytest.mark.parametrize("source", ["in.parquet", "in.csv", "in.jsonl", "in.json"])
@pytest.mark.parametrize("target", ["out.parquet", "out.csv", "out.jsonl", "out.json"])
def test_every_format_gives_the_closed_form_labels(classifier, with_ids, tmp_path, source, target):
    table = with_ids
    with modelpack.load(classifier.path) as model:
        rows = predict_file(model, write(table, tmp_path / source), tmp_path / target, batch_size=16,
                            keep=["id"])
    assert rows == len(table)
    out = read(tmp_path / target)
    assert list(out.columns) == ["id", "prediction"]
    np.testing.assert_array_equal(out["id"], table["id"])
    np.testing.assert_array_equal(out["prediction"], classifier.labels(table[COLUMNS].to_numpy()))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_probabilities_are_named_by_class(zipmap_classifier, with_ids, tmp_path):
    table = with_ids
    X = table[COLUMNS].to_numpy()
    with modelpack.load(zipmap_classifier.path) as model:
        predict_file(model, write(table, tmp_path / "in.csv"), tmp_path / "p.parquet", batch_size=9,
                     result="proba", keep=["id"])
        predict_file(model, tmp_path / "in.csv", tmp_path / "all.parquet", batch_size=9, result="all",
                     keep=["id"])
    proba = pd.read_parquet(tmp_path / "p.parquet")
    assert list(proba.columns) == ["id", "proba_setosa", "proba_versicolor", "proba_virginica"]
    np.testing.assert_allclose(proba.iloc[:, 1:].to_numpy(), zipmap_classifier.proba(X), atol=1e-6)
    every = pd.read_parquet(tmp_path / "all.parquet").drop(columns="id")
    assert list(every.columns) == ["label", "output_probability_setosa", "output_probability_versicolor",
                                   "output_probability_virginica"]
    np.testing.assert_array_equal(every["label"], zipmap_classifier.labels(X))
    np.testing.assert_allclose(every.iloc[:, 1:].to_numpy(), zipmap_classifier.proba(X), atol=1e-6)


def test_several_targets_and_no_probabilities(regressor, table, tmp_path):
    X = table[COLUMNS].to_numpy()
    with modelpack.load(regressor.path) as model:
        predict_file(model, write(table, tmp_path / "in.parquet"), tmp_path / "r.csv", batch_size=10)
        out = pd.read_csv(tmp_path / "r.csv")
        assert list(out.columns) == ["prediction_0", "prediction_1", "prediction_2"]
        np.testing.assert_allclose(out.to_numpy(), regressor.scores(X), rtol=1e-5, atol=1e-5)
        with pytest.raises(TaskError, match="predict_proba"):
            predict_file(model, tmp_path / "in.parquet", tmp_path / "p.csv", result="proba")
    assert not (tmp_path / "p.csv").exists()


def test_parquet_batches_never_exceed_the_batch_size(table, tmp_path):
    batches, total = _read(write(table, tmp_path / "in.parquet"), "parquet", 16)
    sizes = [len(b) for b in batches]
    assert total == len(table) and sum(sizes) == len(table)
    assert sizes == [16, 16, 16, 2]


def test_csv_and_json_lines_are_read_in_chunks(table, tmp_path):
    for name, kind in (("in.csv", "csv"), ("in.jsonl", "jsonl")):
        batches, _ = _read(write(table, tmp_path / name), kind, 20)
        assert [len(b) for b in batches] == [20, 20, 10]


def test_a_folder_of_parquet_files(classifier, with_ids, tmp_path):
    table = with_ids
    folder = tmp_path / "parts"
    folder.mkdir()
    table.iloc[:30].to_parquet(folder / "part-0.parquet")
    table.iloc[30:].to_parquet(folder / "part-1.parquet")
    with modelpack.load(classifier.path) as model:
        assert predict_file(model, folder, tmp_path / "out.parquet", keep=["id"]) == len(table)
    out = pd.read_parquet(tmp_path / "out.parquet").sort_values("id")
    np.testing.assert_array_equal(out["prediction"], classifier.labels(table[COLUMNS].to_numpy()))


def test_score_one_frame(classifier, table):
    with modelpack.load(classifier.path) as model:
        result = score(model, table[COLUMNS], "all")
    assert list(result.columns) == ["label", "probabilities_10", "probabilities_20", "probabilities_30"]
    np.testing.assert_allclose(result.iloc[:, 1:].to_numpy(), classifier.proba(table[COLUMNS].to_numpy()),
                               atol=1e-6)


def test_empty_input_gives_an_empty_output(classifier, table, tmp_path):
    table.iloc[:0].to_csv(tmp_path / "empty.csv", index=False)
    with modelpack.load(classifier.path) as model:
        for target in ("out.parquet", "out.csv", "out.json"):
            assert predict_file(model, tmp_path / "empty.csv", tmp_path / target) == 0
    assert len(pq.read_table(tmp_path / "out.parquet")) == 0
    assert json.loads((tmp_path / "out.json").read_text()) == []


def test_bad_arguments_are_refused(classifier, table, tmp_path):
    src = write(table, tmp_path / "in.csv")
    with modelpack.load(classifier.path) as model:
        with pytest.raises(InputError, match=r"cannot tell the input format.*\.parquet, \.csv"):
            predict_file(model, tmp_path / "in.txt", tmp_path / "out.csv")
        with pytest.raises(InputError, match="cannot tell the output format"):
            predict_file(model, src, tmp_path / "out.xlsx")
        with pytest.raises(InputError, match="no file at"):
            predict_file(model, tmp_path / "missing.csv", tmp_path / "out.csv")
        with pytest.raises(InputError, match="overwrite the input"):
            predict_file(model, src, src)
        with pytest.raises(InputError, match="batch_size"):
            predict_file(model, src, tmp_path / "out.csv", batch_size=0)
        with pytest.raises(TaskError, match="result='labels'"):
            predict_file(model, src, tmp_path / "out.csv", result="labels")
        with pytest.raises(MissingColumnError, match="cannot keep column"):
            predict_file(model, src, tmp_path / "out.csv", keep=["customer"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_bad_rows_fail_without_a_partial_output(classifier, table, tmp_path):
    bad = table.astype({"f2": object})
    bad.loc[40, "f2"] = "oops"  # after the first batches were written
    src = write(bad, tmp_path / "in.csv")
    with modelpack.load(classifier.path) as model:
        with pytest.raises(DTypeError, match="not numbers|strings given"):
            predict_file(model, src, tmp_path / "out.parquet", batch_size=10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]
    (tmp_path / "broken.json").write_text("[{\"f0\": 1}, ")
    with modelpack.load(classifier.path) as model, pytest.raises(InputError, match="cannot parse broken.json"):
        predict_file(model, tmp_path / "broken.json", tmp_path / "out.csv")


def test_progress_bar_on_request(classifier, table, tmp_path, capsys):
    pytest.importorskip("tqdm")
    with modelpack.load(classifier.path) as model:
        predict_file(model, write(table, tmp_path / "in.parquet"), tmp_path / "out.csv", progress=True)
    err = capsys.readouterr().err
    assert "100%" in err and "50.0/50.0" in err and "rows/s" in err


def test_command_line_predict(classifier, table, tmp_path, capsys):
    src = write(table, tmp_path / "in.parquet")
    code = main(["predict", str(classifier.path), "--input", str(src), "--output", str(tmp_path / "out.json"),
                 "--batch-size", "8", "--result", "proba"])
    assert code == 0 and "wrote 50 rows" in capsys.readouterr().err
    out = pd.read_json(tmp_path / "out.json")
    np.testing.assert_allclose(out.to_numpy(), classifier.proba(table[COLUMNS].to_numpy()), atol=1e-6)
    assert main(["predict", str(classifier.path), "--input", str(tmp_path / "nope.csv"),
                 "--output", str(tmp_path / "o.csv")]) == 2
