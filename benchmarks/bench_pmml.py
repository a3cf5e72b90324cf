"""PMML: modelpack's backend and Model against pypmml used directly, at 1, 100 and 100k rows.

pypmml is timed as its users call it: ``predict(dict)`` for one record (its result
turned into a Python dict), ``predict(DataFrame)`` for batches; once through its
in-process JPype gateway (the fastest) and once through its default py4j gateway,
in a separate process. modelpack is timed at the backend (``backend.run`` with
one array per field) and through ``Model.run`` / ``Model.predict`` on the same
record or DataFrame. Every call returns every output except ``Model.predict``.
Targets: at least pypmml's speed; Model.run within 10 % of backend.run.

Run: .venv/bin/python benchmarks/bench_pmml.py
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import interleaved, us, write_section  # noqa: E402

CORPORA = Path(__file__).resolve().parents[1] / "tests" / "data" / "corpora" / "pmml"
SIZES = {1: (15, 400), 100: (9, 40), 100_000: (4, 1)}  # rows: (rounds, calls per round)
PY4J_SIZES = (1, 100)  # its 100k-row path is the same JSON call as JPype's: skipped for time


def timed(funcs: dict[str, Callable[[], object]], rounds: int, number: int) -> dict[str, float]:
    """Median seconds per call; big batches get one warm-up call instead of interleaved()'s three."""
    if number > 1:
        return interleaved(funcs, rounds=rounds, number=number)
    samples: dict[str, list[float]] = {name: [] for name in funcs}
    for f in funcs.values():
        f()
    order = list(funcs.items())
    for round_ in range(rounds):
        for name, f in order[round_ % len(order):] + order[:round_ % len(order)]:
            collect_garbage()  # so no contender pays for the garbage of the one before it
            start = time.perf_counter()
            f()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(v) for name, v in samples.items()}


def collect_garbage() -> None:
    import gc

    import jpype

    gc.collect()
    if jpype.isJVMStarted():
        jpype.JClass("java.lang.System").gc()


def datasets(model_file: Path, rows: int) -> tuple[Any, dict[str, np.ndarray], dict[str, Any]]:
    """A DataFrame, the backend's feeds and one record with the model's fields, random but in range."""
    import pandas as pd

    import modelpack

    with modelpack.load(model_file) as model:
        names = [i.name for i in model.inputs]
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({n: rng.uniform(0.1, 7.0, rows) for n in names})
    return frame, {n: frame[n].to_numpy() for n in names}, frame.iloc[0].to_dict()


def pypmml_calls(model_file: Path, frame: Any, record: dict[str, Any]) -> Callable[[], object]:
    from pypmml import Model

    model = Model.fromFile(str(model_file))
    if len(frame) == 1:
        return lambda: dict(model.predict(record))
    return lambda: model.predict(frame)


def py4j_worker(model_file: str) -> None:
    """Runs in its own process: pypmml's default (py4j) gateway, timed the same way."""
    from pypmml import Model

    out = {}
    for rows in PY4J_SIZES:
        rounds, number = SIZES[rows]
        frame, _, record = datasets(Path(model_file), rows)
        out[rows] = timed({"py4j": pypmml_calls(Path(model_file), frame, record)},
                          rounds=max(3, rounds // 3), number=max(1, number // 4))["py4j"]
    Model.close()
    print(json.dumps(out))


def time_model(model_file: Path) -> dict[int, dict[str, float]]:
    import modelpack

    results = {}
    for rows, (rounds, number) in SIZES.items():
        frame, feeds, record = datasets(model_file, rows)
        with modelpack.load(model_file, compile="never") as model:  # the evaluator; bench_pmml_compiled.py
            data = record if rows == 1 else frame
            results[rows] = timed({
                "pypmml (JPype)": pypmml_calls(model_file, frame, record),
                "backend.run": lambda m=model, f=feeds: m.backend.run(f),
                "Model.run": lambda m=model, d=data: m.run(d),
                "Model.predict": lambda m=model, d=data: m.predict(d),
            }, rounds, number)
    done = subprocess.run([sys.executable, __file__, "--py4j", str(model_file)], capture_output=True,
                          text=True, timeout=600)
    if done.returncode == 0 and done.stdout.strip():
        for rows, seconds in json.loads(done.stdout.strip().splitlines()[-1]).items():
            results[int(rows)]["pypmml (py4j)"] = seconds
    return results


def forest_file(folder: Path) -> Path | None:
    """A 30-tree random forest exported by sklearn2pmml, if it and Java are here."""
    try:
        from sklearn.datasets import make_classification
        from sklearn.ensemble import RandomForestClassifier

        import modelpack
        X, y = make_classification(n_samples=2000, n_features=8, random_state=0)
        forest = RandomForestClassifier(n_estimators=30, max_depth=6, random_state=0).fit(X, y)
        modelpack.export(forest, folder / "forest.mpk", sample=X[:200], format="pmml")
    except (ImportError, modelpack.ModelpackError) as exc:
        print(f"forest skipped: {exc}", file=sys.stderr)
        return None
    with modelpack.load(folder / "forest.mpk") as model:
        path = folder / "forest.pmml"
        path.write_bytes(model._package.read_bytes(model.manifest.model.file))
    return path


def table(title: str, results: dict[int, dict[str, float]]) -> str:
    lines = [f"**{title}** (µs per row, median)", "",
             "| rows | pypmml (py4j) | pypmml (JPype) | backend.run | Model.run | Model.predict "
             "| pypmml (JPype) / backend | Model.run / backend |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for rows, r in results.items():
        per_row = {k: v / rows for k, v in r.items()}
        py4j = us(per_row["pypmml (py4j)"]) if "pypmml (py4j)" in per_row else "n/a"
        lines.append(f"| {rows:,} | {py4j} | {us(per_row['pypmml (JPype)'])} | {us(per_row['backend.run'])} "
                     f"| {us(per_row['Model.run'])} | {us(per_row['Model.predict'])} "
                     f"| {r['pypmml (JPype)'] / r['backend.run']:.2f}x | {r['Model.run'] / r['backend.run']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    iris = CORPORA / "pypmml-tests" / "single_iris_dectree.xml"
    if not iris.is_file():
        sys.exit(f"corpus not found at {iris.resolve()}")
    sections = [table("KNIME decision tree, 4 fields, 6 outputs (pypmml's test model)", time_model(iris))]
    with tempfile.TemporaryDirectory() as tmp:
        forest = forest_file(Path(tmp))
        if forest is not None:
            sections.append(table("scikit-learn random forest, 30 trees, 8 fields, via sklearn2pmml",
                                  time_model(forest)))
    body = "\n\n".join(sections) + (
        "\n\nCommand: `.venv/bin/python benchmarks/bench_pmml.py`. Targets: at least pypmml's speed "
        "(ratio >= 1.0) and Model.run within 1.10x of backend.run. Batches go to the JVM whole; "
        "1-row figures include one JVM round trip per call.")
    path = write_section("pmml", "PMML: modelpack vs pypmml", body,
                         ["pypmml", "JPype1", "py4j", "numpy", "pandas", "scikit-learn", "sklearn2pmml"])
    print(path.read_text())


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--py4j":
        py4j_worker(sys.argv[2])
    else:
        main()
