"""Packages built from tiny ONNX graphs, and real uvicorn servers on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="modelpack[serve] is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="modelpack[serve] is not installed")
onnx = pytest.importorskip("onnx")

import modelpack  # noqa: E402
from modelpack.serve import create_app  # noqa: E402

CORPORA = Path(__file__).resolve().parents[1] / "data" / "corpora"
V2_CORPUS = CORPORA / "v2-protocol"
IRIS_WEIGHTS = np.array([[0.5, -1, 0], [1, 0, 2], [0, 0.25, -1], [3, 1, 0]], dtype=np.float32)


def _save(model: Any, folder: Path, name: str, **pack_args: Any) -> Path:
    model.ir_version = 9  # readable by every onnxruntime the extras allow
    onnx.checker.check_model(model)
    src = folder / f"{name}.onnx"
    src.write_bytes(model.SerializeToString())
    dest = folder / f"{name}.mpk"
    modelpack.pack(src, dest, name=name, **pack_args)
    return dest


def make_arith(folder: Path) -> Path:
    """a FP32 [N, 3], b INT64 [N] -> total FP32 [N], doubled INT64 [N], positive BOOL [N]."""
    from onnx import TensorProto as T
    from onnx import helper as h

    nodes = [
        h.make_node("ReduceSum", ["a", "axes"], ["rowsum"], keepdims=0),
        h.make_node("Cast", ["b"], ["bf"], to=T.FLOAT),
        h.make_node("Add", ["rowsum", "bf"], ["total"]),
        h.make_node("Add", ["b", "b"], ["doubled"]),
        h.make_node("Greater", ["total", "zero"], ["positive"]),
    ]
    inits = [h.make_tensor("axes", T.INT64, [1], [1]), h.make_tensor("zero", T.FLOAT, [], [0.0])]
    graph = h.make_graph(
        nodes, "arith",
        [h.make_tensor_value_info("a", T.FLOAT, ["N", 3]), h.make_tensor_value_info("b", T.INT64, ["N"])],
        [h.make_tensor_value_info("total", T.FLOAT, ["N"]), h.make_tensor_value_info("doubled", T.INT64, ["N"]),
         h.make_tensor_value_info("positive", T.BOOL, ["N"])],
        initializer=inits)
    return _save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), folder, "arith",
                 version="1.2.0", task="transform")


def make_text(folder: Path) -> Path:
    """s STRING [N] -> echo STRING [N], code INT64 [N] (cat=1, dog=2, else -1)."""
    from onnx import TensorProto as T
    from onnx import helper as h

    nodes = [h.make_node("Identity", ["s"], ["echo"]),
             h.make_node("LabelEncoder", ["s"], ["code"], domain="ai.onnx.ml", keys_strings=["cat", "dog"],
                         values_int64s=[1, 2], default_int64=-1)]
    graph = h.make_graph(nodes, "text", [h.make_tensor_value_info("s", T.STRING, ["N"])],
                         [h.make_tensor_value_info("echo", T.STRING, ["N"]),
                          h.make_tensor_value_info("code", T.INT64, ["N"])])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("ai.onnx.ml", 2)])
    return _save(model, folder, "text", task="transform")


def make_fixed(folder: Path) -> Path:
    """x FP32 [1, 2] -> y FP32 [1, 2]: a fixed batch of one, so never merged."""
    from onnx import TensorProto as T
    from onnx import helper as h

    graph = h.make_graph([h.make_node("Neg", ["x"], ["y"])], "fixed",
                         [h.make_tensor_value_info("x", T.FLOAT, [1, 2])],
                         [h.make_tensor_value_info("y", T.FLOAT, [1, 2])])
    return _save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), folder, "fixed", task="transform")


def make_fragile(folder: Path) -> Path:
    """x INT64 [N] reshapes six ones to shape x: fails in the runtime unless prod(x) == 6."""
    from onnx import TensorProto as T
    from onnx import helper as h

    nodes = [h.make_node("Constant", [], ["c"], value=h.make_tensor("v", T.FLOAT, [6], [1.0] * 6)),
             h.make_node("Reshape", ["c", "x"], ["y"])]
    graph = h.make_graph(nodes, "fragile", [h.make_tensor_value_info("x", T.INT64, ["N"])],
                         [h.make_tensor_value_info("y", T.FLOAT, ["M", "K"])])
    return _save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), folder, "fragile", task="other")


def make_churn(folder: Path) -> Path:
    """A scikit-learn pipeline on a DataFrame: one input per column (plan is a string),
    string class labels, ZipMap probabilities."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("skl2onnx")
    from skl2onnx import to_onnx
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"age": rng.uniform(18, 80, 200).astype(np.float32),
                       "spend": rng.uniform(0, 100, 200).astype(np.float32),
                       "plan": rng.choice(["basic", "pro", "team"], 200)})
    y = np.where(df["spend"] + (df["plan"] == "pro") * 30 > 60, "yes", "no")
    pipe = make_pipeline(
        ColumnTransformer([("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"])], remainder="passthrough"),
        LogisticRegression(max_iter=500)).fit(df, y)
    sample = df.head(1).astype({"plan": object})
    onx = to_onnx(pipe, sample, target_opset={"": 17, "ai.onnx.ml": 3})
    src = folder / "churn.onnx"
    src.write_bytes(onx.SerializeToString())
    dest = folder / "churn.mpk"
    modelpack.pack(src, dest, name="churn", version="2.0.0")
    return dest


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("serve-packages")
    return {"arith": make_arith(folder), "text": make_text(folder), "fixed": make_fixed(folder),
            "fragile": make_fragile(folder)}


