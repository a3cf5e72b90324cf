"""Which execution provider runs which operators of a model.

ONNX Runtime splits a graph between the providers of a session: each node goes
to the first provider in the list that has a kernel for it, the rest to the CPU.
A tree ensemble loaded with ``device="cuda"`` therefore runs wholly on the CPU,
and a session that lists CUDA first says nothing about it. Two views are
given here, both in one shape, ``{provider: {"nodes": n, "ops": {op_type: count}}}``:

* :func:`of_session`: what a live session really does, read from ONNX Runtime's
  record of its graph assignment (session config entry
  ``session.record_ep_graph_assignment_info``, onnxruntime 1.24 and later).
  The graph is the optimized one, so fused operators (``Gemm`` for
  ``MatMul`` + ``Add``) appear as such.
* :func:`forecast`: for a model file, what each provider installed here would
  take of the model's own (unoptimized) operators. It is computed when a package
  is written and stored in the manifest as ``runtime.placement``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from .names import CPU, DEVICES

__all__ = ["RECORD", "describe", "forecast", "of_session", "off_device_message", "short_error"]

#: Session config entry that makes ONNX Runtime record each node's provider.
RECORD = "session.record_ep_graph_assignment_info"
_STANDARD_DOMAINS = ("", "ai.onnx")

Placement = dict[str, dict[str, Any]]


def supported(ort: Any) -> bool:
    """Whether this onnxruntime can report per-node placement."""
    return hasattr(ort.InferenceSession, "get_provider_graph_assignment_info")


def op_name(domain: str, op_type: str) -> str:
    """``MatMul`` for standard operators, ``ai.onnx.ml.TreeEnsembleClassifier`` for the others."""
    return op_type if domain in _STANDARD_DOMAINS else f"{domain}.{op_type}"


def of_session(session: Any) -> Placement | None:
    """Nodes and operator types per provider of a session created with :data:`RECORD` set.

    Providers appear in the session's order of preference; one that was
    registered but took no node is listed with ``nodes`` 0. Returns None when
    this onnxruntime keeps no record.

    Example
    -------
    >>> of_session(session)                                   # doctest: +SKIP
    {'OpenVINOExecutionProvider': {'nodes': 3, 'ops': {'Add': 1, 'MatMul': 1, 'Relu': 1}},
     'CPUExecutionProvider': {'nodes': 1, 'ops': {'ai.onnx.ml.LinearRegressor': 1}}}
    """
    try:
        subgraphs = session.get_provider_graph_assignment_info()
    except Exception:  # noqa: BLE001 - too old, or created without RECORD: no record either way
        return None
    ops: dict[str, dict[str, int]] = {p: {} for p in session.get_providers()}
    for sub in subgraphs:
        counts = ops.setdefault(sub.ep_name, {})
        for node in sub.get_nodes():
            name = op_name(node.domain, node.op_type)
            counts[name] = counts.get(name, 0) + 1
    return {p: {"nodes": sum(c.values()), "ops": dict(sorted(c.items()))} for p, c in ops.items()}


def off_device_message(placement: Placement, requested: Sequence[str]) -> str | None:
    """What of the model runs on the CPU although ``requested`` providers were loaded for it."""
    cpu = placement.get(CPU, {"nodes": 0, "ops": {}})
    if not cpu["nodes"]:
        return None
    wanted = [p for p in requested if p != CPU and p in placement]
    if not wanted:
        return None
    total = sum(share["nodes"] for share in placement.values())
    ops = ", ".join(cpu["ops"])
    idle = [p for p in wanted if not placement[p]["nodes"]]
    if len(idle) == len(wanted):
        nodes = "its only node runs" if total == 1 else f"all {total} nodes run"
        return f"{' and '.join(wanted)} loaded but has no kernel for any operator of this model: {nodes} on the CPU ({ops})"
    return f"{cpu['nodes']} of {total} nodes have no kernel on {' or '.join(wanted)} and run on the CPU ({ops})"


def short_error(exc: BaseException, limit: int = 300) -> str:
    """The telling line of an onnxruntime error: its last non-empty line (the first is a C++ location)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[-1] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def forecast(model: bytes | str | os.PathLike[str], *, devices: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Which operators of ``model`` each provider installed here would run.

    Parameters
    ----------
    model:
        The ONNX model as bytes, or a path (needed when tensors live in external files).
    devices:
        Device names to forecast for; default every device whose provider is installed.

    Returns
    -------
    dict or None
        ``{"onnxruntime": version, "nodes": n, "devices": {device: placement}}``, where a
        device's entry is ``{provider: {"nodes", "ops"}}`` or ``{"error": reason}``;
        None when onnxruntime is not installed or too old to tell.

    Example
    -------
    >>> forecast(open("mlp.onnx", "rb").read())["devices"]["cpu"]      # doctest: +SKIP
    {'CPUExecutionProvider': {'nodes': 5, 'ops': {'Add': 2, 'MatMul': 2, 'Relu': 1}}}
    """
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    if not supported(ort):
        return None
    available = ort.get_available_providers()
    names = list(devices) if devices is not None else [d for d, p in DEVICES.items() if p in available]
    source = model if isinstance(model, bytes) else os.fspath(model)
    result: dict[str, Any] = {"onnxruntime": ort.__version__, "nodes": 0, "devices": {}}
    for name in names:
        entry = _forecast_one(ort, source, DEVICES[name], available)
        result["devices"][name] = entry
        result["nodes"] = max(result["nodes"], sum(s["nodes"] for s in entry.values() if isinstance(s, dict)))
    return result


def _forecast_one(ort: Any, source: bytes | str, provider: str, available: Sequence[str]) -> dict[str, Any]:
    if provider not in available:
        return {"error": f"{provider} is not installed here"}
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4  # a failure is recorded in the forecast itself
    options.add_session_config_entry(RECORD, "1")
    providers = [provider] if provider == CPU else [provider, CPU]
    try:
        session = ort.InferenceSession(source, options, providers=providers, enable_fallback=0)
    except Exception as exc:  # noqa: BLE001 - any failure of a provider is the forecast's answer
        return {"error": short_error(exc)}
    if provider not in session.get_providers():
        return {"error": f"{provider} did not load here (its libraries or device are missing)"}
    return of_session(session) or {}


def describe(forecast: Mapping[str, Any] | None) -> str:
    """One line per device of a stored forecast, for ``modelpack inspect``.

    Example
    -------
    >>> print(describe({"onnxruntime": "1.32.0", "nodes": 4, "devices": {"openvino": {
    ...     "OpenVINOExecutionProvider": {"nodes": 3, "ops": {"Add": 1, "MatMul": 1, "Relu": 1}},
    ...     "CPUExecutionProvider": {"nodes": 1, "ops": {"ai.onnx.ml.LinearRegressor": 1}}}}}))
    placement forecast (onnxruntime 1.32.0, 4 nodes):
      openvino: 3 nodes on OpenVINOExecutionProvider (Add, MatMul, Relu); 1 on the CPU (ai.onnx.ml.LinearRegressor)
    """
    if not forecast:
        return "placement forecast: none (no onnxruntime when the package was written)"
    lines = [f"placement forecast (onnxruntime {forecast.get('onnxruntime', '?')}, "
             f"{forecast.get('nodes', '?')} nodes):"]
    devices = dict(forecast.get("devices", {}))
    for device, entry in devices.items():
        lines.append(f"  {device}: {_describe_entry(device, entry)}")
    trees = forecast.get("trees")
    if isinstance(trees, Mapping):
        lines.append(f"  tree ensemble, engine='auto' on the CPU: {trees.get('engine', '?')} "
                     f"({trees.get('reason', '')}); above: where ONNX Runtime's tree operator would run")
    elif any(op.startswith("ai.onnx.ml.TreeEnsemble") for entry in devices.values() if isinstance(entry, Mapping)
             for share in entry.values() if isinstance(share, Mapping) for op in share.get("ops", {})):
        lines.append("  tree ensemble: above is where ONNX Runtime's tree operator would run; at load, "
                     "engine='auto' may give it to modelpack's tree engine (Model.engine says which runs)")
    return "\n".join(lines)


def _describe_entry(device: str, entry: Mapping[str, Any]) -> str:
    if "error" in entry:
        return f"fails here: {entry['error']}"
    parts: list[str] = []
    for provider, share in entry.items():
        if not share.get("nodes"):
            continue
        where = "on the CPU" if provider == CPU and device != "cpu" else f"on {provider}"
        prefix = f"{share['nodes']} nodes" if not parts else str(share["nodes"])
        parts.append(f"{prefix} {where} ({', '.join(share.get('ops', {}))})")
    return "; ".join(parts) or "no nodes"
