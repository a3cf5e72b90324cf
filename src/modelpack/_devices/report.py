"""The device report: which providers work here, proven on a tiny model (``modelpack.devices()``).

``get_available_providers()`` lists what the installed wheel was built with:
onnxruntime-gpu lists CUDA on a laptop without an NVIDIA driver. So each
provider creates a session over a three-node model (MatMul, Add, Relu, static
shapes so TensorRT takes it too), must keep at least one node, and must compute
the right numbers. What failed is explained, with what to install.
"""

from __future__ import annotations

import contextlib
import platform
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any

import numpy as np

from .cgroup import cpu_quota, usable_cpus
from .names import CPU, DEVICES, INSTALL, SWITCH, device_of

__all__ = ["DeviceReport", "Gpu", "ProviderCheck", "build_report", "devices", "probe_provider", "tiny_model"]

# Providers that are not a place to compute (Azure forwards requests to a web endpoint).
_NOT_DEVICES = {"AzureExecutionProvider"}
_RUNTIMES = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml",
             "onnxruntime-qnn", "onnxruntime-rocm", "onnxruntime-training", "ort-nightly", "ort-nightly-gpu")


@dataclass(frozen=True)
class ProviderCheck:
    """One provider (or one OpenVINO device) and whether it ran the tiny model."""

    device: str
    provider: str
    works: bool | None  # None: not probed
    detail: str = ""


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_mib: int | None
    driver: str


@dataclass(frozen=True)
class DeviceReport:
    """What :func:`modelpack.devices` found. ``str()`` reads as a table; ``to_dict()`` is JSON-ready."""

    onnxruntime: str | None
    package: str | None
    runtimes_installed: tuple[str, ...]
    providers: tuple[ProviderCheck, ...]
    gpus: tuple[Gpu, ...]
    versions: dict[str, str] = field(default_factory=dict)
    cpus: int = 1
    cpu_quota: float | None = None
    advice: tuple[str, ...] = ()

    @property
    def working(self) -> list[str]:
        """Device names that ran the tiny model, best first."""
        return [p.device for p in self.providers if p.works]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __repr__(self) -> str:
        runtime = f"onnxruntime {self.onnxruntime}" if self.onnxruntime else "no onnxruntime"
        return (f"<DeviceReport {runtime}: works on {', '.join(self.working) or 'nothing'}; "
                f"{len(self.gpus)} GPU(s), {self.cpus} CPU thread(s)>")

    def _repr_html_(self) -> str:
        from html import escape

        from .._display import FAIL, OK, table

        state = {True: OK, False: FAIL, None: "installed, not probed"}
        runtime = (f"onnxruntime {escape(self.onnxruntime)} (package {escape(str(self.package))})"
                   if self.onnxruntime else "onnxruntime: not installed")
        rows = [[escape(p.device), f"<code>{escape(p.provider)}</code>", state[p.works], escape(p.detail)]
                for p in self.providers]
        gpus = ", ".join(escape(f"{g.index}: {g.name}") for g in self.gpus) or "none found"
        advice = "".join(f"<li>{escape(line)}</li>" for line in self.advice)
        return (f"<div><strong>devices</strong>: {runtime}" + table(["device", "provider", "", "detail"], rows)
                + f"<p>CPU threads by default: {self.cpus}; GPUs: {gpus}</p>"
                + (f"<ul>{advice}</ul>" if advice else "") + "</div>")

    def __str__(self) -> str:
        if not self.onnxruntime:
            lines = ["onnxruntime: not installed"]
        else:
            lines = [f"onnxruntime {self.onnxruntime} (package {self.package})"]
            for p in self.providers:
                state = {True: "works", False: "FAILS", None: "installed (not probed)"}[p.works]
                lines.append(f"  {p.device:<14} {p.provider:<28} {state}{': ' + p.detail if p.detail else ''}")
        quota = f", container quota {self.cpu_quota:g}" if self.cpu_quota else ""
        lines.append(f"CPU threads by default: {self.cpus}{quota}")
        for gpu in self.gpus:
            memory = f", {gpu.memory_mib:,} MiB" if gpu.memory_mib else ""
            lines.append(f"GPU {gpu.index}: {gpu.name}{memory}, driver {gpu.driver}")
        if not self.gpus:
            lines.append("GPUs: none found (no nvidia-smi, or it lists none)")
        if self.versions:
            lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in self.versions.items()))
        lines += [f"- {line}" for line in self.advice]
        return "\n".join(lines)


