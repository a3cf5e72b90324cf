"""PyTorch: a small network trained on iris, exported with its classes, loaded without torch, verified.

``python examples/torch_model.py [OUTPUT_DIR]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_iris

import modelpack

REQUIRES = ("torch", "onnxscript", "sklearn", "modelpack_torch")
SLOW = "importing torch and exporting take several seconds"
CLASSES = ["setosa", "versicolor", "virginica"]


def main(out_dir: Path) -> int:
    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(100):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(torch.from_numpy(X)), torch.from_numpy(y)).backward()
        optimizer.step()
    path = out_dir / "iris-torch.mpk"
    manifest = modelpack.export(net, path, sample=torch.from_numpy(X[:50]), name="iris-torch",
                                options={"task": "classification", "logits": True, "classes": CLASSES})
    print(f"exported  {path.name} with {manifest.source.converter}: {manifest.fidelity!r}")
    with torch.no_grad():
        expected = np.array(CLASSES)[net(torch.from_numpy(X)).argmax(dim=1).numpy()]
    with modelpack.load(path) as model:
        same = bool((model.predict(X) == expected).all())
    report = modelpack.verify(path)
    print(f"predicted {len(X)} rows, labels equal: {same}; {report!r}")
    ok = same and report.ok
    print("OK: the package reproduces the network." if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    from _example import run  # beside this file: the folder handling all examples share

    run(main)
