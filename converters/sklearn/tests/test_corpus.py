"""ONNX files made by skl2onnx's own test suite, with scikit-learn's expected outputs.

Each case of the corpus ``onnx/skl2onnx-generated`` holds ``model.onnx`` and
``data.npz`` (``X`` and ``expected_0..n``: scikit-learn's predict, predict_proba or
transform on ``X``, computed when the file was made). Every case goes through
``modelpack.pack`` -> ``modelpack.load`` -> ``predict``/``predict_proba``/``run`` and
must reproduce the expected outputs: labels exactly, numbers within the case's
tolerance (``10**-decimals`` from its ``-DecN`` suffix, else 1e-5, as atol = rtol).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelpack
from modelpack.testing import compare_outputs as compare

# tests -> sklearn -> converters -> repository root; the corpora sit beside the repository.
CORPUS = Path(__file__).resolve().parents[3] / "tests" / "data" / "corpora" / "onnx" / "skl2onnx-generated"
DEFAULT_DECIMALS = 5

# Cases whose expected values the ONNX file does not reproduce for a known reason.
EXCLUDED: dict[str, str] = {}


def _cases() -> list[dict[str, Any]]:
    if not (CORPUS / "cases.json").is_file():
        return []
    return json.loads((CORPUS / "cases.json").read_text())


CASES = _cases()


@pytest.fixture(autouse=True)
def _corpus_present() -> None:
    if not CASES:
        pytest.skip(f"the skl2onnx-generated corpus is not at {CORPUS.resolve()}")


def test_corpus_is_complete() -> None:
    assert len(CASES) >= 100
    assert all((CORPUS / c["case"] / "model.onnx").is_file() for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_case(case: dict[str, Any], tmp_path: Path) -> None:
    if case["case"] in EXCLUDED:
        pytest.skip(EXCLUDED[case["case"]])
    folder = CORPUS / case["case"]
    with np.load(folder / "data.npz", allow_pickle=False) as npz:
        X = npz["X"]
        expected = [npz[f"expected_{i}"] for i in range(case["n_expected"])]
    tol = 10.0 ** -(case["decimals"] or DEFAULT_DECIMALS)
    modelpack.pack(folder / "model.onnx", tmp_path / "case.mpk", name=case["case"], sample=X)
    with modelpack.load(tmp_path / "case.mpk") as pkg:
        for i, (got, ref) in enumerate(zip(_outputs(pkg, X, len(expected)), expected, strict=True)):
            result = compare(f"expected_{i}", got, ref, 0.0 if _is_label(pkg, i) else tol)
            assert result.passed, (case["case"], i, result)


def _is_label(pkg: modelpack.Model, i: int) -> bool:
    return pkg.manifest.task == "classification" and i == 0


def _outputs(pkg: modelpack.Model, X: np.ndarray, n: int) -> list[Any]:
    """What the model gives for each expected output, through the public API."""
    if pkg.manifest.task == "classification":
        assert pkg.classes is not None
        got = [pkg.predict(X)]
        return got + [pkg.predict_proba(X)] if n > 1 else got
    outputs = pkg.run(X)
    return [np.asarray(outputs[spec.name]) for spec in pkg.outputs[:n]]
