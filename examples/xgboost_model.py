"""XGBoost: a classifier exported, loaded (on the tree engine for batches), checked and verified.

``python examples/xgboost_model.py [OUTPUT_DIR]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xgboost as xgb
from sklearn.datasets import load_breast_cancer

import modelpack

REQUIRES = ("xgboost", "sklearn", "pandas", "modelpack_xgboost")
SLOW = "a fresh process pays the framework's import and the tree engine's compile; the guide page runs the same in the default tests"


def main(out_dir: Path) -> int:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X.columns = [c.replace(" ", "_") for c in X.columns]
    clf = xgb.XGBClassifier(n_estimators=30, max_depth=3).fit(X, y)
    path = out_dir / "cancer-xgb.mpk"
    manifest = modelpack.export(clf, path, sample=X[:100], name="cancer-xgb")
    print(f"exported  {path.name}: {manifest.fidelity!r}")
    with modelpack.load(path) as model:
        print(f"engine    {model.engine}: {model.engine_reason}")
        same = bool((model.predict(X) == clf.predict(X)).all())
        diff = float(np.abs(model.predict_proba(X) - clf.predict_proba(X)).max())
    report = modelpack.verify(path)
    print(f"predicted {len(X)} rows, labels equal: {same}, max probability diff {diff:.2g}; {report!r}")
    ok = same and diff < 1e-4 and report.ok
    print("OK: the package reproduces XGBoost." if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    from _example import run  # beside this file: the folder handling all examples share

    run(main)
