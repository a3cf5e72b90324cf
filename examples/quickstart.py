"""Quick start: train, export, load, predict, verify.

Trains a scikit-learn pipeline on the breast-cancer data set that ships with
scikit-learn, exports it to a modelpack package with a fidelity certificate,
loads the package back (ONNX Runtime only: no scikit-learn needed to predict),
checks it gives scikit-learn's own answers, and verifies it.

Run it with ``make demo`` (which keeps the package in ``build/demo``), or
``python examples/quickstart.py [OUTPUT_DIR]`` (a temporary folder without one).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import modelpack


def main(out_dir: Path) -> int:
    data = load_breast_cancer(as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(
        data.data, data.target.map(dict(enumerate(data.target_names))), test_size=0.25, random_state=0)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X_train, y_train)
    print(f"trained   {type(clf[-1]).__name__} pipeline on {len(X_train)} rows, "
          f"{X_train.shape[1]} features; test accuracy {clf.score(X_test, y_test):.3f}")

    path = out_dir / "breast-cancer.mpk"
    start = time.perf_counter()
    manifest = modelpack.export(clf, path, sample=X_train[:200], name="breast-cancer", version="1.0.0",
                                description="Malignant or benign, from 30 cell-nucleus measurements.",
                                metadata={"test_accuracy": round(clf.score(X_test, y_test), 4)})
    fid = manifest.fidelity
    worst = max(o.max_abs_diff for o in fid.outputs)
    print(f"exported  {path.name} ({path.stat().st_size:,} bytes) in {time.perf_counter() - start:.2f} s; "
          f"fidelity {'passed' if fid.passed else 'FAILED'} on {fid.rows} rows, max abs diff {worst:.2g}")

    with modelpack.load(path) as model:
        labels = model.predict(X_test)          # the same DataFrame scikit-learn took
        proba = model.predict_proba(X_test)
        one = model.predict(X_test.iloc[0].to_dict())   # a single record
        print(f"loaded    {model!r}")
        same = (labels == clf.predict(X_test)).mean()
        diff = np.abs(proba - clf.predict_proba(X_test)).max()
        print(f"predicted {len(labels)} rows: {same:.1%} of labels identical to scikit-learn, "
              f"max probability diff {diff:.2g}; first row -> {one[0]}")

    report = modelpack.verify(path)
    print(f"verified  {report}")
    print(f"kept      {path}: look inside with `modelpack inspect {path}`, "
          f"score a file with `modelpack predict {path} --input rows.csv --output out.csv`")
    ok = report.ok and same == 1.0 and diff < 1e-4
    print("OK: the package reproduces the model." if ok else "MISMATCH: see above.")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 1:
        Path(sys.argv[1]).mkdir(parents=True, exist_ok=True)
        sys.exit(main(Path(sys.argv[1])))
    with tempfile.TemporaryDirectory() as tmp:
        sys.exit(main(Path(tmp)))
