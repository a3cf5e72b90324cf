"""Models made by others, with their expected outputs, through pack -> load -> run.

Each case is run twice: raw onnxruntime, and modelpack. Where raw onnxruntime
reproduces the expected outputs, modelpack must too. Where raw onnxruntime fails
(operators it dropped, a locale the machine lacks, training operators), modelpack
must fail with a ModelpackError, never a raw onnxruntime error.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import modelpack

from .conftest import CORPORA

ONNX_DIRS = ["onnx-backend-simple", "onnx-backend-node-selected", "onnx-backend-pytorch-converted-selected"]
CASES = sorted(p for d in ONNX_DIRS for p in (CORPORA / "onnx" / d).glob("test_*") if p.is_dir()) \
    if (CORPORA / "onnx").is_dir() else []

pytestmark = pytest.mark.skipif(not CASES, reason=f"test corpora not found at {CORPORA}")


def _read_value(path: Path, type_proto) -> object:
    data = path.read_bytes()
    if type_proto.WhichOneof("value") == "sequence_type":
        seq = onnx.SequenceProto()
        seq.ParseFromString(data)
        return [numpy_helper.to_array(t) for t in seq.tensor_values]
    tensor = onnx.TensorProto()
    tensor.ParseFromString(data)
    return numpy_helper.to_array(tensor)


def _case(case: Path):
    model = onnx.load(case / "model.onnx")
    init = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in init]
    data = case / "test_data_set_0"
    feeds = {v.name: _read_value(data / f"input_{i}.pb", v.type) for i, v in enumerate(inputs)}
    expected = [_read_value(data / f"output_{i}.pb", v.type) for i, v in enumerate(model.graph.output)]
    return feeds, expected


def _close(got, want) -> bool:
    if isinstance(want, list):
        return len(got) == len(want) and all(_close(g, w) for g, w in zip(got, want, strict=True))
    got, want = np.asarray(got), np.asarray(want)
    if want.dtype.kind in "OUS":
        return got.astype(str).tolist() == want.astype(str).tolist()
    return got.shape == want.shape and np.allclose(got, want, rtol=1e-3, atol=1e-7)


def _raw(case: Path, feeds):
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(str(case / "model.onnx"), providers=["CPUExecutionProvider"])
        return sess.run(None, feeds), None
    except Exception as exc:  # the reason raw onnxruntime cannot run this case
        return None, exc


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.name}" for c in CASES])
def test_corpus_case(case, tmp_path):
    feeds, expected = _case(case)
    raw, raw_error = _raw(case, feeds)
    raw_ok = raw is not None and all(_close(g, w) for g, w in zip(raw, expected, strict=False))
    if raw_error is not None:
        # Excluded from the numeric check because onnxruntime itself cannot run it; modelpack
        # must still refuse it cleanly.
        with pytest.raises(modelpack.ModelpackError):
            modelpack.pack(case / "model.onnx", tmp_path / "m.mpk", name=case.name)
            with modelpack.load(tmp_path / "m.mpk") as m:
                m.run(feeds)
        return
    modelpack.pack(case / "model.onnx", tmp_path / "m.mpk", name=case.name)
    with modelpack.load(tmp_path / "m.mpk") as m:
        got = m.run(feeds)
    assert list(got) == [o.name for o in onnx.load(case / "model.onnx").graph.output]
    ours_ok = all(_close(g, w) for g, w in zip(got.values(), expected, strict=False))
    assert ours_ok == raw_ok, f"modelpack {'passes' if ours_ok else 'fails'} where raw onnxruntime does not"
    if not raw_ok:
        pytest.xfail("onnxruntime's own result differs from the expected outputs")


def test_zipmap_logistic_regression_from_onnxruntime(tmp_path):
    folder = CORPORA / "onnx" / "onnxruntime-datasets"
    spec = json.loads((folder / "expected.json").read_text())
    modelpack.pack(folder / "logreg_iris.onnx", tmp_path / "iris.mpk")
    with modelpack.load(tmp_path / "iris.mpk") as m:
        X = np.array(spec["input"]["float_input"])
        np.testing.assert_array_equal(m.predict(X), spec["expected"]["label"])
        want = np.array([[row[str(c)] for c in m.classes] for row in spec["expected"]["probabilities"]])
        np.testing.assert_allclose(m.predict_proba(X), want, **spec["tolerance"])
        raw = m.run(X)["probabilities"]
        assert isinstance(raw, list) and set(raw[0]) == {0, 1, 2}
