"""Device names and the ONNX Runtime execution providers they stand for.

``"cpu"``, ``"cuda:1"``, ``"openvino:GPU"``, ``"tensorrt"``... each map to one
provider with its options. This module knows names only: which providers are
installed, and what to do when one is missing, is :mod:`.policy`'s business.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Sequence
from typing import Any

from ..errors import DeviceError

__all__ = ["CPU", "DEVICES", "INSTALL", "SWITCH", "ProviderSpec", "device_of", "install_hint", "is_auto",
           "parse_device", "platform_gpu", "provider_name"]

ProviderSpec = str | tuple[str, dict[str, Any]]
CPU = "CPUExecutionProvider"

# Device name -> ONNX Runtime provider, in the order "auto" prefers them.
DEVICES: dict[str, str] = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider",
    "cpu": CPU,
}

INSTALL = {
    "tensorrt": "pip install 'modelpack[gpu]' (onnxruntime-gpu) with TensorRT libraries",
    "cuda": "pip install 'modelpack[gpu]' (onnxruntime-gpu) on a machine with an NVIDIA driver",
    "rocm": "onnxruntime built for ROCm on a machine with an AMD GPU",
    "migraphx": "onnxruntime built for MIGraphX on a machine with an AMD GPU",
    "openvino": "pip install 'modelpack[openvino]' (onnxruntime-openvino)",
    "coreml": "pip install 'modelpack[cpu]' on macOS (onnxruntime ships CoreML there)",
    "directml": "pip install 'modelpack[directml]' (onnxruntime-directml) on Windows",
    "cpu": "pip install 'modelpack[cpu]'",
}
SWITCH = ("ONNX Runtime flavours overwrite each other: first `pip uninstall -y onnxruntime onnxruntime-gpu "
          "onnxruntime-openvino onnxruntime-directml`, then install one")
_DEVICE_ID_OPTION = {"cuda": "device_id", "tensorrt": "device_id", "rocm": "device_id",
                     "migraphx": "device_id", "directml": "device_id", "openvino": "device_type"}
_PROVIDER_DEVICE = {p.lower(): d for d, p in DEVICES.items()}


def platform_gpu(name: Any, available: Sequence[str]) -> Any:
    """``"gpu"`` (or ``"gpu:1"``) as this machine's GPU device; any other name unchanged.

    The first GPU provider installed, in the order CUDA, ROCm, DirectML, CoreML; with
    none installed, the one this platform would use (CoreML on macOS, else CUDA), so that
    the warning or error names what to install.

    Example
    -------
    >>> platform_gpu("gpu:1", ["ROCMExecutionProvider", "CPUExecutionProvider"])
    'rocm:1'
    """
    if not isinstance(name, str) or name.strip().partition(":")[0].lower() != "gpu":
        return name
    index = name.strip().partition(":")[2]
    found = next((d for d in ("cuda", "rocm", "directml", "coreml") if DEVICES[d] in available),
                 "coreml" if sys.platform == "darwin" else "cuda")
    return f"{found}:{index}" if index and found != "coreml" else found


def parse_device(name: str) -> ProviderSpec:
    """The provider (with options) for one device name.

    Example
    -------
    >>> parse_device("cuda:1")
    ('CUDAExecutionProvider', {'device_id': 1})
    >>> parse_device("openvino:GPU")
    ('OpenVINOExecutionProvider', {'device_type': 'GPU'})
    >>> parse_device("cpu")
    'CPUExecutionProvider'
    """
    if not isinstance(name, str):
        raise DeviceError(f"a device name must be a string, not {type(name).__name__} {name!r}",
                          fix="Pass e.g. device='cuda', or providers=[(name, options)] for provider options.")
    base, _, index = name.strip().partition(":")
    base = _PROVIDER_DEVICE.get(base.lower(), base.lower())
    if base not in DEVICES:
        close = difflib.get_close_matches(base, [*DEVICES, "auto", "gpu"], n=1, cutoff=0.5)
        hint = f"Did you mean {close[0]!r}? " if close else ""
        raise DeviceError(f"unknown device {name!r}",
                          fix=f"{hint}Use one of {', '.join([*DEVICES, 'gpu', 'auto'])}, or pass providers=.")
    provider = DEVICES[base]
    if not index:
        return provider
    option = _DEVICE_ID_OPTION.get(base)
    if option is None:
        raise DeviceError(f"device {name!r} takes no index", fix=f"Use {base!r}.")
    if option == "device_type":  # openvino:GPU, openvino:NPU, openvino:GPU.1
        return provider, {option: index.strip().upper()}
    if not index.strip().isdigit():
        raise DeviceError(f"device {name!r} needs a number after ':'", fix=f"Use e.g. '{base}:0'.")
    return provider, {option: int(index)}


def provider_name(spec: ProviderSpec) -> str:
    """The provider name of a spec, with or without options."""
    return spec if isinstance(spec, str) else spec[0]


def device_of(provider: str) -> str:
    """The device name of a provider ("CUDAExecutionProvider" -> "cuda")."""
    return _PROVIDER_DEVICE.get(provider.lower(), provider)


def is_auto(device: str | Sequence[str]) -> bool:
    return isinstance(device, str) and device.strip().lower() == "auto"


def install_hint(providers: Sequence[str]) -> str:
    """What to install to get each provider."""
    return "; ".join(f"for {device_of(p)}: {INSTALL.get(device_of(p), 'an onnxruntime build with ' + p)}"
                     for p in providers)
