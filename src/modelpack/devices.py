"""Device names and ONNX Runtime execution providers.

A device name ("cpu", "cuda:1", "openvino"...) maps to one execution provider
with its options. ONNX Runtime on its own silently falls back to the CPU when a
requested provider is missing; here that is a decision: with ``fallback=True``
the next device in the list is used and a warning says so, with
``fallback=False`` a :class:`~modelpack.DeviceUnavailableError` names what is
installed and what to install.
"""

from __future__ import annotations

import difflib
import warnings
from typing import Any, Sequence, Union

from .errors import DeviceError, DeviceUnavailableError

__all__ = ["DEVICES", "ProviderSpec", "resolve_providers"]

ProviderSpec = Union[str, tuple[str, dict[str, Any]]]

# Device name -> ONNX Runtime provider, in the order "auto" prefers them.
DEVICES: dict[str, str] = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider",
    "cpu": "CPUExecutionProvider",
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
_DEVICE_ID_OPTION = {"cuda": "device_id", "tensorrt": "device_id", "rocm": "device_id",
                     "migraphx": "device_id", "directml": "device_id", "openvino": "device_type"}


def parse_device(name: str) -> ProviderSpec:
    """"cuda:1" -> ("CUDAExecutionProvider", {"device_id": 1}); "cpu" -> "CPUExecutionProvider"."""
    base, _, index = name.strip().lower().partition(":")
    if base not in DEVICES:
        close = difflib.get_close_matches(base, [*DEVICES, "auto"], n=1)
        hint = f"Did you mean {close[0]!r}? " if close else ""
        raise DeviceError(f"unknown device {name!r}",
                          fix=f"{hint}Use one of {', '.join([*DEVICES, 'auto'])}, or pass providers=.")
    provider = DEVICES[base]
    if not index:
        return provider
    option = _DEVICE_ID_OPTION.get(base)
    if option is None:
        raise DeviceError(f"device {name!r} takes no index", fix=f"Use {base!r}.")
    if option == "device_type":  # openvino:GPU, openvino:NPU
        return provider, {option: index.upper()}
    if not index.isdigit():
        raise DeviceError(f"device {name!r} needs a number after ':'", fix=f"Use e.g. '{base}:0'.")
    return provider, {option: int(index)}


def _provider_name(spec: ProviderSpec) -> str:
    return spec if isinstance(spec, str) else spec[0]


def _device_of(provider: str) -> str:
    return next((d for d, p in DEVICES.items() if p == provider), provider)


def resolve_providers(device: str | Sequence[str], providers: Sequence[ProviderSpec] | None,
                      fallback: bool, available: Sequence[str]) -> list[ProviderSpec]:
    """The providers to ask ONNX Runtime for, best first, all of them available.

    ``providers`` (expert use) wins over ``device``. The CPU provider always
    ends the list, because operators without a kernel elsewhere run there.
    """
    if providers is not None:
        wanted = list(providers)
    elif isinstance(device, str) and device.strip().lower() == "auto":
        wanted = [p for p in DEVICES.values() if p in available]
    else:
        names = [device] if isinstance(device, str) else list(device)
        if not names:
            raise DeviceError("an empty device list was given", fix="Pass device='cpu' or a list of names.")
        wanted = [parse_device(n) for n in names]
    chosen = [spec for spec in wanted if _provider_name(spec) in available]
    missing = [_provider_name(spec) for spec in wanted if _provider_name(spec) not in available]
    if missing:
        _report_missing(missing, available, fallback, bool(chosen))
    if "CPUExecutionProvider" not in [_provider_name(s) for s in chosen]:
        chosen.append("CPUExecutionProvider")
    return chosen


def _report_missing(missing: list[str], available: Sequence[str], fallback: bool, any_left: bool) -> None:
    installs = "; ".join(f"for {_device_of(p)}: {INSTALL.get(_device_of(p), 'an onnxruntime build with ' + p)}"
                         for p in missing)
    message = (f"execution provider(s) {missing} are not available in this onnxruntime "
               f"(available: {list(available)})")
    if not fallback:
        raise DeviceUnavailableError(message, fix=f"Install what is needed ({installs}), or pass "
                                                  "fallback=True to run on the next device.")
    target = "the next device in the list" if any_left else "the CPU"
    warnings.warn(f"{message}; running on {target}. To get them: {installs}.", RuntimeWarning, stacklevel=4)
