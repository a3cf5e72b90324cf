"""Gradient boosting: export time, and predict through modelpack vs the framework's own predict.

One binary classifier per framework (XGBoost, LightGBM, CatBoost; 100 trees of
depth 6 on 20 float features), exported with ``modelpack.export`` and loaded
back. ``predict_proba`` is timed at 1 row and at 10,000 rows, interleaved with
the framework's ``predict_proba`` on the same numpy data in one process, one
thread each.
CatBoost is measured twice: with its ZipMap output (the default, a list of dicts,
whose tensor ``predict_proba`` reads directly when the tree engine runs) and with
``options={"zipmap": False}`` (a tensor).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import interleaved, us, write_section  # noqa: E402

N_TRAIN, N_FEATURES, N_BIG = 5_000, 20, 10_000
TREES, DEPTH = 100, 6
# One thread on both sides: a fair comparison, and stable on a machine shared with other work
# (OpenMP and ONNX Runtime thread pools that spin against each other distort small calls).
THREADS = 1


def data() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=N_TRAIN, n_features=N_FEATURES, n_informative=10, random_state=0)
    return X.astype(np.float32), y


def models(X: np.ndarray, y: np.ndarray) -> dict[str, tuple[Any, dict[str, Any]]]:
    """name -> (fitted model, export options)."""
    import catboost
    import lightgbm
    import xgboost

    xgb = xgboost.XGBClassifier(n_estimators=TREES, max_depth=DEPTH, n_jobs=THREADS).fit(X, y)
    lgb = lightgbm.LGBMClassifier(n_estimators=TREES, max_depth=DEPTH, num_leaves=63, n_jobs=THREADS,
                                  verbose=-1).fit(X, y)
    cb = catboost.CatBoostClassifier(iterations=TREES, depth=DEPTH, thread_count=THREADS, verbose=0,
                                     allow_writing_files=False).fit(X, y)
    return {"XGBoost": (xgb, {}), "LightGBM": (lgb, {}), "CatBoost (ZipMap)": (cb, {}),
            "CatBoost (zipmap=False)": (cb, {"zipmap": False})}


def export_seconds(model: Any, options: dict[str, Any], sample: np.ndarray, folder: Path,
                   repeats: int = 3) -> float:
    """Median wall time of ``modelpack.export``; the first package written is m0.mpk."""
    import modelpack

    times = []
    for i in range(repeats):
        start = time.perf_counter()
        modelpack.export(model, folder / f"m{i}.mpk", sample=sample, options=options)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, model: Any, options: dict[str, Any], X: np.ndarray, folder: Path) -> dict[str, float]:
    import modelpack

    export = export_seconds(model, options, X[:200], folder)
    row, big = X[:1], np.tile(X, (N_BIG // len(X) + 1, 1))[:N_BIG]
    with modelpack.load(folder / "m0.mpk", session_options={"intra_op_num_threads": THREADS}) as packaged:
        np.testing.assert_allclose(packaged.predict_proba(big), model.predict_proba(big), atol=1e-4)
        one = _pair(packaged.predict_proba, model.predict_proba, row, rounds=15, number=100)
        many = _pair(packaged.predict_proba, model.predict_proba, big, rounds=7, number=2)
    print(f"{name}: export {export * 1e3:.0f} ms, 1 row {us(one[0])} vs {us(one[1])} µs, "
          f"10k rows {many[0] * 1e3:.1f} vs {many[1] * 1e3:.1f} ms", flush=True)
    return {"export": export, "one_mp": one[0], "one_fw": one[1], "big_mp": many[0], "big_fw": many[1]}


def _pair(ours: Callable[[Any], Any], theirs: Callable[[Any], Any], X: np.ndarray,
          *, rounds: int, number: int) -> tuple[float, float]:
    timing = interleaved({"modelpack": lambda: ours(X), "framework": lambda: theirs(X)},
                         rounds=rounds, number=number)
    return timing["modelpack"], timing["framework"]


def table(results: dict[str, dict[str, float]]) -> str:
    lines = ["| model | export (ms) | 1 row: modelpack (µs) | 1 row: framework (µs) | speed-up | "
             "10k rows: modelpack (ms) | 10k rows: framework (ms) | speed-up |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['export'] * 1e3:,.0f} | {us(r['one_mp'])} | {us(r['one_fw'])} | "
                     f"{r['one_fw'] / r['one_mp']:.1f}× | {r['big_mp'] * 1e3:,.1f} | {r['big_fw'] * 1e3:,.1f} | "
                     f"{r['big_fw'] / r['big_mp']:.2f}× |")
    return "\n".join(lines)


def main() -> None:
    X, y = data()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, (model, options)) in enumerate(models(X, y).items()):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            results[name] = measure(name, model, options, X, folder)
    load = os.getloadavg()[0]
    body = (f"Binary classifiers, {TREES} trees of depth {DEPTH}, {N_FEATURES} float32 features, trained on "
            f"{N_TRAIN:,} rows. Export = `modelpack.export(model, path, sample=X[:200])` (convert, "
            "fidelity check, write), median of 3. Predict = `predict_proba` on numpy float32 input, "
            "modelpack with its default engine (1 row: ONNX Runtime; 10k rows: the tree engine, "
            f"docs/trees.md) vs the framework's own, {THREADS} thread each; medians "
            "of interleaved rounds in one process. Speed-up > 1 means modelpack is faster. Load average "
            f"during the run: {load:.1f} (on a shared machine, absolute times are noisy).\n\n"
            + table(results) + "\n\nCommand: `.venv/bin/python benchmarks/bench_boosting.py`")
    path = write_section("boosting", "Gradient boosting: export time and predict speed", body,
                         ["modelpack", "onnxruntime", "onnxmltools", "xgboost", "xgboost-cpu", "lightgbm",
                          "catboost", "numpy"])
    print(path.read_text())


if __name__ == "__main__":
    main()
