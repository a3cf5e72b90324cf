"""PyTorch and Keras: export time, and predict through modelpack vs the framework's own forward.

Two typical small networks per framework (a classifier MLP 64-256-256-10 ending in logits,
exported with a softmax, and a 16x16 CNN) are exported with ``modelpack.export`` and loaded
back. Class probabilities are timed at 1 row and at 10,000 rows, interleaved with the
framework's own forward pass (``torch.no_grad()`` + softmax; Keras ``predict_on_batch``
+ softmax) and with a bare ONNX Runtime session on the same file, in one process.
Run: .venv/bin/python benchmarks/bench_deep.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import interleaved, us, write_section  # noqa: E402

N_BIG, FEATURES, SAMPLE, SIDE = 10_000, 64, 200, 16
ROUND_SECONDS = 0.02  # each timed round lasts about this long
PACKAGES = ["modelpack", "modelpack-torch", "modelpack-keras", "torch", "onnxscript", "tensorflow-cpu",
            "keras", "tf2onnx", "onnxruntime", "numpy"]


# -- models: name -> (framework, model, sample, forward returning probabilities) ------------------
def torch_models() -> dict[str, tuple[Any, np.ndarray, Callable[[np.ndarray], Any]]]:
    import torch

    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(FEATURES, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                              torch.nn.ReLU(), torch.nn.Linear(256, 10)).eval()
    cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                              torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                              torch.nn.Flatten(), torch.nn.Linear(16 * (SIDE // 4) ** 2, 10)).eval()

    def forward(net: Any) -> Callable[[np.ndarray], Any]:
        def run(X: np.ndarray) -> Any:
            with torch.no_grad():
                return torch.softmax(net(torch.from_numpy(X)), dim=1).numpy()
        return run

    rng = np.random.default_rng(0)
    return {"PyTorch MLP 64-256-256-10": (mlp, rng.normal(size=(N_BIG, FEATURES)).astype(np.float32), forward(mlp)),
            f"PyTorch CNN {SIDE}x{SIDE} (2 conv)": (cnn, rng.normal(size=(N_BIG, 1, SIDE, SIDE)).astype(np.float32),
                                                    forward(cnn))}


def keras_models() -> dict[str, tuple[Any, np.ndarray, Callable[[np.ndarray], Any]]]:
    import keras

    keras.utils.set_random_seed(0)
    layers = keras.layers
    mlp = keras.Sequential([keras.Input((FEATURES,), name="features"), layers.Dense(256, activation="relu"),
                            layers.Dense(256, activation="relu"), layers.Dense(10)])
    cnn = keras.Sequential([keras.Input((SIDE, SIDE, 1), name="image"),
                            layers.Conv2D(8, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
                            layers.Conv2D(16, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
                            layers.Flatten(), layers.Dense(10)])

    def forward(net: Any) -> Callable[[np.ndarray], Any]:
        # predict_on_batch runs a compiled function: far cheaper per call than net(X) or net.predict(X).
        def run(X: np.ndarray) -> np.ndarray:
            scores = net.predict_on_batch(X)
            e = np.exp(scores - scores.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        return run

    rng = np.random.default_rng(0)
    return {"Keras MLP 64-256-256-10": (mlp, rng.normal(size=(N_BIG, FEATURES)).astype(np.float32), forward(mlp)),
            f"Keras CNN {SIDE}x{SIDE} (2 conv)": (cnn, rng.normal(size=(N_BIG, SIDE, SIDE, 1)).astype(np.float32),
                                                  forward(cnn))}


# -- measuring -----------------------------------------------------------------------------------------
def export_seconds(model: Any, sample: np.ndarray, folder: Path, repeats: int = 2) -> tuple[float, str]:
    import modelpack

    times, converter = [], ""
    for i in range(repeats):
        start = time.perf_counter()
        manifest = modelpack.export(model, folder / f"m{i}.mpk", sample=sample,
                                    options={"task": "classification", "logits": True})
        times.append(time.perf_counter() - start)
        converter = manifest.source.converter or ""
    return statistics.median(times), converter


def _timed(funcs: dict[str, Callable[[], Any]], *, rounds: int) -> dict[str, float]:
    start = time.perf_counter()
    for f in funcs.values():
        f()
    number = max(1, int(ROUND_SECONDS * len(funcs) / max(time.perf_counter() - start, 1e-6)))
    return interleaved(funcs, rounds=rounds, number=number)


def measure(name: str, model: Any, data: np.ndarray, forward: Callable[[np.ndarray], Any],
            folder: Path) -> dict[str, Any]:
    import onnxruntime as ort

    import modelpack

    export, converter = export_seconds(model, data[:SAMPLE], folder)
    row = data[:1]
    with modelpack.load(folder / "m0.mpk") as packaged:
        session = ort.InferenceSession(_model_bytes(folder / "m0.mpk"), providers=["CPUExecutionProvider"])
        feed = session.get_inputs()[0].name
        diff = float(np.abs(packaged.predict_proba(data) - forward(data)).max())
        results = {}
        for label, X, rounds in (("one", row, 15), ("big", data, 3)):
            results[label] = _timed({"modelpack": lambda X=X: packaged.predict_proba(X),
                                     "framework": lambda X=X: forward(X),
                                     "onnxruntime": lambda X=X: session.run(None, {feed: X})}, rounds=rounds)
    print(f"{name}: export {export:.2f} s ({converter}), 1 row {us(results['one']['modelpack'])} vs "
          f"{us(results['one']['framework'])} µs, 10k rows {results['big']['modelpack'] * 1e3:.1f} vs "
          f"{results['big']['framework'] * 1e3:.1f} ms, max diff {diff:.1e}", flush=True)
    return {"export": export, "converter": converter, "diff": diff, **results}


def _model_bytes(package: Path) -> bytes:
    import zipfile

    with zipfile.ZipFile(package) as archive:
        return archive.read("model.onnx")


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| model | export (s) | exporter | 1 row: modelpack (µs) | 1 row: framework (µs) | "
             "1 row: raw ORT (µs) | speed-up | 10k rows: modelpack (ms) | 10k rows: framework (ms) | "
             "10k rows: raw ORT (ms) | speed-up | max abs diff (10k rows) |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        one, big = r["one"], r["big"]
        lines.append(
            f"| {name} | {r['export']:.2f} | {r['converter']} | {us(one['modelpack'])} | {us(one['framework'])} | "
            f"{us(one['onnxruntime'])} | {one['framework'] / one['modelpack']:.1f}× | "
            f"{big['modelpack'] * 1e3:,.2f} | {big['framework'] * 1e3:,.2f} | {big['onnxruntime'] * 1e3:,.2f} | "
            f"{big['framework'] / big['modelpack']:.2f}× | {r['diff']:.1e} |")
    return "\n".join(lines)


def main() -> None:
    load_before = os.getloadavg()[0]
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, (model, data, forward)) in enumerate({**torch_models(), **keras_models()}.items()):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            results[name] = measure(name, model, data, forward, folder)
    body = (
        f"Untrained networks with random weights (timing does not depend on training). Export = "
        f"`modelpack.export(net, path, sample=X[:{SAMPLE}], options={{'task': 'classification', 'logits': "
        "True})` (conversion with a softmax added, a check run, fidelity measurement, writing the archive), "
        "median of 2 in one process (the first PyTorch export also pays for building the dynamo exporter's "
        "operator registry). Predict = class probabilities at 1 row and at 10,000 rows: modelpack "
        "`predict_proba` (ONNX Runtime, CPU) vs the framework's forward pass (PyTorch `no_grad` + softmax; "
        "Keras `predict_on_batch` + a numpy softmax: its compiled path, several times cheaper per call than "
        "`model(x)` or `model.predict`) "
        "vs a bare ONNX Runtime session on the same file, each with its default threads; medians of "
        "interleaved rounds. Speed-up > 1 means modelpack is faster than the framework.\n\n"
        f"{table(results)}\n\nSystem load average (1 min) {load_before:.1f} before and "
        f"{os.getloadavg()[0]:.1f} after the run.\n\nCommand: `.venv/bin/python benchmarks/bench_deep.py`")
    path = write_section("deep", "PyTorch and Keras: export time and predict speed", body, PACKAGES)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
