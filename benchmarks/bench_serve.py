"""Load test of `modelpack serve` on loopback, against calling the library directly.

Two scikit-learn MLPs (64 features -> two hidden layers -> 10 classes, exported to ONNX)
are served by `modelpack serve` in its own process on 127.0.0.1: a small one, whose
run costs less than the HTTP exchange around it, and a large one, whose run costs
more. Client threads (each with its own keep-alive connection) send one-row requests
as fast as the answers come back, for a bounded number of requests and seconds.
Cases, for each model:

- library: the same threads call ``Model.run`` in-process (no HTTP);
- JSON: a V2 request with the data in JSON;
- binary: the same request with the binary tensor data extension (as tritonclient sends it);
- each served case again on a server with micro-batching (``--max-batch-size 64 --max-latency-ms 2``).

The cases alternate in rounds, so drift in the machine's load hits all of them alike,
and every answer is checked against the library's. Run:
    .venv/bin/python benchmarks/bench_serve.py [--clients 16] [--requests 3000] [--seconds 8]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_section  # noqa: E402

LAUNCH = ("import argparse, sys; from modelpack._cli.serve import add_parser; "
          "p = argparse.ArgumentParser(prog='modelpack'); add_parser(p.add_subparsers()); "
          "a = p.parse_args(sys.argv[1:]); sys.exit(a.handler(a))")
FEATURES = 64
MODELS = {"mlp-small": (256, 256), "mlp-large": (4096, 4096)}
BATCHING = ["--max-batch-size", "64", "--max-latency-ms", "2"]
Call = Callable[[Any, int], None]


def build_package(folder: Path, name: str, hidden: tuple[int, int]) -> Path:
    from skl2onnx import to_onnx
    from sklearn.datasets import make_classification
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    import modelpack

    X, y = make_classification(500, FEATURES, n_informative=32, n_classes=10, random_state=0)
    X = X.astype(np.float32)
    with warnings.catch_warnings():  # a few epochs are enough: only the speed is measured
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp = MLPClassifier(hidden, max_iter=3, random_state=0).fit(X, y)
    onx = to_onnx(mlp, X[:1], options={"zipmap": False})
    src = folder / f"{name}.onnx"
    src.write_bytes(onx.SerializeToString())
    modelpack.pack(src, folder / f"{name}.mpk", name=name)
    return folder / f"{name}.mpk"


def start_server(packages: list[Path], extra: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH, "serve", *map(str, packages), "--port", str(port),
                             "--log-level", "warning", *extra])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not start")


def drive(call: Call, make_session: Callable[[], Any], *, clients: int,
          requests: int, seconds: float) -> tuple[list[float], int, float]:
    """Run ``call(session, i)`` from ``clients`` threads until ``requests`` or ``seconds``.

    Returns the latency of every call, the number of failed calls, and the elapsed seconds.
    """
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    counter = iter(range(requests))
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker(k: int) -> None:
        session = make_session()
        try:
            while time.perf_counter() < stop:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                start = time.perf_counter()
                try:
                    call(session, i)
                except Exception:  # noqa: BLE001 (counted and reported)
                    errors[k] += 1
                latencies[k].append(time.perf_counter() - start)
        finally:
            if hasattr(session, "close"):
                session.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [v for per in latencies for v in per], sum(errors), time.perf_counter() - began


def summary(latencies: list[float], errors: int, elapsed: float) -> dict[str, float]:
    flat = sorted(latencies)
    return {"n": len(flat), "errors": errors, "rps": len(flat) / elapsed, "p50": statistics.median(flat) * 1e3,
            "p99": flat[min(len(flat) - 1, int(len(flat) * 0.99))] * 1e3}


def json_body(x: np.ndarray) -> tuple[bytes, dict[str, str]]:
    return json.dumps({"inputs": [{"name": "X", "shape": list(x.shape), "datatype": "FP32",
                                   "data": x.reshape(-1).tolist()}]}).encode(), {}


def binary_body(x: np.ndarray) -> tuple[bytes, dict[str, str]]:
    header = json.dumps({"inputs": [{"name": "X", "shape": list(x.shape), "datatype": "FP32",
                                     "parameters": {"binary_data_size": x.nbytes}}],
                         "parameters": {"binary_data_output": True}}).encode()
    return header + x.tobytes(), {"Inference-Header-Content-Length": str(len(header))}


def served_call(url: str, name: str, rows: np.ndarray, expected: np.ndarray, binary: bool) -> Call:
    bodies = [binary_body(r[None]) if binary else json_body(r[None]) for r in rows]

    def call(client: Any, i: int) -> None:
        body, headers = bodies[i % len(rows)]
        r = client.post(f"{url}/v2/models/{name}/infer", content=body, headers=headers)
        r.raise_for_status()
        if binary:
            n = int(r.headers["inference-header-content-length"])
            doc = json.loads(r.content[:n])
            sizes = [o["parameters"]["binary_data_size"] for o in doc["outputs"]]
            proba = np.frombuffer(r.content[n + sizes[0]:n + sizes[0] + sizes[1]], dtype="<f4")
        else:
            proba = np.asarray(r.json()["outputs"][1]["data"], dtype=np.float32)
        if not np.allclose(proba, expected[i % len(rows)], atol=1e-5):
            raise AssertionError("wrong answer")

    return call


def library_call(model: Any, rows: np.ndarray, expected: np.ndarray) -> Call:
    def call(_: Any, i: int) -> None:
        out = model.run(rows[i % len(rows)][None])["probabilities"]
        if not np.allclose(out[0], expected[i % len(rows)], atol=1e-5):
            raise AssertionError("wrong answer")

    return call


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=3000, help="most requests per case")
    parser.add_argument("--seconds", type=float, default=8.0, help="most seconds per case")
    parser.add_argument("--rounds", type=int, default=2, help="cases alternate this many times")
    parser.add_argument("--server-args", default="", help="more `modelpack serve` options, e.g. '--threads 4'")
    args = parser.parse_args()

    import httpx

    import modelpack

    folder = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    packages = {name: build_package(folder, name, hidden) for name, hidden in MODELS.items()}
    rows = np.random.default_rng(1).normal(size=(256, FEATURES)).astype(np.float32)
    models = {name: modelpack.load(path) for name, path in packages.items()}
    expected = {name: np.vstack([m.run(r[None])["probabilities"] for r in rows]) for name, m in models.items()}
    cases: dict[str, tuple[Call, Callable[[], Any]]] = {}
    servers = []
    try:
        for name, model in models.items():
            cases[f"{name}: library (Model.run)"] = (library_call(model, rows, expected[name]), lambda: None)
        for label, extra in (("", []), (", micro-batching", BATCHING)):
            proc, url = start_server(list(packages.values()), [*extra, *args.server_args.split()])
            servers.append(proc)
            for name in models:
                for binary in (False, True):
                    call = served_call(url, name, rows, expected[name], binary)
                    drive(call, lambda: httpx.Client(timeout=60), clients=4, requests=40, seconds=5)  # warm-up
                    cases[f"{name}: serve, {'binary' if binary else 'JSON'}{label}"] = (
                        call, lambda: httpx.Client(timeout=60))
        samples: dict[str, list[tuple[list[float], int, float]]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for case, (call, session) in cases.items():
                samples[case].append(drive(call, session, clients=args.clients,
                                           requests=args.requests // args.rounds,
                                           seconds=args.seconds / args.rounds))
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait(timeout=30)
        for model in models.values():
            model.close()
    results = {case: summary([v for lat, _, _ in runs for v in lat], sum(e for _, e, _ in runs),
                             sum(t for _, _, t in runs)) for case, runs in samples.items()}
    for case, r in results.items():
        print(case, {k: round(v, 2) for k, v in r.items()}, flush=True)
    write_results(dict(sorted(results.items(), key=lambda kv: kv[0].split(":")[0])), args)
    return 0


def write_results(results: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    lines = ["| model | case | requests | errors | requests/s | p50 ms | p99 ms | vs library | vs unbatched |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for case, r in results.items():
        model, what = case.split(": ", 1)
        base = results[f"{model}: library (Model.run)"]["rps"]
        plain = results.get(case.removesuffix(", micro-batching"), r)["rps"]
        gain = f"{r['rps'] / plain:.2f}x" if case.endswith("micro-batching") else ""
        lines.append(f"| {model} | {what} | {r['n']:.0f} | {r['errors']:.0f} | {r['rps']:,.0f} | {r['p50']:.2f} | "
                     f"{r['p99']:.2f} | {r['rps'] / base:.3f}x | {gain} |")
    sizes = "; ".join(f"{n}: {FEATURES} -> {h[0]} -> {h[1]} -> 10" for n, h in MODELS.items())
    body = (f"`{' '.join(['.venv/bin/python benchmarks/bench_serve.py', *sys.argv[1:]])}`: "
            f"{args.clients} client threads send one-row requests to scikit-learn MLPs exported to ONNX "
            f"({sizes}), at most {args.requests} requests or {args.seconds:g} s per case, the cases "
            f"alternating in {args.rounds} rounds; server and clients share the machine's "
            f"{os.cpu_count()} CPUs over loopback, and every answer is checked.\n\n" + "\n".join(lines) + "\n\n"
            "Micro-batching merges the one-row requests that arrive together into one model run; the "
            "last column is its measured gain over the same server without it. It pays where the "
            "model's cost per run is large against the HTTP exchange; on this machine the clients, "
            "the server and the model share 2 CPUs, so the exchange (parsing, framing, the Python "
            "clients themselves) takes most of every request and caps the gain. Batching adds at most "
            "`--max-latency-ms` to a request's latency, and none when requests arrive one at a time.")
    path = write_section("serve", "Serving (`modelpack serve`)", body,
                         ["modelpack", "onnxruntime", "fastapi", "starlette", "uvicorn", "httpx", "numpy"])
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
