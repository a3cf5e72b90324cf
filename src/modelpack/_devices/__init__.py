"""Devices: names and providers, the fallback policy, the device report, and placement.

* :mod:`.names`: device names <-> ONNX Runtime execution providers, parsing;
* :mod:`.policy`: which providers a session asks for, fallback and its warnings;
* :mod:`.report`: :func:`devices`, what this machine can run on, proven;
* :mod:`.placement`: which provider runs which operators, as run and as forecast;
* :mod:`.cgroup`: how many CPUs this process may really use.

Nothing here imports a runtime at import time: ``import modelpack`` imports this part.
"""

from __future__ import annotations

from . import placement
from .cgroup import usable_cpus
from .names import (
    CPU,
    DEVICES,
    INSTALL,
    SWITCH,
    ProviderSpec,
    device_of,
    install_hint,
    is_auto,
    parse_device,
    platform_gpu,
    provider_name,
)
from .policy import DeviceWarning, PlacementWarning, resolve_providers, warn
from .report import DeviceReport, devices

__all__ = ["CPU", "DEVICES", "INSTALL", "SWITCH", "DeviceReport", "DeviceWarning", "PlacementWarning",
           "ProviderSpec", "device_of", "devices", "placement", "install_hint", "is_auto", "parse_device", "platform_gpu",
           "provider_name",
           "resolve_providers", "usable_cpus", "warn"]
