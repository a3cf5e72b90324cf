"""scikit-learn: a ColumnTransformer pipeline over a DataFrame with a string column.

Exports it with its model card, loads it back, checks the labels against
scikit-learn's and that a missing column is refused by name, and verifies it.
``python examples/sklearn_dataframe.py [OUTPUT_DIR]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import modelpack

REQUIRES = ("sklearn", "pandas", "modelpack_sklearn")
SLOW = "the scikit-learn guide and notebook run the same pipeline in the default tests"
NUMERIC = ["alcohol", "malic_acid", "color_intensity", "proline"]


def main(out_dir: Path) -> int:
    wine = load_wine(as_frame=True)
    df = wine.data[NUMERIC].copy()
    df["hue_band"] = np.where(wine.data["hue"] > 1.0, "light", "dark")
    y = wine.target.map(dict(enumerate(wine.target_names)))
    pipe = Pipeline([("prep", ColumnTransformer([("num", StandardScaler(), NUMERIC),
                                                 ("cat", OneHotEncoder(), ["hue_band"])])),
                     ("clf", LogisticRegression(max_iter=1000))]).fit(df, y)

    path = out_dir / "wine.mpk"
    manifest = modelpack.export(pipe, path, sample=df[:80], name="wine", version="1.0.0", card=True)
    print(f"exported  {path.name}: {manifest.fidelity!r}; card files {list(manifest.extra)}")
    with modelpack.load(path) as model:
        print(f"inputs    {model.inputs!r}")
        same = bool((model.predict(df) == pipe.predict(df)).all())
        try:
            model.predict(df.drop(columns=["proline"]))
            refused = False
        except modelpack.MissingColumnError:
            refused = True
    report = modelpack.verify(path)
    print(f"verified  {report!r}")
    ok = same and refused and report.ok
    print("OK: labels equal scikit-learn's, a missing column is refused." if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    from _example import run  # beside this file: the folder handling all examples share

    run(main)
