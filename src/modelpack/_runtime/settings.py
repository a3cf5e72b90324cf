"""ONNX Runtime session settings: from the package, from ``load()``, and the optimized-model cache.

Settings stored in a package (manifest ``runtime.session``) come from whoever
wrote the package, so they are held to what cannot touch the machine: thread
counts are capped at the CPUs this process may use, raw config entries are
limited to an allow-list (others can make ONNX Runtime write files at a path of
the package's choosing), and the cache can only be switched on, never pointed
somewhere. ``session_options=`` given to ``load()`` is the caller's own and may
set anything below.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._atomic import replacing_path
from .._devices import ProviderSpec, usable_cpus, warn
from .._devices.placement import RECORD, supported
from ..errors import DeviceError, ManifestError

__all__ = ["NO_EXTERNAL_DATA", "SETTINGS", "build_session_options", "cache_dir", "cache_path", "cached_session", "merge_settings", "storable",
           "options_for", "with_engine_caches"]

LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
          "all": "ORT_ENABLE_ALL"}
MODES = {"sequential": "ORT_SEQUENTIAL", "parallel": "ORT_PARALLEL"}
SETTINGS = ("intra_op_num_threads", "inter_op_num_threads", "graph_optimization_level", "execution_mode",
            "enable_cpu_mem_arena", "enable_mem_pattern", "log_severity_level", "optimized_model_cache", "config")
# Config entries a package may set: they tune speed and numerics, and read or write no file.
PACKAGE_CONFIG = frozenset({
    "session.intra_op.allow_spinning", "session.inter_op.allow_spinning", "session.set_denormal_as_zero",
    "session.disable_prepacking", "session.use_device_allocator_for_initializers", "session.dynamic_block_base",
    "session.disable_quant_qdq", "session.enable_quant_qdq_cleanup", "session.disable_double_qdq_remover",
    "session.qdq_matmulnbits_accuracy_level", "session.disable_aot_function_inlining",
    "session.disable_cpu_ep_fallback", "session.force_spinning_stop",
})
#: Providers whose optimized graph ONNX Runtime can save: the others compile nodes it cannot serialize.
SAVABLE = frozenset({"CPUExecutionProvider", "CUDAExecutionProvider", "ROCMExecutionProvider"})


def merge_settings(stored: Mapping[str, Any], overrides: Mapping[str, Any] | None, package: str) -> dict[str, Any]:
    """The package's settings, made safe, then the caller's overrides on top."""
    settings = {k: v for k, v in _from_package(dict(stored), package).items()}
    for key, value in dict(overrides or {}).items():
        if key == "config" and isinstance(value, Mapping):
            settings["config"] = {**settings.get("config", {}), **value}
        else:
            settings[key] = value
    return settings


def storable(session: Mapping[str, Any]) -> dict[str, Any]:
    """``session`` as a package may store it, or a ManifestError naming the first setting it may not.

    Example
    -------
    >>> storable({"graph_optimization_level": "all", "intra_op_num_threads": 4})
    {'graph_optimization_level': 'all', 'intra_op_num_threads': 4}
    """
    if not isinstance(session, Mapping):
        raise ManifestError(f"session settings must be a mapping, not {type(session).__name__}",
                            fix="Pass e.g. session={'intra_op_num_threads': 4}.")
    for key, value in session.items():
        problem = _stored_problem(key, value)
        if problem is None and key == "config":
            refused = sorted(k for k in value if k not in PACKAGE_CONFIG)
            problem = f"holds {refused[:5]}, which a package may not set" if refused else None
        if problem is None and key == "optimized_model_cache" and not isinstance(value, bool):
            problem = "is not true or false (only load() may name a cache folder)"
        if problem:
            raise ManifestError(f"session setting {key} = {_shown(value)} {problem}",
                                fix=f"A package may store {', '.join(SETTINGS)}; config entries among "
                                    f"{', '.join(sorted(PACKAGE_CONFIG))}.")
    return dict(session)


def _from_package(stored: dict[str, Any], package: str) -> dict[str, Any]:
    for key, value in stored.items():
        problem = _stored_problem(key, value)
        if problem:
            raise ManifestError(f"runtime.session.{key} = {_shown(value)} {problem}", package=package,
                                fix="Do not load this package as it is; ask its author to re-export it "
                                    f"(runtime.session may hold {', '.join(SETTINGS)}).")
    config = dict(stored.get("config") or {})
    refused = sorted(k for k in config if k not in PACKAGE_CONFIG)
    if refused:
        warn(f"{package}: ignoring session config entries {refused} stored in the package: a package may only "
             "set speed and numeric entries. Pass them with load(..., session_options={'config': {...}}) "
             "if you trust them.")
        stored["config"] = {k: v for k, v in config.items() if k not in refused}
    cache = stored.get("optimized_model_cache")
    if cache is not None and not isinstance(cache, bool):
        warn(f"{package}: the package names a cache folder ({cache!r}); only load() may choose one, "
             "so the default cache folder is used.")
        stored["optimized_model_cache"] = True
    limit = usable_cpus()
    for key in ("intra_op_num_threads", "inter_op_num_threads"):
        if isinstance(stored.get(key), int) and stored[key] > limit:
            stored[key] = limit  # a package cannot ask for more threads than this process may run
    return stored


#: onnxruntime takes thread counts and severities as C ints.
_MAX_INT = 2**31 - 1


def _problem(key: str, value: Any, *, stored: bool = False) -> str | None:
    """What is wrong with ``value`` for the setting ``key``, or None.

    One check for settings from a package and from ``load()``: a package's JSON
    can hold any type, and onnxruntime answers a wrong one with a TypeError.
    """
    if key == "graph_optimization_level":
        return None if isinstance(value, str) and value in LEVELS else f"is not one of {list(LEVELS)}"
    if key == "execution_mode":
        return None if isinstance(value, str) and value in MODES else f"is not one of {list(MODES)}"
    if key in ("intra_op_num_threads", "inter_op_num_threads", "log_severity_level"):
        high = 4 if key == "log_severity_level" else _MAX_INT
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
            return f"is not a whole number from 0 to {high}"
        return None
    if key in ("enable_cpu_mem_arena", "enable_mem_pattern"):
        return None if isinstance(value, bool) else "is not true or false"
    if key == "config":
        if not isinstance(value, Mapping):
            return "is not a mapping of config entry names to values"
        odd = [k for k, v in value.items() if not isinstance(k, str)
               or not isinstance(v, (str, int, float)) or isinstance(v, bool)]
        return f"holds entries {odd[:5]} that are not name: string or number" if odd else None
    if key == "optimized_model_cache" and stored:
        return None if value is None or isinstance(value, (bool, str)) else "is not true or false"
    return None


def _stored_problem(key: str, value: Any) -> str | None:
    """What is wrong with a setting as a package holds it, or None."""
    return "is not a setting modelpack knows" if key not in SETTINGS else _problem(key, value, stored=True)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def build_session_options(ort: Any, settings: Mapping[str, Any]) -> Any:
    """SessionOptions from merged settings; threads default to the CPUs this process may use.

    Example
    -------
    >>> import onnxruntime as ort
    >>> build_session_options(ort, {"graph_optimization_level": "basic"}).graph_optimization_level
    <GraphOptimizationLevel.ORT_ENABLE_BASIC: 1>
    """
    options = ort.SessionOptions()
    options.log_severity_level = 3  # warnings are replaced by modelpack's own; errors are raised anyway
    unknown = [k for k in settings if k not in SETTINGS]
    if unknown:
        raise DeviceError(f"unknown session setting(s) {unknown}", fix=f"Use one of {', '.join(SETTINGS)}.")
    _apply_threads(options, settings)
    for key, value in settings.items():
        _apply(ort, options, key, value)
    return options


def _apply_threads(options: Any, settings: Mapping[str, Any]) -> None:
    if "intra_op_num_threads" in settings:
        return
    cpus = usable_cpus()
    # onnxruntime sizes its pool from the host's cores; in a container with a CPU quota that
    # oversubscribes the quota and the kernel throttles the whole pool.
    if cpus < (os.cpu_count() or cpus):
        options.intra_op_num_threads = cpus


def _apply(ort: Any, options: Any, key: str, value: Any) -> None:
    problem = _problem(key, value)
    if problem:
        raise DeviceError(f"session setting {key} = {_shown(value)} {problem}", fix=_FIXES.get(key, "See load()."))
    if key == "graph_optimization_level":
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[value])
    elif key == "execution_mode":
        options.execution_mode = getattr(ort.ExecutionMode, MODES[value])
    elif key in ("intra_op_num_threads", "inter_op_num_threads", "log_severity_level", "enable_cpu_mem_arena",
                 "enable_mem_pattern"):
        setattr(options, key, value)
    elif key == "config":
        for name, entry in value.items():
            options.add_session_config_entry(name, str(entry))


_FIXES = {
    "graph_optimization_level": f"Use one of {', '.join(LEVELS)}.",
    "execution_mode": f"Use one of {', '.join(MODES)}.",
    "intra_op_num_threads": "Use 0 to let onnxruntime decide.",
    "inter_op_num_threads": "Use 0 to let onnxruntime decide.",
    "log_severity_level": "Use 0 (verbose) to 4 (fatal only).",
    "enable_cpu_mem_arena": "Pass True or False.",
    "enable_mem_pattern": "Pass True or False.",
    "config": "Pass {'session.config.key': 'value'}.",
}


# -- the optimized-model cache -------------------------------------------------------------------
def cache_dir(setting: Any = True) -> Path:
    """The folder of optimized models: the setting if a path, else $MODELPACK_CACHE_DIR or the user cache."""
    if isinstance(setting, (str, os.PathLike)):
        return Path(setting).expanduser()
    if os.environ.get("MODELPACK_CACHE_DIR"):
        return Path(os.environ["MODELPACK_CACHE_DIR"]).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
        return base / "modelpack" / "Cache" / "optimized"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "modelpack" / "optimized"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modelpack" / "optimized"


def cache_path(folder: Path, model_sha256: str, providers: list[Any], ort_version: str,
               settings: Mapping[str, Any]) -> Path:
    """Where the optimized model for this model, providers, onnxruntime and CPU lives.

    The key holds the CPU's model and flags: graphs optimized at level "all" use
    instruction-set-specific layouts that another CPU cannot run.
    """
    key = json.dumps({"model": model_sha256, "providers": providers, "ort": ort_version,
                      "level": settings.get("graph_optimization_level", "all"),
                      "config": settings.get("config", {}), "cpu": _cpu_fingerprint()},
                     sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    first = providers[0] if isinstance(providers[0], str) else providers[0][0]
    return folder / f"{model_sha256[:16]}-{first.removesuffix('ExecutionProvider').lower()}-{digest}.onnx"


def _cpu_fingerprint() -> str:
    text = platform.machine() + platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(("model name", "flags", "Features")):
                    text += line
                if line.strip() == "":
                    break  # the first processor is enough
    except OSError:
        pass
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# onnxruntime's key for where a model given as bytes may read external data from.
EXTERNAL_FOLDER = "session.model_external_initializers_file_folder_path"
# A folder that cannot exist (a child of the null device): for a model without external data,
# so that nothing a graph names is resolved against the working directory.
NO_EXTERNAL_DATA = os.path.join(os.devnull, "no-external-data")


def options_for(ort: Any, settings: Mapping[str, Any], external_folder: str = NO_EXTERNAL_DATA) -> Any:
    """Session options from settings, external data confined to ``external_folder``.

    The graph's locations were checked before (``_formats.onnx.check_external_data``);
    this is the second lock: onnxruntime itself is told where the only data may be.
    """
    options = build_session_options(ort, settings)
    options.add_session_config_entry(EXTERNAL_FOLDER, external_folder)
    if supported(ort):
        options.add_session_config_entry(RECORD, "1")
    return options


def cached_session(ort: Any, source: bytes, path: Any, providers: list[ProviderSpec],
                   settings: Mapping[str, Any]) -> Any:
    """Load the optimized model from the cache, or create the session and fill the cache."""
    if path.is_file():
        options = options_for(ort, settings)
        # Optimized already: running the optimizers again would only cost time.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            return ort.InferenceSession(str(path), options, providers=providers, enable_fallback=0)
        except Exception:  # noqa: BLE001 - a damaged cache entry is rebuilt below
            path.unlink(missing_ok=True)
    options = options_for(ort, settings)
    try:
        with replacing_path(path) as temporary:
            options.optimized_model_filepath = str(temporary)
            return ort.InferenceSession(source, options, providers=providers, enable_fallback=0)
    except OSError:  # an unwritable cache folder only costs the speed-up
        options.optimized_model_filepath = ""
        return ort.InferenceSession(source, options, providers=providers, enable_fallback=0)


def with_engine_caches(providers: list[ProviderSpec], folder: Any) -> list[ProviderSpec]:
    """Point OpenVINO's blob cache and TensorRT's engine cache into the cache folder, unless set."""
    out: list[ProviderSpec] = []
    for spec in providers:
        name, options = (spec, {}) if isinstance(spec, str) else (spec[0], dict(spec[1]))
        if name == "OpenVINOExecutionProvider" and "cache_dir" not in options:
            options["cache_dir"] = str(folder / "openvino")
        elif name == "TensorrtExecutionProvider" and "trt_engine_cache_path" not in options:
            options.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(folder / "tensorrt"))
        out.append((name, options) if options else name)
    return out
