"""Load time of a tree package, one source tree against another, in fresh processes.

The load-time line of ``bench_trees.py`` alone, with contenders: each ``--src``
folder (a checkout's ``src/``, e.g. one exported with ``git archive`` before a
change) is put first on the import path of fresh processes that import modelpack,
load the package and predict 1,000 rows. Per round and contender: an empty compile
cache (cold), the cache that run filled (warm), and ``engine="onnxruntime"``;
the contenders alternate round by round, and the medians are printed.

    python benchmarks/bench_tree_load.py --src src --src /tmp/before/src --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_trees import _LOAD, N_FEATURES, data  # noqa: E402


def package(folder: Path) -> Path:
    """The XGBoost package of bench_trees.py (200 trees of depth 6)."""
    import xgboost

    import modelpack

    X, y = data(20_000)
    path = folder / "xgb.mpk"
    modelpack.export(xgboost.XGBRegressor(n_estimators=200, max_depth=6).fit(X, y), path, sample=X[:200].copy())
    return path


def once(src: str, path: Path, engine: str, cache: str) -> float:
    """Seconds from a fresh process's start of import to its first 1,000-row answer."""
    env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": os.pathsep.join(
        [str(Path(src).resolve()), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", _LOAD.format(features=N_FEATURES), str(path), engine], env=env,
                          check=True, capture_output=True, text=True)
    return float(done.stdout.split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", action="append", default=[], help="a src/ folder to load modelpack from")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sources = args.src or [str(Path(__file__).parents[1] / "src")]
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = package(Path(tmp))
        for _ in range(args.rounds):
            for src in sources:
                with tempfile.TemporaryDirectory() as cache:
                    for key, engine in (("cold", "auto"), ("warm", "auto"), ("onnxruntime", "onnxruntime")):
                        times.setdefault((src, key), []).append(once(src, path, engine, cache))
    for src in sources:
        row = ", ".join(f"{key} {statistics.median(times[(src, key)]):.2f} s"
                        for key in ("cold", "warm", "onnxruntime"))
        print(f"{src}: {row} (medians of {args.rounds}; load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
