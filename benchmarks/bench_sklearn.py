"""scikit-learn: export time, and predict through modelpack vs scikit-learn's own predict.

A handful of typical models (linear, forest, boosting, a neural network, KMeans and a
ColumnTransformer pipeline over a DataFrame with string columns) are exported with
``modelpack.export`` and loaded back. ``predict`` is timed at 1 row and at 10,000 rows,
interleaved with scikit-learn's ``predict`` on the same data (numpy float32, or the
DataFrame for the pipeline) in one process.
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

N_TRAIN, N_FEATURES, N_BIG = 2_000, 20, 10_000
ROUND_SECONDS = 0.02  # each timed round lasts about this long


def numeric_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=N_TRAIN, n_features=N_FEATURES, n_informative=10, random_state=0)
    target = X[:, :5].sum(axis=1) + np.sin(X[:, 5])
    return X.astype(np.float32), y, target


def frame_data(n: int = N_TRAIN) -> tuple[Any, np.ndarray]:
    import pandas as pd

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"age": rng.normal(40, 12, n), "income": rng.lognormal(10, 1, n),
                       "n kids": rng.integers(0, 4, n), "city": rng.choice(["Paris", "Lyon", "Nantes"], n),
                       "plan": rng.choice(["basic", "pro", "team"], n)})
    y = (df["age"] / 40 + (df["city"] == "Lyon") + rng.normal(0, 0.5, n) > 1.5).to_numpy()
    return df, y


def models() -> dict[str, tuple[Any, Any]]:
    """name -> (fitted model, its data)."""
    from sklearn.cluster import KMeans
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X, y, target = numeric_data()
    df, yf = frame_data()
    pre = ColumnTransformer([("num", StandardScaler(), ["age", "income", "n kids"]),
                             ("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"])])
    return {
        "LogisticRegression": (LogisticRegression(max_iter=500).fit(X, y), X),
        "RandomForestClassifier (100 trees, depth 8)": (
            RandomForestClassifier(100, max_depth=8, random_state=0).fit(X, y), X),
        "GradientBoostingRegressor (100 trees)": (GradientBoostingRegressor(random_state=0).fit(X, target), X),
        "Pipeline(StandardScaler, MLPClassifier 64-32)": (
            make_pipeline(StandardScaler(), MLPClassifier((64, 32), max_iter=300, random_state=0)).fit(X, y), X),
        "KMeans (8 clusters)": (KMeans(8, n_init=3, random_state=0).fit(X), X),
        "ColumnTransformer + LogisticRegression (DataFrame)": (
            make_pipeline(pre, LogisticRegression()).fit(df, yf), df),
    }


def export_seconds(model: Any, sample: Any, folder: Path, repeats: int = 3) -> float:
    import modelpack

    times = []
    for i in range(repeats):
        start = time.perf_counter()
        modelpack.export(model, folder / f"m{i}.mpk", sample=sample)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _rows(data: Any, n: int) -> Any:
    if hasattr(data, "iloc"):
        import pandas as pd

        return pd.concat([data] * (n // len(data) + 1), ignore_index=True).iloc[:n]
    return np.tile(data, (n // len(data) + 1, 1))[:n]


def _pair(ours: Callable[[Any], Any], theirs: Callable[[Any], Any], X: Any, *, rounds: int) -> tuple[float, float]:
    start = time.perf_counter()
    theirs(X)
    ours(X)
    number = max(1, int(ROUND_SECONDS / max(time.perf_counter() - start, 1e-6)))
    timing = interleaved({"modelpack": lambda: ours(X), "sklearn": lambda: theirs(X)},
                         rounds=rounds, number=number)
    return timing["modelpack"], timing["sklearn"]


def measure(name: str, model: Any, data: Any, folder: Path) -> dict[str, Any]:
    import modelpack

    export = export_seconds(model, data.iloc[:200] if hasattr(data, "iloc") else data[:200], folder)
    row, big = _rows(data, 1), _rows(data, N_BIG)
    with modelpack.load(folder / "m0.mpk") as packaged:
        check = _agreement(np.asarray(packaged.predict(big)), np.asarray(model.predict(big)))
        one = _pair(packaged.predict, model.predict, row, rounds=15)
        many = _pair(packaged.predict, model.predict, big, rounds=5)
    print(f"{name}: export {export * 1e3:.0f} ms, 1 row {us(one[0])} vs {us(one[1])} µs, "
          f"10k rows {many[0] * 1e3:.1f} vs {many[1] * 1e3:.1f} ms, {check}", flush=True)
    return {"export": export, "one_mp": one[0], "one_sk": one[1], "big_mp": many[0], "big_sk": many[1],
            "check": check}


def _agreement(ours: np.ndarray, theirs: np.ndarray) -> str:
    """Share of equal labels, or the largest difference of regression values."""
    if theirs.dtype.kind == "f":
        return f"max abs diff {float(np.abs(ours.reshape(theirs.shape) - theirs).max()):.1e}"
    return f"{float(np.mean(ours.reshape(-1) == theirs.reshape(-1))):.2%} equal"


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| model | export (ms) | 1 row: modelpack (µs) | 1 row: sklearn (µs) | speed-up | "
             "10k rows: modelpack (ms) | 10k rows: sklearn (ms) | speed-up | modelpack vs sklearn on 10k rows |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['export'] * 1e3:,.0f} | {us(r['one_mp'])} | {us(r['one_sk'])} | "
                     f"{r['one_sk'] / r['one_mp']:.1f}× | {r['big_mp'] * 1e3:,.2f} | {r['big_sk'] * 1e3:,.2f} | "
                     f"{r['big_sk'] / r['big_mp']:.2f}× | {r['check']} |")
    return "\n".join(lines)


def main() -> None:
    load_before = os.getloadavg()[0]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, (model, data)) in enumerate(models().items()):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            results[name] = measure(name, model, data, folder)
    body = (f"Models trained on {N_TRAIN:,} rows ({N_FEATURES} float32 features, or a DataFrame with 3 "
            "numeric and 2 string columns). Export = `modelpack.export(model, path, sample=rows[:200])` "
            "(skl2onnx conversion, a check run, fidelity measurement, writing the archive), median of 3. "
            "Predict = `predict` at 1 row and at 10,000 rows, modelpack (ONNX Runtime, CPU) vs scikit-learn, "
            "each with its default threads; medians of interleaved rounds in one process. Speed-up > 1 "
            "means modelpack is faster. The last column compares the predictions on the 10,000 rows: "
            "share of equal labels, or the largest absolute difference for the regressor.\n\n"
            + table(results)
            + f"\n\nSystem load average (1 min) {load_before:.1f} before and {os.getloadavg()[0]:.1f} after the "
              "run: on a loaded machine scikit-learn's per-call Python overhead grows most, so the 1-row "
              "ratios are the most sensitive to it.\n\nCommand: `.venv/bin/python benchmarks/bench_sklearn.py`")
    path = write_section("sklearn", "scikit-learn: export time and predict speed", body,
                         ["modelpack", "modelpack-sklearn", "scikit-learn", "skl2onnx", "onnxruntime", "numpy",
                          "pandas"])
    print(path.read_text())


if __name__ == "__main__":
    main()
