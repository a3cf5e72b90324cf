"""Load test of `modelpack serve` (REST and gRPC) against the library in-process and Seldon MLServer.

Two scikit-learn MLPs (64 features -> two hidden layers -> 10 classes) and the XGBoost
regressor of bench_trees.py (200 trees of depth 6, 20 features) are trained here. The
library and `modelpack serve` use them exported to ONNX (the XGBoost package runs on the tree
engine); MLServer serves the original models with its scikit-learn and XGBoost runtimes, in
its own virtual environment (`.venv-mlserver`, made by `make mlserver-env`: MLServer pins
FastAPI and protobuf versions of its own). Every server runs in its own process on
127.0.0.1, with and without micro-batching (modelpack: `--max-batch-size 64
--max-latency-ms 2`; MLServer: its adaptive batching with the same size and time). One
client serves all: threads, each with its own keep-alive HTTP connection (httpx) or gRPC
channel (the protocol's stubs, raw tensor contents), sending requests as fast as the answers
come, at 1, 8 and 32 concurrent clients: one row each for the MLPs' class probabilities, and
one row or 1,000 rows each for XGBoost's values. Every answer is checked (modelpack against
the library, MLServer against the framework). The cases alternate in rounds, so drift in the
machine's load hits all alike.

    .venv/bin/python benchmarks/bench_serve.py [--seconds 2] [--rounds 2] [--clients 1 8 32]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_section  # noqa: E402
from bench_trees import N_FEATURES as TREE_FEATURES  # noqa: E402
from bench_trees import data as tree_data  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MLSERVER = ROOT / ".venv-mlserver" / "bin" / "mlserver"
LAUNCH = ("import argparse, sys; from modelpack._cli.serve import add_parser; "
          "p = argparse.ArgumentParser(prog='modelpack'); add_parser(p.add_subparsers()); "
          "a = p.parse_args(sys.argv[1:]); sys.exit(a.handler(a))")
FEATURES = 64
MODELS = {"mlp-small": (256, 256), "mlp-large": (4096, 4096)}
TREES = "xgboost"
BATCH_SIZE, BATCH_MS = 64, 2.0
Call = Callable[[Any, int], None]


@dataclass
class Workload:
    """What one row of the table sends: ``requests[i]`` is request i's input ``X``."""

    label: str  # the table's model column
    model: str  # the served model's name
    requests: np.ndarray  # [requests, rows, features] float32
    ours: str  # the output read from modelpack
    theirs: str  # the output read from MLServer


def train(name: str, hidden: tuple[int, int]) -> Any:
    from sklearn.datasets import make_classification
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    X, y = make_classification(500, FEATURES, n_informative=32, n_classes=10, random_state=0)
    with warnings.catch_warnings():  # a few epochs are enough: only the speed is measured
        warnings.simplefilter("ignore", ConvergenceWarning)
        return MLPClassifier(hidden, max_iter=3, random_state=0).fit(X.astype(np.float32), y)


def train_trees() -> Any:
    import xgboost

    X, y = tree_data(20_000)
    return xgboost.XGBRegressor(n_estimators=200, max_depth=6).fit(X, y)


def package(model: Any, folder: Path, name: str) -> Path:
    import modelpack

    if name == TREES:
        modelpack.export(model, folder / f"{name}.mpk", sample=tree_data(100, seed=2)[0], name=name)
        return folder / f"{name}.mpk"
    from skl2onnx import to_onnx

    onx = to_onnx(model, np.zeros((1, FEATURES), np.float32), options={"zipmap": False})
    (folder / f"{name}.onnx").write_bytes(onx.SerializeToString())
    modelpack.pack(folder / f"{name}.onnx", folder / f"{name}.mpk", name=name)
    return folder / f"{name}.mpk"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(proc: subprocess.Popen[bytes], url: str) -> None:
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("the server did not start")


