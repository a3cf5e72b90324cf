"""The device policy: which providers a session asks for, and what happens when one is missing.

ONNX Runtime on its own silently falls back to the CPU when a requested provider
is missing or fails; here that is a decision:

* ``fallback=True``: a device that is not installed, does not load or fails on
  the model is dropped with a :class:`DeviceWarning`, and the session runs on the
  rest of the list (the CPU in the end);
* ``fallback=False``: every device named must run the session, else a
  :class:`~modelpack.DeviceUnavailableError` names what is installed and what to
  install.

Operators that have no kernel on a device that did load run on the CPU in both
modes; a :class:`PlacementWarning` names them. ``device="auto"`` takes every
installed accelerator, best first, and never fails over one.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from types import FrameType

from ..errors import DeviceError, DeviceUnavailableError
from .names import (
    CPU,
    DEVICES,
    SWITCH,
    ProviderSpec,
    install_hint,
    is_auto,
    parse_device,
    platform_gpu,
    provider_name,
)

__all__ = ["DeviceWarning", "PlacementWarning", "resolve_providers", "warn"]

# Warnings are attributed to the first frame outside this folder's package, modelpack.
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


class DeviceWarning(RuntimeWarning):
    """A requested device was dropped: not installed, not loaded, or failing on the model."""


class PlacementWarning(DeviceWarning):
    """The requested device loaded, but some (or all) operators run on the CPU."""


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
    return [parse_device(platform_gpu(n, available)) for n in names]


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
    frame: FrameType | None = sys._getframe(1)
    level = 2  # warn()'s caller
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
