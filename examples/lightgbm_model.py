"""LightGBM: a regressor exported with its feature names, loaded, checked and verified.

``python examples/lightgbm_model.py [OUTPUT_DIR]``.
"""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
from sklearn.datasets import load_diabetes

import modelpack

REQUIRES = ("lightgbm", "sklearn", "pandas", "modelpack_lightgbm")
SLOW = "a fresh process pays the framework's import and the tree engine's compile; the guide page runs the same in the default tests"


def main(out_dir: Path) -> int:
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    reg = lgb.LGBMRegressor(n_estimators=30, num_leaves=7, verbose=-1).fit(X, y)
    path = out_dir / "diabetes-lgb.mpk"
    manifest = modelpack.export(reg, path, sample=X[:100], name="diabetes-lgb")
    print(f"exported  {path.name}: {manifest.fidelity!r}")
    with modelpack.load(path) as model:
        print(f"inputs    {model.inputs!r}")
        diff = float(np.abs(model.predict(X) - reg.predict(X)).max())
    report = modelpack.verify(path)
    print(f"predicted {len(X)} rows, max diff {diff:.2g}; {report!r}")
    ok = diff < 1e-3 and report.ok
    print("OK: the package reproduces LightGBM." if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    from _example import run  # beside this file: the folder handling all examples share

    run(main)