def start_modelpack(packages: list[Path], batching: bool) -> tuple[subprocess.Popen[bytes], str, str]:
    port, grpc_port = free_port(), free_port()
    extra = ["--max-batch-size", str(BATCH_SIZE), "--max-latency-ms", str(BATCH_MS)] if batching else []
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH, "serve", *map(str, packages), "--port", str(port),
                             "--grpc-port", str(grpc_port), "--log-level", "warning", *extra])
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, url)
    return proc, url, f"127.0.0.1:{grpc_port}"


def start_mlserver(originals: dict[str, Any], folder: Path, batching: bool
                   ) -> tuple[subprocess.Popen[bytes], str, str]:
    """MLServer over the original models: its scikit-learn runtime on joblib files, its XGBoost
    runtime on XGBoost's JSON model file (the files each reads)."""
    import joblib

    port, grpc_port = free_port(), free_port()
    root = folder / ("mlserver-batching" if batching else "mlserver")
    for name, model in originals.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        if name == TREES:
            model.save_model(root / name / "model.json")
            runtime, uri = "mlserver_xgboost.XGBoostModel", "./model.json"
        else:
            joblib.dump(model, root / name / "model.joblib")
            runtime, uri = "mlserver_sklearn.SKLearnModel", "./model.joblib"
        settings: dict[str, Any] = {"name": name, "implementation": runtime,
                                    "parameters": {"uri": uri, "version": "1"}}
        if batching:
            settings.update(max_batch_size=BATCH_SIZE, max_batch_time=BATCH_MS / 1000)
        (root / name / "model-settings.json").write_text(json.dumps(settings))
    (root / "settings.json").write_text(json.dumps({
        "http_port": port, "grpc_port": grpc_port, "metrics_port": free_port(), "host": "127.0.0.1",
        # Inference in the server process: 1.7.1's worker pool dies at start with uvloop >= 0.22
        # (asyncio.get_event_loop in a fresh process), and on 2 CPUs it would only add a hop.
        "parallel_workers": 0}))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.Popen([str(MLSERVER), "start", str(root)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, url)
    return proc, url, f"127.0.0.1:{grpc_port}"


# -- the one client ---------------------------------------------------------------------------
def rest_call(url: str, model: str, output: str, rows: np.ndarray, expected: np.ndarray, binary: bool) -> Call:
    bodies = []
    for r in rows:
        tensor: dict[str, Any] = {"name": "X", "shape": list(r.shape), "datatype": "FP32"}
        if binary:
            tensor["parameters"] = {"binary_data_size": r.nbytes}
            header = json.dumps({"inputs": [tensor], "outputs": [{"name": output, "parameters": {
                "binary_data": True}}]}).encode()
            bodies.append((header + r.tobytes(), {"Inference-Header-Content-Length": str(len(header))}))
        else:
            tensor["data"] = r.tolist()
            bodies.append((json.dumps({"inputs": [tensor], "outputs": [{"name": output}]}).encode(),
                           {"Content-Type": "application/json"}))

    def call(client: Any, i: int) -> None:
        body, headers = bodies[i % len(rows)]
        r = client.post(f"{url}/v2/models/{model}/infer", content=body, headers=headers)
        r.raise_for_status()
        if binary:
            n = int(r.headers["inference-header-content-length"])
            got = np.frombuffer(r.content[n:], dtype="<f4")
        else:
            got = np.asarray(r.json()["outputs"][0]["data"], dtype=np.float32)
        if not np.allclose(got, expected[i % len(rows)], atol=1e-4):
            raise AssertionError("wrong answer")

    return call


def grpc_call(model: str, output: str, rows: np.ndarray, expected: np.ndarray) -> Call:
    from tritonclient.grpc import service_pb2 as pb

    requests = []
    for r in rows:
        request = pb.ModelInferRequest(model_name=model)
        request.inputs.add(name="X", datatype="FP32", shape=list(r.shape))
        request.outputs.add(name=output)
        request.raw_input_contents.append(r.tobytes())
        requests.append(request)

    def call(stub: Any, i: int) -> None:
        response = stub.ModelInfer(requests[i % len(rows)])
        out = response.outputs[0]
        if response.raw_output_contents:
            dtype = "<f8" if out.datatype == "FP64" else "<f4"
            got = np.frombuffer(response.raw_output_contents[0], dtype=dtype)
        else:
            got = np.asarray(out.contents.fp64_contents or out.contents.fp32_contents)
        if not np.allclose(got, expected[i % len(rows)], atol=1e-4):
            raise AssertionError("wrong answer")

    return call


def grpc_session(target: str) -> Callable[[], Any]:
    def make() -> Any:
        import grpc
        from tritonclient.grpc import service_pb2_grpc

        channel = grpc.insecure_channel(target)
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        stub.close = channel.close
        return stub

    return make


def http_session() -> Any:
    import httpx

    return httpx.Client(timeout=60)


def library_call(model: Any, output: str, rows: np.ndarray, expected: np.ndarray) -> Call:
    def call(_: Any, i: int) -> None:
        out = model.run(rows[i % len(rows)])[output]
        if not np.allclose(out.reshape(-1), expected[i % len(rows)], atol=1e-5):
            raise AssertionError("wrong answer")

    return call


def drive(call: Call, make_session: Callable[[], Any], *, clients: int, seconds: float) -> tuple[list[float], int, float]:
    """Run ``call(session, i)`` from ``clients`` threads for ``seconds``: latencies, errors, elapsed."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop = [0.0]
    # The clock starts once every client has its connection: the barrier's action sets the end.
    start_line = threading.Barrier(clients + 1, action=lambda: stop.__setitem__(0, time.perf_counter() + seconds))

    def worker(k: int) -> None:
        session = make_session()
        start_line.wait()
        i = k
        try:
            while time.perf_counter() < stop[0]:
                began = time.perf_counter()
                try:
                    call(session, i)
                except Exception:  # noqa: BLE001 (counted and reported)
                    errors[k] += 1
                latencies[k].append(time.perf_counter() - began)
                i += clients
        finally:
            if hasattr(session, "close"):
                session.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    start_line.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    return [v for per in latencies for v in per], sum(errors), time.perf_counter() - began


def summary(runs: list[tuple[list[float], int, float]]) -> dict[str, float]:
    """Requests, errors, the median over rounds of requests/s, and p50/p99 latency over all rounds."""
    flat = sorted(v for lat, _, _ in runs for v in lat) or [float("nan")]
    rps = statistics.median(len(lat) / t for lat, _, t in runs)
    return {"n": len(flat), "errors": sum(e for _, e, _ in runs), "rps": rps,
            "p50": statistics.median(flat) * 1e3, "p99": flat[min(len(flat) - 1, int(len(flat) * 0.99))] * 1e3}


def workloads() -> list[Workload]:
    rng = np.random.default_rng(1)
    mlp_rows = rng.normal(size=(256, 1, FEATURES)).astype(np.float32)
    one_row = tree_data(256, seed=3)[0].reshape(256, 1, TREE_FEATURES)
    many = tree_data(8 * 1000, seed=4)[0].reshape(8, 1000, TREE_FEATURES)
    return [*(Workload(name, name, mlp_rows, "probabilities", "predict_proba") for name in MODELS),
            Workload(f"{TREES}, 1 row", TREES, one_row, "value", "predict"),
            Workload(f"{TREES}, 1,000 rows", TREES, many, "value", "predict")]


def build_cases(args: argparse.Namespace, folder: Path, servers: list[subprocess.Popen[bytes]]
                ) -> tuple[dict[tuple[str, str], tuple[Call, Callable[[], Any]]], list[Any]]:
    """Every contender for every workload: (workload, case) -> (call, session maker)."""
    import modelpack
    from modelpack.serve._app import SERVING_SESSION_OPTIONS

    originals = {**{name: train(name, hidden) for name, hidden in MODELS.items()}, TREES: train_trees()}
    packages = {name: package(model, folder, name) for name, model in originals.items()}
    # The library with the session settings the server gives its models (no spin-waiting threads),
    # so both run the same ONNX Runtime configuration.
    models = {name: modelpack.load(path, session_options=SERVING_SESSION_OPTIONS) for name, path in packages.items()}
    loads = workloads()
    cases: dict[tuple[str, str], tuple[Call, Callable[[], Any]]] = {}
    expected: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for w in loads:
        model, original = models[w.model], originals[w.model]
        ours = np.stack([model.run(r)[w.ours].reshape(-1) for r in w.requests])
        theirs = np.stack([np.asarray(getattr(original, w.theirs)(r)).reshape(-1) for r in w.requests])
        expected[w.label] = ours, theirs
        cases[w.label, "library (Model.run, in-process)"] = (library_call(model, w.ours, w.requests, ours),
                                                             lambda: None)
    for batching in (False, True):
        label = ", batching" if batching else ""
        proc, url, target = start_modelpack(list(packages.values()), batching)
        servers.append(proc)
        for w in loads:
            ours = expected[w.label][0]
            cases[w.label, f"modelpack REST JSON{label}"] = (
                rest_call(url, w.model, w.ours, w.requests, ours, False), http_session)
            cases[w.label, f"modelpack REST binary{label}"] = (
                rest_call(url, w.model, w.ours, w.requests, ours, True), http_session)
            cases[w.label, f"modelpack gRPC{label}"] = (
                grpc_call(w.model, w.ours, w.requests, ours), grpc_session(target))
        if args.no_mlserver or not MLSERVER.exists():
            continue
        proc, url, target = start_mlserver(originals, folder, batching)
        servers.append(proc)
        for w in loads:
            theirs = expected[w.label][1]
            cases[w.label, f"MLServer REST JSON{label}"] = (
                rest_call(url, w.model, w.theirs, w.requests, theirs, False), http_session)
            cases[w.label, f"MLServer gRPC{label}"] = (
                grpc_call(w.model, w.theirs, w.requests, theirs), grpc_session(target))
    return cases, list(models.values())


def metrics_cost() -> float:
    """Microseconds the server's metrics add to one batched request: a count, a latency, a batch."""
    import timeit

    from modelpack.serve._metrics import Metrics

    metrics = Metrics()
    batch = metrics.batches("mlp-large")

    def one() -> None:
        metrics.observe("grpc", "mlp-large", 200, 0.004)
        batch(1, 1)

    return min(timeit.repeat(one, number=20000, repeat=5)) / 20000 * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per case, over all rounds")
    parser.add_argument("--rounds", type=int, default=3, help="cases alternate this many times")
    parser.add_argument("--no-mlserver", action="store_true", help="leave MLServer out")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    servers: list[subprocess.Popen[bytes]] = []
    try:
        cases, models = build_cases(args, folder, servers)
        for call, session in cases.values():  # warm-up: first runs, connections, batchers
            drive(call, session, clients=4, seconds=0.3)
        samples: dict[tuple[str, int, str], list[tuple[list[float], int, float]]] = {}
        for _ in range(args.rounds):
            for clients in args.clients:
                for (model, case), (call, session) in cases.items():
                    samples.setdefault((model, clients, case), []).append(
                        drive(call, session, clients=clients, seconds=args.seconds / args.rounds))
        for m in models:
            m.close()
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait(timeout=60)
        shutil.rmtree(folder, ignore_errors=True)  # packages and MLServer's copies: hundreds of MB a run
    order = [w.label for w in workloads()]
    results = {key: summary(runs) for key, runs in
               sorted(samples.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1]))}
    for key, r in results.items():
        print(*key, {k: round(v, 2) for k, v in r.items()}, flush=True)
    write_results(results, args, mlserver=any("MLServer" in case for _, case in cases), metrics_us=metrics_cost())
    return 0


