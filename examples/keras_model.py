"""Keras: a small regressor exported through tf2onnx, loaded without TensorFlow, checked, verified.

``python examples/keras_model.py [OUTPUT_DIR]``.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from sklearn.datasets import load_diabetes

import modelpack

REQUIRES = ("keras", "tensorflow", "tf2onnx", "sklearn", "modelpack_keras")
SLOW = "importing TensorFlow and tracing take over ten seconds"


def main(out_dir: Path) -> int:
    X, y = load_diabetes(return_X_y=True)
    X, y = X.astype(np.float32), y.astype(np.float32)
    inputs = keras.Input((10,), name="features")
    net = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dense(16, activation="relu")(inputs)))
    net.compile(optimizer="adam", loss="mse")
    net.fit(X, y, epochs=3, verbose=0)
    path = out_dir / "diabetes-keras.mpk"
    manifest = modelpack.export(net, path, sample=X[:50], name="diabetes-keras", options={"task": "regression"})
    print(f"exported  {path.name}: {manifest.fidelity!r}")
    with modelpack.load(path) as model:
        diff = float(np.abs(model.predict(X) - net.predict(X, verbose=0).reshape(-1)).max())
    report = modelpack.verify(path)
    print(f"predicted {len(X)} rows, max diff {diff:.2g}; {report!r}")
    ok = diff < 1e-3 and report.ok
    print("OK: the package reproduces the Keras model." if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    from _example import run  # beside this file: the folder handling all examples share

    run(main)
