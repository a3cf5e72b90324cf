"""Micro-batching: merging, limits, splitting, fallbacks; and through a real server."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

import modelpack
from modelpack.serve._batching import MicroBatcher

from .conftest import create_app, make_arith, make_fixed, running


class Doubler:
    """A model stand-in that records the row count of every run it is given."""

    def __init__(self, per_row: bool = True) -> None:
        self.runs: list[int] = []
        self.per_row = per_row

    async def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
        x = feeds["x"]
        self.runs.append(len(x))
        await asyncio.sleep(0)
        if (x < 0).any():
            raise ValueError(f"negative input in a run of {len(x)} rows")
        out = {"y": x * 2, "labels": [f"r{v}" for v in x[:, 0].tolist()]}
        if not self.per_row:
            out["total"] = np.array([x.sum()])
        return out


def _feeds(*values: float, width: int = 2) -> dict[str, np.ndarray]:
    return {"x": np.array([[v] * width for v in values], dtype=np.float32)}


def _submit_all(batcher: MicroBatcher, feeds: list[dict[str, np.ndarray]]) -> list[Any]:
    async def go() -> list[Any]:
        try:
            return await asyncio.gather(*(batcher.submit(f) for f in feeds), return_exceptions=True)
        finally:
            await batcher.close()

    return asyncio.run(go())


def test_concurrent_requests_merge_into_one_run_and_split_back() -> None:
    model = Doubler()
    batcher = MicroBatcher(model, max_batch_size=64, max_latency_ms=50)
    feeds = [_feeds(*range(k, k + k % 3 + 1)) for k in range(10)]
    results = _submit_all(batcher, feeds)
    assert model.runs == [sum(len(f["x"]) for f in feeds)]
    for f, out in zip(feeds, results, strict=True):
        np.testing.assert_array_equal(out["y"], f["x"] * 2)
        assert out["labels"] == [f"r{v}" for v in f["x"][:, 0].tolist()]
    assert batcher.stats.batches == 1 and batcher.stats.requests == 10


def test_batches_respect_max_batch_size_and_large_requests_run_alone() -> None:
    model = Doubler()
    batcher = MicroBatcher(model, max_batch_size=4, max_latency_ms=50)
    results = _submit_all(batcher, [_feeds(i) for i in range(10)] + [_feeds(*range(6))])
    assert sorted(model.runs) == [2, 4, 4, 6]
    assert [r["y"][0, 0] for r in results[:10]] == [2.0 * i for i in range(10)]


def test_requests_of_other_shapes_are_not_merged() -> None:
    model = Doubler()
    batcher = MicroBatcher(model, max_batch_size=64, max_latency_ms=50)
    results = _submit_all(batcher, [_feeds(1, width=2), _feeds(2, width=3), _feeds(3, width=2)])
    assert sorted(model.runs) == [1, 2]
    assert [r["y"].shape for r in results] == [(1, 2), (1, 3), (1, 2)]


def test_a_failing_merged_run_is_retried_alone_so_only_the_bad_request_fails() -> None:
    model = Doubler()
    batcher = MicroBatcher(model, max_batch_size=64, max_latency_ms=50)
    results = _submit_all(batcher, [_feeds(1), _feeds(-1), _feeds(3)])
    assert isinstance(results[1], ValueError) and "run of 1 rows" in str(results[1])
    assert results[0]["y"][0, 0] == 2 and results[2]["y"][0, 0] == 6
    assert batcher.stats.fallbacks == 1 and model.runs == [3, 1, 1, 1]


def test_an_output_that_is_not_per_row_makes_the_requests_run_alone() -> None:
    model = Doubler(per_row=False)
    batcher = MicroBatcher(model, max_batch_size=64, max_latency_ms=50)
    results = _submit_all(batcher, [_feeds(1, 2), _feeds(5)])
    assert [r["total"].tolist() for r in results] == [[6.0], [10.0]]  # each its own sum, never the batch's
    assert batcher.stats.fallbacks == 1


def test_a_lone_request_does_not_wait_but_a_stream_of_them_is_gathered() -> None:
    model = Doubler()
    batcher = MicroBatcher(model, max_batch_size=2, max_latency_ms=300)

    async def go() -> tuple[float, list[int]]:
        start = time.perf_counter()
        await batcher.submit(_feeds(1))
        alone = time.perf_counter() - start
        for _ in range(5):  # a quick stream: arrivals now come faster than the window
            await asyncio.gather(batcher.submit(_feeds(1)), batcher.submit(_feeds(2)))
        model.runs.clear()
        first = asyncio.ensure_future(batcher.submit(_feeds(1)))
        await asyncio.sleep(0.03)
        await asyncio.gather(first, batcher.submit(_feeds(2)))
        await batcher.close()
        return alone, model.runs

    alone, runs = asyncio.run(go())
    assert alone < 0.29  # waiting out the 300 ms window would take 0.3 s or more
    assert runs == [2]  # the second request, 30 ms later, joined the first


def test_a_client_that_waits_for_each_answer_alone_never_waits_out_the_window() -> None:
    # Its requests come faster than the window, but no other client is there to join them.
    model = Doubler()
    batcher = MicroBatcher(model, max_batch_size=8, max_latency_ms=2000)

    async def go() -> float:
        start = time.perf_counter()
        for _ in range(5):
            await batcher.submit(_feeds(1))
        elapsed = time.perf_counter() - start
        await batcher.close()
        return elapsed

    elapsed = asyncio.run(go())
    assert elapsed < 2.0  # waiting out the window once would take 2 s (from the second request on)
    assert model.runs == [1] * 5


def test_close_fails_the_requests_still_waiting() -> None:
    async def never(feeds: dict[str, np.ndarray]) -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {}

    async def go() -> BaseException | None:
        batcher = MicroBatcher(never, max_batch_size=8, max_latency_ms=1, max_concurrent=1)
        running_one = asyncio.ensure_future(batcher.submit(_feeds(1)))
        await asyncio.sleep(0.01)
        waiting = asyncio.ensure_future(batcher.submit(_feeds(2)))
        await asyncio.sleep(0.01)
        running_one.cancel()
        close = asyncio.ensure_future(batcher.close())
        result = await asyncio.gather(waiting, return_exceptions=True)
        close.cancel()
        return result[0]

    assert "shutting down" in str(asyncio.run(go()))


# -- through a real server -----------------------------------------------------------------
def test_server_merges_concurrent_requests_and_answers_each_correctly(tmp_path_factory) -> None:
    httpx = pytest.importorskip("httpx")
    folder = tmp_path_factory.mktemp("batching")
    app = create_app([make_arith(folder), make_fixed(folder)], max_batch_size=64, max_latency_ms=5)
    assert list(app.state.batchers) == [("arith", "1.2.0")]  # "fixed" has no dynamic batch dimension
    with running(app) as url:
        def one(k: int) -> tuple[list[float], list[int]]:
            with httpx.Client(base_url=url, timeout=30) as c:
                results = []
                for j in range(5):
                    body = {"inputs": [{"name": "a", "shape": [1, 3], "datatype": "FP32", "data": [k, j, 1]},
                                       {"name": "b", "shape": [1], "datatype": "INT64", "data": [k * j]}]}
                    out = c.post("/v2/models/arith/infer", json=body).json()["outputs"]
                    results.append((out[0]["data"][0], out[1]["data"][0]))
                return results

        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(one, range(12)))
        fixed = httpx.post(f"{url}/v2/models/fixed/infer", json={"inputs": [
            {"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, -2]}]}).json()
        # a small request is decoded on the event loop: its errors are answers too
        bad = httpx.post(f"{url}/v2/models/arith/infer", json={"inputs": [
            {"name": "a", "shape": [1, 3], "datatype": "FP32", "data": [1, 2]}]})
        assert bad.status_code == 400 and "holds 2 element(s)" in bad.json()["error"]
        assert httpx.post(f"{url}/v2/models/arith/infer", content=b"{").status_code == 400
    assert answers == [[(float(k + j + 1 + k * j), 2 * k * j) for j in range(5)] for k in range(12)]
    assert fixed["outputs"][0]["data"] == [-1.0, 2.0]
    stats = app.state.batchers["arith", "1.2.0"].stats
    assert stats.requests == 60 and stats.rows == 60
    assert stats.batches < stats.requests  # some requests were merged


def test_a_tree_model_runs_on_the_tree_engine_alone_and_merged(tmp_path_factory) -> None:
    # Merged batches reach the tree engine as any batch does: answers as the library's, alone or merged.
    httpx = pytest.importorskip("httpx")
    ensemble = pytest.importorskip("sklearn.ensemble")
    pytest.importorskip("numba", reason="modelpack[trees] is not installed")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6)).astype(np.float32)
    gbm = ensemble.GradientBoostingRegressor(n_estimators=30, max_depth=3, random_state=0).fit(X, X[:, 0] * X[:, 1])
    folder = tmp_path_factory.mktemp("batching-trees")
    package = folder / "gbm.mpk"
    modelpack.export(gbm, package, sample=X[:20], name="gbm")
    app = create_app([package], max_batch_size=64, max_latency_ms=20)
    assert app.state.models == [("gbm", "0.0.0", "modelpack-trees")]
    rows = rng.normal(size=(1000, 6)).astype(np.float32)
    rows[::7, 2] = np.nan

    def post(client: Any, part: np.ndarray) -> np.ndarray:
        header = {"inputs": [{"name": "X", "shape": list(part.shape), "datatype": "FP32",
                              "parameters": {"binary_data_size": part.nbytes}}]}
        body = json.dumps(header).encode()
        r = client.post("/v2/models/gbm/infer", content=body + part.tobytes(),
                        headers={"Inference-Header-Content-Length": str(len(body))})
        r.raise_for_status()
        return np.asarray(r.json()["outputs"][0]["data"], dtype=np.float32)

    with running(app) as url:
        with httpx.Client(base_url=url, timeout=30) as c:
            whole = post(c, rows)  # one request past the batch size: run alone

        def some(k: int) -> np.ndarray:
            with httpx.Client(base_url=url, timeout=30) as c:
                return np.concatenate([post(c, rows[k * 40 + j * 8:k * 40 + j * 8 + 8]) for j in range(5)])

        with ThreadPoolExecutor(8) as pool:
            merged = np.concatenate(list(pool.map(some, range(8))))
    engine = modelpack.load(package)
    reference = modelpack.load(package, engine="onnxruntime")
    assert engine.engine == "modelpack-trees"
    np.testing.assert_array_equal(whole, engine.predict(rows).reshape(-1))
    np.testing.assert_allclose(whole, reference.predict(rows).reshape(-1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(merged, whole[:320], rtol=1e-5, atol=1e-5)
    stats = app.state.batchers["gbm", "0.0.0"].stats
    assert stats.requests == 40 and stats.rows == 320