@pytest.fixture(scope="session")
def churn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_churn(tmp_path_factory.mktemp("serve-churn"))


@contextmanager
def running(app: Any) -> Iterator[str]:
    """Run ``app`` on uvicorn in a thread on 127.0.0.1 (a free port); yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


@pytest.fixture(scope="session")
def server(packages: dict[str, Path], churn: Path) -> Iterator[str]:
    """One server for the session: every test package, no micro-batching, a 1 MiB body limit."""
    app = create_app([*packages.values(), churn], max_body_bytes=1 << 20)
    with running(app) as url:
        yield url


def make_iris(folder: Path) -> Path:
    """The model the recorded client requests were made for: X FP32 [N, 4] -> Y = X @ W FP32 [N, 3]."""
    from onnx import TensorProto as T
    from onnx import helper as h

    graph = h.make_graph([h.make_node("MatMul", ["X", "W"], ["Y"])], "iris",
                         [h.make_tensor_value_info("X", T.FLOAT, ["N", 4])],
                         [h.make_tensor_value_info("Y", T.FLOAT, ["N", 3])],
                         initializer=[h.make_tensor("W", T.FLOAT, [4, 3], IRIS_WEIGHTS.reshape(-1).tolist())])
    return _save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), folder, "iris", task="transform")


def make_sum_model(folder: Path) -> Path:
    """The MLServer examples' model: input-0 INT32 [N, 3] -> output-0 FP32 [N], the row sums."""
    from onnx import TensorProto as T
    from onnx import helper as h

    nodes = [h.make_node("Cast", ["input-0"], ["f"], to=T.FLOAT),
             h.make_node("ReduceSum", ["f", "axes"], ["output-0"], keepdims=0)]
    graph = h.make_graph(nodes, "sum", [h.make_tensor_value_info("input-0", T.INT32, ["N", 3])],
                         [h.make_tensor_value_info("output-0", T.FLOAT, ["N"])],
                         initializer=[h.make_tensor("axes", T.INT64, [1], [1])])
    return _save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), folder, "sum-model",
                 version="1.2.3", task="transform")


def make_slow(folder: Path, *, name: str = "slow", layers: int = 24, version: str = "1.0.0") -> Path:
    """X FP32 [N, 256] through ``layers`` 256x256 matrix products: a run long enough to be in flight."""
    from onnx import TensorProto as T
    from onnx import helper as h

    w = (np.eye(256, dtype=np.float32)).reshape(-1).tolist()  # identity: the answer is X itself
    nodes = [h.make_node("MatMul", [f"h{k}", "W"], [f"h{k + 1}"]) for k in range(layers)]
    nodes[0].input[0] = "X"
    nodes[-1].output[0] = "Y"
    graph = h.make_graph(nodes, name, [h.make_tensor_value_info("X", T.FLOAT, ["N", 256])],
                         [h.make_tensor_value_info("Y", T.FLOAT, ["N", 256])],
                         initializer=[h.make_tensor("W", T.FLOAT, [256, 256], w)])
    return _save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), folder, name, version=version,
                 task="transform")


def make_scaled(folder: Path, *, factor: float, version: str, name: str = "scaled", dest: Path | None = None) -> Path:
    """x FP32 [N] -> y = factor * x; the version says which factor (for reload and version tests)."""
    from onnx import TensorProto as T
    from onnx import helper as h

    graph = h.make_graph([h.make_node("Mul", ["x", "k"], ["y"])], name,
                         [h.make_tensor_value_info("x", T.FLOAT, ["N"])],
                         [h.make_tensor_value_info("y", T.FLOAT, ["N"])],
                         initializer=[h.make_tensor("k", T.FLOAT, [], [factor])])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 9
    src = folder / f"{name}-{version}.onnx"
    src.write_bytes(model.SerializeToString())
    dest = dest or folder / f"{name}-{version}.mpk"
    modelpack.pack(src, dest, name=name, version=version, task="transform")
    return dest