def tiny_model() -> tuple[bytes, np.ndarray, np.ndarray]:
    """(ONNX bytes, input, expected output) of relu(x @ w + b), built in memory."""
    from onnx import TensorProto, helper, numpy_helper

    x = np.arange(4, dtype=np.float32).reshape(1, 4) - 1.5
    w = np.linspace(-1, 1, 16, dtype=np.float32).reshape(4, 4)
    b = np.full(4, 0.25, dtype=np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["z"]),
             helper.make_node("Relu", ["z"], ["y"])]
    graph = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="modelpack")
    model.ir_version = 7  # old enough for every onnxruntime modelpack supports
    return model.SerializeToString(), x, np.maximum(x @ w + b, 0)


def probe_provider(ort: Any, spec: Any, device: str) -> ProviderCheck:
    """Create a session with ``spec`` on the tiny model and check what it did."""
    from .placement import RECORD, of_session, short_error

    provider = spec if isinstance(spec, str) else spec[0]
    data, x, expected = tiny_model()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry(RECORD, "1")
    with _captured_log(ort) as log:
        start = time.perf_counter()
        try:
            session = ort.InferenceSession(data, options, providers=[spec, CPU] if provider != CPU else [spec],
                                           enable_fallback=0)
            (y,) = session.run(None, {"x": x})
        except Exception as exc:  # noqa: BLE001 - the failure is the answer
            return ProviderCheck(device, provider, False, short_error(exc))
        ms = (time.perf_counter() - start) * 1e3
    if provider not in session.get_providers():
        reason = next((m for m in reversed(log) if provider.removesuffix("ExecutionProvider") in m), "")
        return ProviderCheck(device, provider, False, "did not load" + (f": {reason}" if reason else ""))
    placement = of_session(session)
    if placement is not None and not placement.get(provider, {}).get("nodes"):
        return ProviderCheck(device, provider, False, "loaded but took no operator of a MatMul/Add/Relu model")
    if not np.allclose(y, expected, rtol=1e-3, atol=1e-3):
        return ProviderCheck(device, provider, False, f"wrong result: {y.ravel()} instead of {expected.ravel()}")
    return ProviderCheck(device, provider, True, f"session + first run {ms:.0f} ms")


@contextlib.contextmanager
def _captured_log(ort: Any) -> Iterator[list[str]]:
    """ONNX Runtime's log lines while probing (they say why a provider did not load)."""
    lines: list[str] = []
    install = getattr(ort, "set_default_logger_callback", None)
    if install is None:  # older onnxruntime: its lines go to stderr as usual
        yield lines
        return
    install(lambda severity, category, logid, location, message: lines.append(message), 2)
    try:
        yield lines
    finally:
        install(None, 2)


def devices(*, probe: bool = True) -> DeviceReport:
    """What this machine can run models on, proven by running a tiny model on each provider.

    ``onnxruntime.get_available_providers()`` lists the providers compiled into the
    installed wheel, not those that work: CUDA is listed without a driver. Here each
    one creates a session on a tiny model and its result is checked.

    Parameters
    ----------
    probe:
        If False, only list what is installed (no session is created).

    Example
    -------
    >>> import modelpack
    >>> print(modelpack.devices())                             # doctest: +SKIP
    onnxruntime 1.32.0 (package onnxruntime)
      cpu       CPUExecutionProvider       works (12 ms)
    ...
    """
    return build_report(probe=probe)


def build_report(*, probe: bool = True) -> DeviceReport:
    """Probe every installed provider (see :func:`modelpack.devices`)."""
    runtimes = tuple(sorted(_installed_runtimes()))
    gpus, driver_cuda = _nvidia_gpus()
    quota = cpu_quota()
    try:
        import onnxruntime as ort
    except ImportError:
        advice = _advice(None, (), runtimes, gpus)
        return DeviceReport(None, None, runtimes, (), gpus, _versions(None, driver_cuda), usable_cpus(), quota,
                            tuple(advice))
    checks = tuple(_checks(ort, probe))
    advice = _advice(ort, checks, runtimes, gpus)
    return DeviceReport(ort.__version__, _package_name(ort), runtimes, checks, gpus, _versions(ort, driver_cuda),
                        usable_cpus(), quota, tuple(advice))


def _checks(ort: Any, probe: bool) -> Iterator[ProviderCheck]:
    available = [p for p in ort.get_available_providers() if p not in _NOT_DEVICES]
    ranked = sorted(available, key=lambda p: list(DEVICES.values()).index(p) if p in DEVICES.values() else -1)
    for provider in ranked:
        for device, spec in _variants(ort, provider):
            yield probe_provider(ort, spec, device) if probe else ProviderCheck(device, provider, None)


