"""GPU: modelpack against raw ONNX Runtime on CUDA, with and without IO binding.

    .venv/bin/python benchmarks/bench_gpu.py               # needs onnxruntime-gpu and an NVIDIA GPU
    .venv/bin/python benchmarks/bench_gpu.py --device cpu  # the same comparison on the CPU provider

Where CUDA is absent the section says so and nothing is timed. The copying rows take
numpy arrays in and give numpy arrays out on every call, as most applications do; the
IO binding rows keep the input and the output on the device (an OrtValue made once),
binding them anew on each call as a pipeline with fresh tensors does.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import interleaved, write_section  # noqa: E402
from bench_devices import mlp_model  # noqa: E402

PROVIDERS = {"cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}
PACKAGES = ["modelpack", "onnxruntime-gpu", "onnxruntime", "numpy"]
TITLE = "GPU (CUDA): predict throughput, with and without IO binding"
SIZES = (128, 1024, 1024, 1024, 16)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=sorted(PROVIDERS), default="cuda")
    args = parser.parse_args()
    import onnxruntime as ort

    import modelpack

    provider = PROVIDERS[args.device]
    if provider not in ort.get_available_providers():
        write_section("gpu", TITLE, (
            f"Not measured: the latest run found no {provider} (onnxruntime {ort.__version__} offers "
            f"{', '.join(ort.get_available_providers())}). On a machine with an NVIDIA GPU and "
            "`onnxruntime-gpu`, `python benchmarks/run.py gpu` fills this section: where each node of "
            "an MLP runs, and rows per second of raw `InferenceSession.run`, `Model.run`, raw IO "
            "binding and `Model.run_on_device` at batch 1, 64 and 1024."), PACKAGES)
        print(f"no {provider}: wrote the 'not measured' section")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        onnx_file = Path(tmp) / "mlp.onnx"
        onnx_file.write_bytes(mlp_model(SIZES))
        modelpack.pack(onnx_file, Path(tmp) / "mlp.mpk")
        with modelpack.load(Path(tmp) / "mlp.mpk", device=args.device, fallback=False) as model:
            session = ort.InferenceSession(str(onnx_file), providers=list(dict.fromkeys([provider, PROVIDERS["cpu"]])))
            lines = table(model, session, args.device, ort)
            where = ", ".join(f"{p}: {s['nodes']} nodes" for p, s in (model.placement or {}).items())
            providers = model.providers
    body = (f"`.venv/bin/python benchmarks/bench_gpu.py --device {args.device}`. An MLP "
            f"{'-'.join(map(str, SIZES))} (MatMul/Add/Relu, float32) on {providers[0]}; placement: "
            f"{where or 'not recorded by this onnxruntime'}. Rows per second, medians of interleaved "
            "rounds in one process; ratios are modelpack over raw ONNX Runtime.\n\n" + "\n".join(lines))
    path = write_section("gpu", TITLE, body, PACKAGES)
    print(body)
    print(f"wrote {path}")
    return 0


def table(model: object, session: object, device: str, ort: object) -> list[str]:
    lines = ["| batch | raw run | Model.run | ratio | raw IO binding | Model.run_on_device | ratio |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    rng = np.random.default_rng(0)
    for batch in (1, 64, 1024):
        x = rng.standard_normal((batch, SIZES[0])).astype(np.float32)
        x_dev = ort.OrtValue.ortvalue_from_numpy(x, device, 0)  # type: ignore[attr-defined]

        def raw_bound(v: object = x_dev) -> object:
            # What a pipeline does per call with a new input tensor: bind, run, take the output.
            binding = session.io_binding()  # type: ignore[attr-defined]
            binding.bind_ortvalue_input("X", v)
            binding.bind_output("Y", device)
            session.run_with_iobinding(binding)  # type: ignore[attr-defined]
            return binding.get_outputs()[0]

        funcs = {
            "raw": lambda x=x: session.run(None, {"X": x}),  # type: ignore[attr-defined]
            "ours": lambda x=x: model.run(x),  # type: ignore[attr-defined]
            "raw bound": raw_bound,
            "ours bound": lambda v=x_dev: model.run_on_device({"X": v}),  # type: ignore[attr-defined]
        }
        reference = session.run(None, {"X": x})[0]  # type: ignore[attr-defined]
        np.testing.assert_allclose(model.run(x)["Y"], reference, rtol=1e-4, atol=1e-4)  # type: ignore[attr-defined]
        np.testing.assert_allclose(model.run_on_device({"X": x_dev})["Y"].numpy(), reference,  # type: ignore[attr-defined]
                                   rtol=1e-4, atol=1e-4)
        start = time.perf_counter()
        for f in funcs.values():
            f()
        number = max(1, int(0.05 / max(time.perf_counter() - start, 1e-6)))
        t = interleaved(funcs, rounds=10, number=number)
        rate = {k: batch / v for k, v in t.items()}
        lines.append(f"| {batch} | {rate['raw']:,.0f} | {rate['ours']:,.0f} | {rate['ours'] / rate['raw']:.2f}x | "
                     f"{rate['raw bound']:,.0f} | {rate['ours bound']:,.0f} | "
                     f"{rate['ours bound'] / rate['raw bound']:.2f}x |")
    return lines


if __name__ == "__main__":
    sys.exit(main())
