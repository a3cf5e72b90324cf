"""Device names and ONNX Runtime execution providers.

A device name ("cpu", "cuda:1", "openvino:GPU"...) maps to one execution
provider with its options. ONNX Runtime on its own silently falls back to the
CPU when a requested provider is missing or fails; here that is a decision:

* ``fallback=True``: a device that is not installed, does not load or fails on
  the model is dropped with a :class:`DeviceWarning`, and the session runs on the
  rest of the list (the CPU in the end);
* ``fallback=False``: every device named must run the session, else a
  :class:`~modelpack.DeviceUnavailableError` names what is installed and what to
  install.

Operators that have no kernel on a device that did load run on the CPU in both
modes; a :class:`PlacementWarning` names them. ``device="auto"`` takes every
installed accelerator, best first, and never fails over one.

This module is imported by ``import modelpack``: it imports no runtime.
"""

from __future__ import annotations

import difflib
import os
import sys
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import DeviceError, DeviceUnavailableError

if TYPE_CHECKING:
    import argparse

    from ._probe import DeviceReport

__all__ = ["CPU", "DEVICES", "DeviceWarning", "PlacementWarning", "ProviderSpec", "add_parser", "devices",
           "parse_device", "resolve_providers"]

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
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class DeviceWarning(RuntimeWarning):
    """A requested device was dropped: not installed, not loaded, or failing on the model."""


class PlacementWarning(DeviceWarning):
    """The requested device loaded, but some (or all) operators run on the CPU."""


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
        close = difflib.get_close_matches(base, [*DEVICES, "auto"], n=1, cutoff=0.5)
        hint = f"Did you mean {close[0]!r}? " if close else ""
        raise DeviceError(f"unknown device {name!r}",
                          fix=f"{hint}Use one of {', '.join([*DEVICES, 'auto'])}, or pass providers=.")
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


def resolve_providers(device: str | Sequence[str], providers: Sequence[ProviderSpec] | None,
                      fallback: bool, available: Sequence[str]) -> list[ProviderSpec]:
    """The providers to ask ONNX Runtime for, best first, all of them installed.

    ``providers`` (expert use: names or ``(name, options)`` pairs, passed through
    unchanged) wins over ``device``. The CPU provider always ends the list, because
    operators without a kernel elsewhere run there. The same provider may appear
    twice with different options (``["openvino:GPU", "openvino:CPU"]``): the session
    takes the first, the next is the fallback if it does not load.

    Example
    -------
    >>> resolve_providers(["cuda:1", "cpu"], None, False, ["CUDAExecutionProvider", "CPUExecutionProvider"])
    [('CUDAExecutionProvider', {'device_id': 1}), 'CPUExecutionProvider']
    """
    wanted = _wanted(device, providers, available)
    chosen = [spec for spec in wanted if provider_name(spec) in available]
    missing = list(dict.fromkeys(provider_name(s) for s in wanted if provider_name(s) not in available))
    if missing:
        _report_missing(missing, available, fallback, any(provider_name(s) != CPU for s in chosen))
    if CPU not in [provider_name(s) for s in chosen]:
        chosen.append(CPU)
    return chosen


def _wanted(device: str | Sequence[str], providers: Sequence[ProviderSpec] | None,
            available: Sequence[str]) -> list[ProviderSpec]:
    if providers is not None:
        if isinstance(providers, (str, tuple)):
            raise DeviceError(f"providers= takes a list, got {providers!r}",
                              fix=f"Pass providers=[{providers!r}].")
        return list(providers)
    if is_auto(device):
        return [p for p in DEVICES.values() if p in available]
    names = [device] if isinstance(device, str) else list(device)
    if not names:
        raise DeviceError("an empty device list was given", fix="Pass device='cpu' or a list of names.")
    if any(is_auto(n) for n in names):
        raise DeviceError("'auto' cannot be part of a list", fix="Pass device='auto' alone, or list devices.")
    return [parse_device(n) for n in names]


def install_hint(providers: Sequence[str]) -> str:
    """What to install to get each provider."""
    return "; ".join(f"for {device_of(p)}: {INSTALL.get(device_of(p), 'an onnxruntime build with ' + p)}"
                     for p in providers)


def _report_missing(missing: list[str], available: Sequence[str], fallback: bool, any_left: bool) -> None:
    message = (f"execution provider(s) {missing} are not available in this onnxruntime "
               f"(available: {[p for p in available if p in DEVICES.values()]})")
    if not fallback:
        raise DeviceUnavailableError(message, fix=f"Install what is needed ({install_hint(missing)}; "
                                                  f"{SWITCH}), or pass fallback=True to run on the next device.")
    target = "the next device in the list" if any_left else "the CPU"
    warn(f"{message}; running on {target}. To get them: {install_hint(missing)}.")


def warn(message: str, category: type[Warning] = DeviceWarning) -> None:
    """Warn, attributed to the first caller outside modelpack (the user's ``load`` call)."""
    frame, level = sys._getframe(1), 2  # level 2 is warn()'s caller
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


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
    from ._probe import build_report

    return build_report(probe=probe)


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The ``modelpack devices`` sub-command."""
    p = subparsers.add_parser("devices", help="which devices work here, and what to install for the others")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-probe", action="store_true", help="list what is installed without creating sessions")
    p.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Print the device report; exit status 1 when no ONNX Runtime works here."""
    import json

    report = devices(probe=not args.no_probe)
    sys.stdout.write((json.dumps(report.to_dict(), indent=2) if args.json else str(report)) + "\n")
    return 0 if report.onnxruntime else 1
