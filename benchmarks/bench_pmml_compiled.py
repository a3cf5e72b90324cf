"""PMML compiled to ONNX: the compiled package against the PMML evaluator, pypmml and a direct ONNX export.

For each scikit-learn model, the same fitted estimator is exported twice: with
``format="pmml"`` (sklearn2pmml; the package holds the document and its compiled
ONNX model, which runs by default) and with ``format="onnx"`` (skl2onnx). Contenders,
each asked for the class probabilities (regressors: the prediction) of the same rows:

* compiled: ``modelpack.load(pkg).predict_proba`` (the compiled ONNX model);
* PMML evaluator: the same package with ``compile="never"`` (pmml4s in the JVM);
* pypmml: ``Model.predict(DataFrame)`` (its JPype gateway), every output;
* direct ONNX: the ONNX export's ``predict_proba`` (``engine="auto"``: the tree engine
  where it takes the model).

Goals: the compiled package at least 0.8x the direct ONNX export and at least 50x
pypmml at 100k rows. The contenders run interleaved; medians. The two ONNX
contenders are timed in a process of their own, as an application that loads a
compiled package runs it: no JVM there (in the packing process the evaluator's JVM
collects its garbage on the same two cores, which slowed both of them 3-7x at 100k
rows and made their ratio meaningless).

Run: .venv/bin/python benchmarks/bench_pmml_compiled.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import interleaved, write_section  # noqa: E402
from bench_pmml import timed  # noqa: E402

SIZES = {1: (9, 200), 100: (7, 30), 100_000: (3, 1)}  # rows: (rounds, calls per round)


def models() -> list[tuple[str, Any, str]]:
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    return [("random forest, 30 trees of depth 8", RandomForestClassifier(n_estimators=30, max_depth=8,
                                                                           random_state=0), "proba"),
            ("gradient boosting, 100 trees of depth 3", GradientBoostingClassifier(n_estimators=100,
                                                                                   random_state=0), "proba"),
            ("logistic regression", LogisticRegression(max_iter=2000), "proba")]


def data(rows: int, seed: int = 0) -> Any:
    import pandas as pd
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=max(rows, 2000), n_features=10, n_informative=6, random_state=seed)
    # float32-exact values: scikit-learn compares in float32, PMML in double; these agree.
    frame = pd.DataFrame(X.astype(np.float32).astype(np.float64), columns=[f"x{i}" for i in range(10)])
    return frame, y


def contenders(folder: Path, name: str, estimator: Any) -> tuple[dict[str, Any], str]:
    import modelpack

    frame, y = data(2000)
    estimator.fit(frame, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pmml = modelpack.export(estimator, folder / f"{name}.pmml.mpk", sample=frame[:200], format="pmml")
        modelpack.export(estimator, folder / f"{name}.onnx.mpk", sample=frame[:200])
    compiled = modelpack.load(folder / f"{name}.pmml.mpk")
    certified = pmml.compiled.fidelity.rows if pmml.compiled and pmml.compiled.fidelity else 0
    note = f"{compiled.engine}; {compiled.engine_reason.split('; tree engine: ')[-1]}; certified on {certified} rows"
    # The direct export is timed in onnx_contenders' process only.
    return {"compiled": compiled,
            "PMML evaluator": modelpack.load(folder / f"{name}.pmml.mpk", compile="never")}, note


def onnx_contenders(folder: Path, name: str) -> dict[int, dict[str, float]]:
    """The compiled package and the direct ONNX export timed in a fresh process (no JVM)."""
    out = subprocess.run([sys.executable, __file__, "--onnx-only", str(folder), name], check=True,
                         capture_output=True, text=True).stdout
    return {int(rows): times for rows, times in json.loads(out.splitlines()[-1]).items()}


def _time_onnx_only(folder: Path, name: str) -> None:
    import modelpack

    loaded = {"compiled": modelpack.load(folder / f"{name}.pmml.mpk"),
              "direct ONNX": modelpack.load(folder / f"{name}.onnx.mpk")}
    results = {}
    for rows, (rounds, number) in SIZES.items():
        frame = data(rows, seed=1)[0][:rows]
        funcs = {k: (lambda m=m, f=frame: m.predict_proba(f)) for k, m in loaded.items()}
        results[rows] = interleaved(funcs, rounds=rounds if number > 1 else 7, number=number)
    print(json.dumps(results))


def pypmml_model(folder: Path, name: str) -> Any:
    import zipfile

    from pypmml import Model

    path = folder / f"{name}.pmml"
    path.write_bytes(zipfile.ZipFile(folder / f"{name}.pmml.mpk").read("model.pmml"))
    return Model.fromFile(str(path))


def time_one(folder: Path, name: str, estimator: Any) -> tuple[dict[int, dict[str, float]], str]:
    loaded, note = contenders(folder, name, estimator)
    pypmml = pypmml_model(folder, name)
    results = onnx_contenders(folder, name)
    for rows, (rounds, number) in SIZES.items():
        frame, _ = data(rows, seed=1)
        frame = frame[:rows]
        record = frame.iloc[0].to_dict()
        funcs: dict[str, Callable[[], object]] = {
            "PMML evaluator": lambda f=frame, m=loaded["PMML evaluator"]: m.predict_proba(f),
            "pypmml": (lambda f=frame: pypmml.predict(f)) if rows > 1 else (lambda r=record: pypmml.predict(r))}
        # the evaluator and pypmml take seconds at 100k rows: one round each
        results[rows].update(timed(funcs, 1, 1) if rows == 100_000 else timed(funcs, rounds, number))
    np.testing.assert_allclose(loaded["compiled"].predict_proba(frame), loaded["PMML evaluator"].predict_proba(frame),
                               rtol=1e-6, atol=1e-9)
    for model in loaded.values():
        model.close()
    return results, note


def table(title: str, note: str, results: dict[int, dict[str, float]]) -> str:
    lines = [f"**{title}** ({note}; µs per row, median)", "",
             "| rows | compiled | direct ONNX | PMML evaluator | pypmml | compiled vs direct ONNX "
             "| vs evaluator | vs pypmml |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for rows, r in results.items():
        c = r["compiled"]
        cells = " | ".join(f"{r[k] / rows * 1e6:.3g}" for k in ("compiled", "direct ONNX", "PMML evaluator", "pypmml"))
        lines.append(f"| {rows:,} | {cells} | {r['direct ONNX'] / c:.2f}x | {r['PMML evaluator'] / c:.1f}x "
                     f"| {r['pypmml'] / c:.1f}x |")
    return "\n".join(lines)


def main() -> None:
    sections = []
    with tempfile.TemporaryDirectory() as tmp:
        for title, estimator, _ in models():
            name = title.split(",")[0].replace(" ", "_")
            results, note = time_one(Path(tmp), name, estimator)
            sections.append(table(f"scikit-learn {title}, 10 fields", note, results))
            print(sections[-1], flush=True)
    body = "\n\n".join(sections) + (
        "\n\nCommand: `.venv/bin/python benchmarks/bench_pmml_compiled.py`. Ratios are speed-ups of the "
        "compiled package (higher is faster): goals >= 0.8x the direct ONNX export and >= 50x pypmml at "
        "100k rows. Every contender returns the class probabilities; pypmml returns every output field. "
        "At 100k rows the evaluator and pypmml are timed once each (they take seconds). The compiled "
        "package and the direct export are timed in a process of their own, without a JVM. On a shared "
        "2-core machine: read the ratios, not the digits.")
    path = write_section("pmml_compiled", "PMML compiled to ONNX: compiled package vs evaluator, pypmml, "
                         "direct ONNX export", body,
                         ["onnxruntime", "pypmml", "JPype1", "numpy", "scikit-learn", "sklearn2pmml", "skl2onnx"])
    print(path.read_text())


if __name__ == "__main__":
    if sys.argv[1:2] == ["--onnx-only"]:
        _time_onnx_only(Path(sys.argv[2]), sys.argv[3])
    else:
        main()
