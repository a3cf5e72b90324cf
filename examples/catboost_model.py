"""CatBoost: a multiclass classifier exported without ZipMap, loaded, checked and verified.

``python examples/catboost_model.py [OUTPUT_DIR]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from catboost import CatBoostClassifier
from sklearn.datasets import load_iris

import modelpack

REQUIRES = ("catboost", "sklearn", "modelpack_catboost")
SLOW = "a fresh process pays the framework's import and the tree engine's compile; the guide page runs the same in the default tests"


def main(out_dir: Path) -> int:
    X, y = load_iris(return_X_y=True)
    clf = CatBoostClassifier(iterations=30, depth=3, verbose=False, allow_writing_files=False).fit(X, y)
    path = out_dir / "iris-catboost.mpk"
    manifest = modelpack.export(clf, path, sample=X[:60], name="iris-catboost", options={"zipmap": False})
    print(f"exported  {path.name}: {manifest.fidelity!r}")
    with modelpack.load(path) as model:
        print(f"outputs   {model.outputs!r}")
        diff = float(np.abs(model.predict_proba(X) - clf.predict_proba(X)).max())
        same = bool((model.predict(X) == clf.predict(X).reshape(-1)).all())
    report = modelpack.verify(path)
    print(f"predicted {len(X)} rows, labels equal: {same}, max probability diff {diff:.2g}; {report!r}")
    ok = same and diff < 1e-4 and report.ok
    print("OK: the package reproduces CatBoost." if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    from _example import run  # beside this file: the folder handling all examples share

    run(main)
