"""Load test of `modelpack serve` on loopback, against calling the library directly.

A scikit-learn MLP (64 features -> 1024 -> 1024 -> 10 classes, exported to ONNX) is
served by `modelpack serve` in its own process on 127.0.0.1. Client threads
(each with its own keep-alive connection) send one-row requests as fast as the
answers come back, for a bounded number of requests and seconds. Cases:

- library: the same threads call ``Model.run`` in-process (no HTTP);
- JSON: a V2 request with the data in JSON;
- binary: the same request with the binary tensor data extension (as tritonclient sends it);
- each served case again with micro-batching (``--max-batch-size 64 --max-latency-ms 2``).

Every answer is checked against the library's. Run:
    .venv/bin/python benchmarks/bench_serve.py [--clients 16] [--requests 3000] [--seconds 10]
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

LAUNCH = ("import argparse, sys; from modelpack.serve.cli import add_parser; "
          "p = argparse.ArgumentParser(prog='modelpack'); add_parser(p.add_subparsers()); "
          "a = p.parse_args(sys.argv[1:]); sys.exit(a.handler(a))")
FEATURES = 64
HIDDEN = (1024, 1024)


def build_package(folder: Path) -> Path:
    from skl2onnx import to_onnx
    from sklearn.datasets import make_classification
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    import modelpack

    X, y = make_classification(500, FEATURES, n_informative=32, n_classes=10, random_state=0)
    X = X.astype(np.float32)
    with warnings.catch_warnings():  # a few epochs are enough: only the speed is measured
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp = MLPClassifier(HIDDEN, max_iter=3, random_state=0).fit(X, y)
    onx = to_onnx(mlp, X[:1], options={"zipmap": False})
    src = folder / "mlp.onnx"
    src.write_bytes(onx.SerializeToString())
    modelpack.pack(src, folder / "mlp.mpk", name="mlp")
    return folder / "mlp.mpk"


def start_server(package: Path, extra: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH, "serve", str(package), "--port", str(port),
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


def drive(call: Callable[[Any, int], None], make_session: Callable[[], Any], *, clients: int,
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


def json_body(x: np.ndarray) -> bytes:
    return json.dumps({"inputs": [{"name": "X", "shape": list(x.shape), "datatype": "FP32",
                                   "data": x.reshape(-1).tolist()}]}).encode()


def binary_body(x: np.ndarray) -> tuple[bytes, dict[str, str]]:
    header = json.dumps({"inputs": [{"name": "X", "shape": list(x.shape), "datatype": "FP32",
                                     "parameters": {"binary_data_size": x.nbytes}}],
                         "parameters": {"binary_data_output": True}}).encode()
    return header + x.tobytes(), {"Inference-Header-Content-Length": str(len(header))}


def served_call(url: str, rows: np.ndarray, expected: np.ndarray, binary: bool) -> Callable[[Any, int], None]:
    bodies = [binary_body(r[None]) if binary else (json_body(r[None]), {}) for r in rows]

    def call(client: Any, i: int) -> None:
        body, headers = bodies[i % len(rows)]
        r = client.post(f"{url}/v2/models/mlp/infer", content=body, headers=headers)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=3000, help="most requests per case")
    parser.add_argument("--seconds", type=float, default=12.0, help="most seconds per case")
    parser.add_argument("--rounds", type=int, default=3, help="cases alternate this many times (drift hits all)")
    parser.add_argument("--server-args", default="", help="more `modelpack serve` options, e.g. '--threads 4'")
    args = parser.parse_args()

    import httpx

    import modelpack

    folder = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    package = build_package(folder)
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(256, FEATURES)).astype(np.float32)
    model = modelpack.load(package)
    expected = np.vstack([model.run(r[None])["probabilities"] for r in rows])

    def direct(_: Any, i: int) -> None:
        out = model.run(rows[i % len(rows)][None])["probabilities"]
        if not np.allclose(out[0], expected[i % len(rows)], atol=1e-5):
            raise AssertionError("wrong answer")

    cases: dict[str, tuple[Callable[[Any, int], None], Callable[[], Any]]] = {
        "library (Model.run, in-process)": (direct, lambda: None)}
    servers = []
    try:
        for label, extra in (("", []), (", micro-batching", ["--max-batch-size", "64", "--max-latency-ms", "2"])):
            proc, url = start_server(package, [*extra, *args.server_args.split()])
            servers.append(proc)
            for binary in (False, True):
                call = served_call(url, rows, expected, binary)
                drive(call, lambda: httpx.Client(timeout=30), clients=4, requests=100, seconds=5)  # warm-up
                cases[f"serve, {'binary' if binary else 'JSON'}{label}"] = (call, lambda: httpx.Client(timeout=30))
        samples: dict[str, list[tuple[list[float], int, float]]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, (call, session) in cases.items():
                samples[name].append(drive(call, session, clients=args.clients,
                                           requests=args.requests // args.rounds,
                                           seconds=args.seconds / args.rounds))
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait(timeout=30)
        model.close()
    results = {name: summary([v for lat, _, _ in runs for v in lat], sum(e for _, e, _ in runs),
                             sum(t for _, _, t in runs)) for name, runs in samples.items()}
    for name, r in results.items():
        print(name, {k: round(v, 2) for k, v in r.items()}, flush=True)
    write_results(results, args)
    return 0


def write_results(results: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    base = results["library (Model.run, in-process)"]["rps"]
    plain = {k.removesuffix(", micro-batching"): v["rps"] for k, v in results.items() if "batching" not in k}
    lines = ["| case | requests | errors | requests/s | p50 ms | p99 ms | vs library | vs unbatched |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in results.items():
        unbatched = f"{r['rps'] / plain[name.removesuffix(', micro-batching')]:.2f}x" if "batching" in name else ""
        lines.append(f"| {name} | {r['n']:.0f} | {r['errors']:.0f} | {r['rps']:,.0f} | {r['p50']:.2f} | "
                     f"{r['p99']:.2f} | {r['rps'] / base:.3f}x | {unbatched} |")
    body = (f"`{' '.join(['.venv/bin/python benchmarks/bench_serve.py', *sys.argv[1:]])}`: "
            f"{args.clients} client threads, one-row requests to a scikit-learn MLP "
            f"({FEATURES} -> {HIDDEN[0]} -> {HIDDEN[1]} -> 10, ONNX), at most {args.requests} requests or "
            f"{args.seconds:g} s per case, the cases alternating in {args.rounds} rounds; server and "
            f"clients share the machine's {os.cpu_count()} CPUs over loopback, and every answer is checked."
            "\n\n" + "\n".join(lines) + "\n\n"
            "Micro-batching merges the one-row requests that arrive together into one model run: it "
            "raises throughput when the model's fixed cost per run dominates, and adds at most "
            "`--max-latency-ms` to a request's latency (none when requests arrive one at a time).")
    path = write_section("serve", "Serving (`modelpack serve`)", body,
                         ["modelpack", "onnxruntime", "fastapi", "starlette", "uvicorn", "httpx", "numpy"])
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
