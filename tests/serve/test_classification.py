"""The classification extension: top-k strings from scores, over REST as over gRPC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelpack.serve._classification import classify, top_k
from modelpack.serve._errors import RequestError

from .conftest import create_app, make_iris, running

httpx = pytest.importorskip("httpx")


def test_top_classes_in_order_with_and_without_labels() -> None:
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]], dtype=np.float32)
    assert classify(scores, 2, ["a", "b", "c"]).tolist() == [["0.699999988079071:1:b", "0.20000000298023224:2:c"],
                                                             ["0.5:0:a", "0.25:1:b"]]
    assert classify(scores, 9, None).shape == (2, 3)  # k past the classes: every class
    assert classify(np.array([3, 1, 2]), 1, None).tolist() == [["3:0"]]  # one row of scores


@pytest.mark.parametrize("k", [0, -1, True, "2", 1.5])
def test_k_must_be_a_positive_integer(k: object) -> None:
    with pytest.raises(RequestError, match="positive integer"):
        top_k(k, "y")


def test_text_outputs_cannot_be_ranked() -> None:
    with pytest.raises(RequestError, match="numeric scores"):
        classify(np.array([["a", "b"]], dtype=object), 1, None)


def test_rest_requests_get_top_classes(tmp_path: Path) -> None:
    with running(create_app([make_iris(tmp_path)])) as url:
        body = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
                "outputs": [{"name": "Y", "parameters": {"classification": 2}}]}
        out = httpx.post(f"{url}/v2/models/iris/infer", json=body).json()["outputs"][0]
    y = np.array([1, 2, 3, 4], np.float32) @ np.array([[0.5, -1, 0], [1, 0, 2], [0, 0.25, -1], [3, 1, 0]], np.float32)
    order = np.argsort(-y)[:2]
    assert out["datatype"] == "BYTES" and out["shape"] == [1, 2]
    assert out["data"] == [f"{y[i]}:{i}" for i in order]
