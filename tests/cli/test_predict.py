"""`modelpack predict` through Arrow datasets: partitioned folders kept, types from the model, progress."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pd = pytest.importorskip("pandas")
pytest.importorskip("skl2onnx")
import pyarrow.dataset as ds  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from sklearn.compose import make_column_transformer  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder  # noqa: E402

import modelpack  # noqa: E402
from modelpack._cli import main  # noqa: E402


def _rows(n: int, seed: int) -> Any:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": np.arange(n), "amount": rng.normal(50, 20, n).round(2),
                         "code": rng.choice(["007", "010", "100"], n).astype(object),
                         "region": rng.choice(["north", "south"], n).astype(object)})


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A ColumnTransformer reading a number, a zero-padded code and the region (a partition below)."""
    train = _rows(400, 0).drop(columns="id")
    pipe = make_pipeline(make_column_transformer(
        ("passthrough", ["amount"]),
        (make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
         ["code", "region"])), LogisticRegression(max_iter=500))
    pipe.fit(train, (train["amount"] > 50) ^ (train["code"] == "007") ^ (train["region"] == "north"))
    path = tmp_path_factory.mktemp("model") / "m.mpk"
    modelpack.export(pipe, path, sample=train[:20])
    return path, pipe


def test_a_partitioned_folder_gives_a_folder_in_the_same_layout(scored, tmp_path: Path, capsys) -> None:
    path, pipe = scored
    rows = _rows(300, 1)
    pq.write_to_dataset(pa.Table.from_pandas(rows, preserve_index=False), tmp_path / "in",
                        partition_cols=["region"])
    (tmp_path / "in" / "_SUCCESS").write_text("")  # as Spark leaves it: not data
    args = ["predict", str(path), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
            "--keep", "id", "region", "--batch-size", "64", "--no-progress"]
    assert main(args) == 0 and "wrote 300 rows" in capsys.readouterr().err
    before = sorted((tmp_path / "out").rglob("*"))
    assert main(args) == 0
    assert sorted((tmp_path / "out").rglob("*")) == before  # an earlier output folder is replaced
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    code = main(["predict", str(path), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "notes")])
    assert code == 2 and "holds other files, such as todo.txt" in capsys.readouterr().err
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"
    given = sorted(p.relative_to(tmp_path / "in") for p in (tmp_path / "in").rglob("*.parquet"))
    written = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*.parquet"))
    assert written == given and {p.parts[0] for p in written} == {"region=north", "region=south"}
    out = ds.dataset(tmp_path / "out", partitioning="hive").to_table().to_pandas().sort_values("id")
    assert "region" in out.columns  # from the folders: the partition column is not repeated in the files
    assert pq.read_schema(next((tmp_path / "out").rglob("*.parquet"))).names == ["id", "prediction"]
    expected = pipe.predict(rows.drop(columns="id"))
    np.testing.assert_array_equal(out["prediction"].to_numpy(), expected[out["id"].to_numpy()])


def test_csv_columns_are_read_with_their_inputs_types(scored, tmp_path: Path) -> None:
    path, pipe = scored
    rows = _rows(60_000, 2)
    rows["amount"] = rows["amount"].round(0)  # integers for the first block Arrow infers from...
    rows.loc[len(rows) - 1, "amount"] = 12.5  # ...and a decimal far below it
    rows.loc[::5, "code"] = None  # empty cells: missing values, filled as the package records
    rows.to_csv(tmp_path / "in.csv", index=False)
    assert (tmp_path / "in.csv").stat().st_size > 1 << 20
    code = main(["predict", str(path), "--input", str(tmp_path / "in.csv"), "--output",
                 str(tmp_path / "out.jsonl"), "--keep", "id", "--no-progress"])
    assert code == 0
    out = pd.read_json(tmp_path / "out.jsonl", lines=True)
    read_back = pd.read_csv(tmp_path / "in.csv", dtype={"code": object})  # "007" stays a code
    np.testing.assert_array_equal(out["prediction"], pipe.predict(read_back.drop(columns="id")))


def test_progress_is_shown_on_request_and_not_otherwise(scored, tmp_path: Path, capsys) -> None:
    pytest.importorskip("tqdm")
    path, _ = scored
    _rows(50, 3).to_parquet(tmp_path / "in.parquet")
    args = ["predict", str(path), "--input", str(tmp_path / "in.parquet"), "--output", str(tmp_path / "o.csv")]
    assert main([*args, "--progress"]) == 0
    assert "50.0/50.0" in capsys.readouterr().err
    assert main([*args, "--no-progress"]) == 0
    assert capsys.readouterr().err.strip() == f"wrote 50 rows to {tmp_path / 'o.csv'}"


def test_a_failing_folder_run_leaves_no_output_folder(scored, tmp_path: Path, capsys) -> None:
    path, _ = scored
    good, bad = _rows(20, 4), _rows(20, 5).astype({"amount": str})
    bad.loc[3, "amount"] = "n/a"
    (tmp_path / "in").mkdir()
    good.to_parquet(tmp_path / "in" / "a.parquet")
    bad.to_parquet(tmp_path / "in" / "b.parquet")
    code = main(["predict", str(path), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot parse b.parquet" in err and "'n/a'" in err and "one type" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
    code = main(["predict", str(path), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "in" / "x")])
    assert code == 2 and "overwrite the input" in capsys.readouterr().err
    bad.drop(columns="amount").to_parquet(tmp_path / "in" / "b.parquet")  # a file lacking a column read as nulls
    for out in ("out", "out.parquet"):
        code = main(["predict", str(path), "--input", str(tmp_path / "in"), "--output", str(tmp_path / out)])
        assert code == 2 and "b.parquet lacks the column(s) ['amount']" in capsys.readouterr().err
    bad.assign(amount=bad["amount"].replace("n/a", "oops")).to_csv(tmp_path / "bad.csv", index=False)
    code = main(["predict", str(path), "--input", str(tmp_path / "bad.csv"), "--output", str(tmp_path / "o.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "holds a value of another type" in err and "'oops'" in err and "Fix or drop" in err
    assert not (tmp_path / "o.csv").exists()


def test_one_file_into_a_folder_and_json_lines_with_nulls(scored, tmp_path: Path, capsys) -> None:
    path, pipe = scored
    rows = _rows(30, 6)
    rows.loc[::4, "code"] = None  # null in JSON: a missing string, filled as the package records
    rows.to_json(tmp_path / "in.jsonl", orient="records", lines=True)
    code = main(["predict", str(path), "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out"),
                 "--keep", "id", "--no-progress"])
    assert code == 0 and [p.name for p in (tmp_path / "out").iterdir()] == ["in.parquet"]
    out = pq.read_table(tmp_path / "out" / "in.parquet").to_pandas()
    np.testing.assert_array_equal(out["prediction"], pipe.predict(rows.drop(columns="id")))
    rows.drop(columns="code").to_json(tmp_path / "lacking.jsonl", orient="records", lines=True)
    code = main(["predict", str(path), "--input", str(tmp_path / "lacking.jsonl"), "--output", str(tmp_path / "o.csv")])
    assert code == 2 and "missing column(s) ['code']" in capsys.readouterr().err
