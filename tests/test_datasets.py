"""Input folders read as Arrow datasets: every file read is a file of the folder, once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pd = pytest.importorskip("pandas")
pytest.importorskip("skl2onnx")
import pyarrow.parquet as pq  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

import modelpack  # noqa: E402
from modelpack.batch import predict_file  # noqa: E402
from modelpack.errors import InputError  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.random(40), "b": rng.random(40)})
    path = tmp_path_factory.mktemp("model") / "m.mpk"
    modelpack.export(LogisticRegression().fit(x, x.a > 0.5), path, sample=x[:5])
    return modelpack.load(path)


def _rows(path: Path) -> None:
    pq.write_table(pa.table({"a": [0.1, 0.9], "b": [0.5, 0.5]}), path)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="symbolic links are not available here")
def test_a_link_to_a_file_outside_the_folder_is_refused(model: Any, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "elsewhere").mkdir()
    _rows(tmp_path / "in" / "x.parquet")
    _rows(tmp_path / "elsewhere" / "secret.parquet")
    assert predict_file(model, tmp_path / "in", tmp_path / "out") == 2
    os.symlink(tmp_path / "elsewhere", tmp_path / "in" / "link")
    with pytest.raises(InputError, match="outside the folder"):
        predict_file(model, tmp_path / "in", tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="symbolic links are not available here")
def test_a_link_looping_back_into_the_folder_is_refused_not_scored_again(model: Any, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    _rows(tmp_path / "in" / "x.parquet")
    os.symlink(tmp_path / "in", tmp_path / "in" / "again")
    with pytest.raises(InputError, match="read twice through a link"):
        predict_file(model, tmp_path / "in", tmp_path / "out")
