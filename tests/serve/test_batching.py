"""Micro-batching: merging, limits, splitting, fallbacks; and through a real server."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

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
    assert answers == [[(float(k + j + 1 + k * j), 2 * k * j) for j in range(5)] for k in range(12)]
    assert fixed["outputs"][0]["data"] == [-1.0, 2.0]
    stats = app.state.batchers["arith", "1.2.0"].stats
    assert stats.requests == 60 and stats.rows == 60
    assert stats.batches < stats.requests  # some requests were merged