def against_mlserver(results: dict[tuple[str, int, str], dict[str, float]]) -> str:
    """modelpack against MLServer, protocol for protocol, batched or not: the pairs won and those lost."""
    won, lost = 0, []
    for (label, clients, case), r in results.items():
        if not case.startswith("MLServer"):
            continue
        ours = results[label, clients, case.replace("MLServer", "modelpack")]["rps"]
        if ours > r["rps"]:
            won += 1
        else:
            lost.append(f"{label}, {clients} client{'s' * (clients > 1)}, {case.removeprefix('MLServer ')}: "
                        f"{ours:,.0f} against {r['rps']:,.0f} requests/s")
    return (f"Against MLServer (REST JSON against REST JSON, gRPC against gRPC, batched or not): modelpack "
            f"answered more requests per second in {won} of {won + len(lost)} pairs"
            + (f"; lost: {'; '.join(lost)}." if lost else "."))


def write_results(results: dict[tuple[str, int, str], dict[str, float]], args: argparse.Namespace, *,
                  mlserver: bool, metrics_us: float) -> None:
    lines = ["| model | clients | case | requests | errors | requests/s | p50 ms | p99 ms | vs library |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for (model, clients, case), r in results.items():
        base = results[model, clients, "library (Model.run, in-process)"]["rps"]
        lines.append(f"| {model} | {clients} | {case} | {r['n']:.0f} | {r['errors']:.0f} | {r['rps']:,.0f} | "
                     f"{r['p50']:.2f} | {r['p99']:.2f} | {r['rps'] / base:.2f}x |")
    sizes = "; ".join(f"{n}: {FEATURES} -> {h[0]} -> {h[1]} -> 10" for n, h in MODELS.items())
    top = max(args.clients)
    goal = {case: results["mlp-large", top, case]["rps"] / results["mlp-large", top, "library (Model.run, in-process)"]["rps"]
            for case in ("modelpack REST JSON, batching", "modelpack REST binary, batching", "modelpack gRPC, batching")
            if ("mlp-large", top, case) in results}
    body = (f"`{' '.join(['.venv/bin/python benchmarks/bench_serve.py', *sys.argv[1:]])}`: "
            f"scikit-learn MLPs ({sizes}), one-row requests for class probabilities; the XGBoost "
            "regressor of the tree benchmark (200 trees of depth 6, 20 features; modelpack runs it on "
            "the tree engine), requests of one row and of 1,000 rows for its values. From "
            f"{', '.join(map(str, args.clients))} concurrent client threads, {args.seconds:g} s per case in "
            f"{args.rounds} alternating rounds (requests/s: the median of the rounds; latency: over all). Servers, clients and the library share the machine's "
            f"{os.cpu_count()} CPUs over loopback; every answer is checked. The library runs with the ONNX "
            "Runtime settings the server gives its models (threads that sleep rather than spin between "
            "runs). Batching: modelpack "
            f"`--max-batch-size {BATCH_SIZE} --max-latency-ms {BATCH_MS:g}`, MLServer adaptive batching "
            f"with `max_batch_size` {BATCH_SIZE} and `max_batch_time` {BATCH_MS / 1000:g} s. "
            + ("MLServer (1.7.1, its scikit-learn and XGBoost runtimes, `parallel_workers` 0: its worker "
               "pool does not start with uvloop 0.23; defaults otherwise) serves the original models from "
               "`.venv-mlserver`. " if mlserver else
               "MLServer was not measured in this run (no `.venv-mlserver`). ")
            + "\n\nAt " + str(top) + " clients on mlp-large with batching, against the library in-process: "
            + ", ".join(f"{case.removesuffix(', batching')} {ratio:.2f}x" for case, ratio in goal.items())
            + f". The servers run with their Prometheus metrics on (the default); counting one request "
            f"(its count, its latency and its batch) costs {metrics_us:.1f} µs in-process."
            + (f"\n\n{against_mlserver(results)}" if mlserver else "") + "\n\n"
            + "\n".join(lines) + "\n")
    path = write_section("serve", "Serving (`modelpack serve`)", body,
                         ["modelpack", "onnxruntime", "scikit-learn", "xgboost-cpu", "numba", "fastapi", "uvicorn",
                          "grpcio", "httpx", "numpy"])
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
