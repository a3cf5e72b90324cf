"""One Model shared by threads, Models sent to worker processes, and nothing left behind.

Thread safety: a loaded Model may be used for predict/run from many threads at
once (ONNX Runtime's ``InferenceSession.run`` is thread-safe and modelpack keeps
no per-call state on the Model); the results equal those of one thread.
Processes: a Model pickles by re-opening its package, so it can go to a
multiprocessing pool.
"""

from __future__ import annotations

import multiprocessing
import pickle
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import modelpack
from modelpack import Model
from modelpack.errors import ModelpackError


def inputs(seed: int, calls: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((int(rng.integers(1, 33)), 4)).astype(np.float32) for _ in range(calls)]


def hammer(model: Model, threads: int, calls: int) -> None:
    """Each thread predicts its own inputs; every result must equal the single-thread one."""
    batches = {t: inputs(t, calls) for t in range(threads)}
    expected = {t: [model.predict(X) for X in batches[t][:50]] for t in range(threads)}
    start = threading.Barrier(threads)

    def work(t: int) -> int:
        start.wait()  # all threads start together, to overlap as much as possible
        for i, X in enumerate(batches[t]):
            got = model.predict(X) if i % 2 else model.run({"X": X})["Y"]
            np.testing.assert_array_equal(got, X + np.float32(1))
            if i < 50:
                np.testing.assert_array_equal(got, expected[t][i])
        return len(batches[t])

    with ThreadPoolExecutor(threads) as pool:
        done = list(pool.map(work, range(threads)))
    assert done == [calls] * threads


@pytest.fixture
def loaded(kit) -> Model:
    model = modelpack.load(kit.package("pkg.mpk"))
    yield model
    model.close()


def test_one_model_from_many_threads(loaded: Model) -> None:
    hammer(loaded, threads=4, calls=300)


@pytest.mark.slow
def test_one_model_from_16_threads_10000_predictions_each(loaded: Model) -> None:
    hammer(loaded, threads=16, calls=10_000)


def test_a_model_pickles_by_reopening_its_package(kit) -> None:
    path = kit.package("pkg.mpk")
    with modelpack.load(path) as model:
        clone = pickle.loads(pickle.dumps(model))
    with clone:
        assert clone.path == path
        np.testing.assert_array_equal(clone.predict(np.zeros((1, 4), np.float32)), np.ones((1, 4)))


def test_a_model_works_in_a_multiprocessing_pool(kit) -> None:
    path = kit.package("pkg.mpk")
    batches = inputs(7, 6)
    # spawn, not fork: a forked ONNX Runtime with live thread pools can deadlock.
    context = multiprocessing.get_context("spawn")
    with modelpack.load(path) as model, context.Pool(2) as pool:
        results = pool.starmap(Model.predict, [(model, X) for X in batches])
        pool.close()
        pool.join()
    for X, got in zip(batches, results, strict=True):
        np.testing.assert_array_equal(got, X + np.float32(1))
    assert multiprocessing.active_children() == []  # no orphan worker


def test_a_signed_model_pickles_with_its_trusted_keys(kit, tmp_path) -> None:
    pytest.importorskip("cryptography", reason="signing needs the 'sign' extra")
    from modelpack._package.signing import generate_key, sign

    path = kit.package("pkg")
    public = generate_key(tmp_path / "key")
    sign(path, tmp_path / "key")
    with modelpack.load(path, trusted_keys=[public]) as model:
        payload = pickle.dumps(model)
    (path / "modelpack.sig").unlink()  # the clone re-checks the signature when it re-opens
    with pytest.raises(modelpack.SignatureError):
        pickle.loads(payload)


def test_model_is_a_context_manager_and_closes_everything(kit, private_tmp: Path) -> None:
    with modelpack.load(kit.package("pkg.mpk")) as model:
        model.predict(np.zeros((1, 4), np.float32))
    assert list(private_tmp.iterdir()) == []
    with pytest.raises(ModelpackError):
        model.predict(np.zeros((1, 4), np.float32))
    model.close()  # idempotent