def _variants(ort: Any, provider: str) -> list[tuple[str, Any]]:
    """One probe per provider; one per OpenVINO device (CPU, GPU, NPU) where it can list them."""
    device = device_of(provider)
    if provider == DEVICES["openvino"]:
        try:
            ids = ort.capi._pybind_state.get_available_openvino_device_ids()
        except (AttributeError, RuntimeError):
            ids = []
        if ids:
            return [(f"openvino:{i}", (provider, {"device_type": i})) for i in ids]
    return [(device, provider)]


def _installed_runtimes() -> Iterator[str]:
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name in _RUNTIMES:
            yield f"{name} {dist.version}"


def _package_name(ort: Any) -> str:
    try:
        from onnxruntime.capi import build_and_package_info

        return str(build_and_package_info.package_name)
    except ImportError:
        return "onnxruntime"


def _nvidia_gpus() -> tuple[tuple[Gpu, ...], str | None]:
    """GPUs listed by nvidia-smi, and the CUDA version its driver supports."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return (), None
    query = [smi, "--query-gpu=index,name,memory.total,driver_version", "--format=csv,noheader,nounits"]
    try:
        listing = subprocess.run(query, capture_output=True, text=True, timeout=20, check=True).stdout  # noqa: S603
        header = subprocess.run([smi], capture_output=True, text=True, timeout=20).stdout  # noqa: S603
    except (OSError, subprocess.SubprocessError):
        return (), None
    gpus = []
    for line in listing.strip().splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) == 4 and fields[0].isdigit():
            memory = int(fields[2]) if fields[2].isdigit() else None
            gpus.append(Gpu(int(fields[0]), fields[1], memory, fields[3]))
    found = re.search(r"CUDA Version:\s*([\d.]+)", header)
    return tuple(gpus), found.group(1) if found else None


def _versions(ort: Any, driver_cuda: str | None) -> dict[str, str]:
    found = {}
    if driver_cuda:
        found["CUDA (driver supports)"] = driver_cuda
    if ort is not None:
        try:
            from onnxruntime.capi import build_and_package_info as info
        except ImportError:
            info = None
        for key, label in (("cuda_version", "CUDA (onnxruntime built for)"), ("cudnn_version", "cuDNN")):
            value = getattr(info, key, None)
            if value:
                found[label] = str(value)
    for dist in ("openvino", "tensorrt", "nvidia-cudnn-cu12", "nvidia-cuda-runtime-cu12"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return found


def cpu_vendor() -> str:
    """The CPU maker as the system names it (``GenuineIntel``, ``AuthenticAMD``, ``Apple``...), or ``""``."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh.read(65536).splitlines():
                if line.startswith("vendor_id"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or ""


def _advice(ort: Any, checks: tuple[ProviderCheck, ...], runtimes: tuple[str, ...],
            gpus: tuple[Gpu, ...], vendor: str | None = None) -> list[str]:
    """What to install or fix, one sentence each."""
    advice = []
    if len(runtimes) > 1:
        advice.append(f"several ONNX Runtime packages are installed ({', '.join(runtimes)}): they overwrite "
                      f"each other's files. {SWITCH}.")
    if ort is None:
        extra = "gpu" if gpus else "cpu"
        return [*advice, f"no ONNX Runtime: pip install 'modelpack[{extra}]' (or [openvino] / [directml])."]
    by_provider = {c.provider: c for c in checks}
    cuda = by_provider.get(DEVICES["cuda"])
    if gpus and cuda is None:
        advice.append(f"an NVIDIA GPU is here but this onnxruntime has no CUDA provider. {SWITCH}: "
                      "pip install 'modelpack[gpu]'.")
    elif cuda is not None and cuda.works is False:
        if not gpus:
            advice.append("onnxruntime-gpu is installed but nvidia-smi finds no NVIDIA GPU or driver: install "
                          "the driver, or switch to 'modelpack[cpu]'.")
        else:
            advice.append("the CUDA provider does not load: install the CUDA and cuDNN libraries this "
                          "onnxruntime-gpu was built for (pip install 'onnxruntime-gpu[cuda,cudnn]'), "
                          "and check that the driver supports that CUDA version.")
    trt = by_provider.get(DEVICES["tensorrt"])
    if trt is not None and trt.works is False:
        advice.append("TensorRT does not load: install the TensorRT libraries matching onnxruntime-gpu "
                      "(pip install tensorrt) if you want it; CUDA works without it.")
    intel = "intel" in (cpu_vendor() if vendor is None else vendor).lower()
    if DEVICES["openvino"] not in by_provider and not gpus and intel:  # OpenVINO is Intel's
        advice.append(f"optional, for Intel CPUs, GPUs and NPUs: {INSTALL['openvino']}.")
    return advice
