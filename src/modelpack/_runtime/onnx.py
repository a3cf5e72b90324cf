"""The ONNX Runtime backend: sessions, the device policy, placement, IO binding.

Every call into onnxruntime goes through :func:`translate_errors` (at session
creation) or the ``except`` clause of :meth:`OnnxBackend.run`, which turn
onnxruntime's exceptions into modelpack errors chained to the original, so no
raw onnxruntime error reaches the user. ``run`` uses a bare ``try`` rather than
a context manager because it is the hot path: a ``try`` costs nothing when no
exception is raised.

Sessions are created with onnxruntime's own fallback off (``enable_fallback=0``):
it would print to stdout and retry on the CPU behind the caller's back. The
device policy of :mod:`modelpack._devices.policy` decides instead.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._devices import CPU, PlacementWarning, ProviderSpec, is_auto, provider_name, resolve_providers, warn
from .._devices.placement import of_session, off_device_message, short_error
from ..errors import (
    DeviceError,
    DeviceUnavailableError,
    DTypeError,
    InputError,
    ManifestError,
    MissingColumnError,
    ModelpackError,
    PackageError,
    RuntimeBackendError,
    UnsafePackageError,
)
from .ort_messages import explain
from .settings import (
    NO_EXTERNAL_DATA,
    SAVABLE,
    build_session_options,
    cache_dir,
    cache_path,
    cached_session,
    merge_settings,
    options_for,
    with_engine_caches,
)
from .trees import ENGINE_NAME, NO_TREES, check_engine

if TYPE_CHECKING:
    from .._package import Package
    from ..manifest import Manifest

__all__ = ["OnnxBackend", "build_session_options", "check_versions", "import_onnxruntime", "open",
           "translate_errors"]

RUNTIME_EXTRAS = ("Install a runtime: pip install 'modelpack[cpu]' (or [gpu] / [openvino]; only "
                  "one of them per environment, their wheels overwrite each other).")
_DEVICE_OUTPUTS = {"CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "cuda",
                   "DmlExecutionProvider": "dml"}


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise RuntimeBackendError("ONNX Runtime is not installed", fix=RUNTIME_EXTRAS) from exc
    return onnxruntime


def _error_map(ort: Any) -> dict[type[BaseException], type[ModelpackError]]:
    state = ort.capi.onnxruntime_pybind11_state
    names = {"InvalidArgument": InputError, "InvalidGraph": PackageError, "InvalidProtobuf": PackageError,
             "NoModel": PackageError, "NoSuchFile": PackageError, "ModelLoaded": RuntimeBackendError,
             "NotImplemented": RuntimeBackendError, "EPFail": DeviceError, "DeviceReset": DeviceError,
             "Fail": RuntimeBackendError, "RuntimeException": RuntimeBackendError,
             "EngineError": RuntimeBackendError, "ModelLoadCanceled": RuntimeBackendError,
             "ModelRequiresCompilation": RuntimeBackendError, "NotFound": RuntimeBackendError}
    # Older onnxruntime builds (e.g. the OpenVINO flavour) lack some of the newer classes.
    return {getattr(state, n): ours for n, ours in names.items() if hasattr(state, n)}


_FIXES: dict[type[ModelpackError], str] = {
    InputError: "Check the inputs against Model.inputs (names, dtypes, shapes).",
    PackageError: "The model file is not a model ONNX Runtime can read; re-export it.",
    DeviceError: "Try another device, or device='cpu'.",
    RuntimeBackendError: ("ONNX Runtime could not run the model as it is; if it was made for a newer "
                          "onnxruntime, upgrade (pip install -U onnxruntime), else re-export it."),
    UnsafePackageError: "Do not load this package; ask its author to re-export it with its data inside.",
}
# onnxruntime's own refusal of an external-data path (outside the model's folder, or none at
# all for a model given as bytes): the package asked for a file it may not read.
_EXTERNAL_PATH = "External data path"


def translate(exc: BaseException, package: str, ort: Any) -> ModelpackError:
    """The modelpack error for an onnxruntime exception (``RuntimeBackendError`` if unknown)."""
    ours = next((o for t, o in _error_map(ort).items() if isinstance(exc, t)), RuntimeBackendError)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if _EXTERNAL_PATH in text:
        ours = UnsafePackageError
    newer = _too_new(str(exc), ort)
    if newer is not None:
        return RuntimeBackendError(newer[0], package=package, fix=newer[1])
    explained = (explain(str(exc), getattr(ort, "__version__", "?"))
                 if ours in (PackageError, RuntimeBackendError) else None)
    if explained is not None:
        return ours(f"ONNX Runtime: {explained.message}", package=package, fix=explained.fix)
    return ours(f"ONNX Runtime: {text}", package=package, fix=_FIXES[ours])


_IR_TOO_NEW = re.compile(r"Unsupported model IR version: (\d+), max supported IR version: (\d+)")
_OPSET_TOO_NEW = re.compile(r"Opset (\d+) is under development.*?support for domain (\S+) is till opset (\d+)",
                            re.DOTALL)


def _too_new(text: str, ort: Any) -> tuple[str, str] | None:
    """(message, fix) when the model is newer than this onnxruntime reads, else None."""
    version = getattr(ort, "__version__", "?")
    found = _IR_TOO_NEW.search(text)
    if found:
        return (f"the model file has ONNX IR version {found[1]}; onnxruntime {version} reads up to {found[2]}",
                f"Upgrade onnxruntime (pip install -U onnxruntime) to one that reads IR version {found[1]}, "
                f"or export the model again with ir_version <= {found[2]}.")
    found = _OPSET_TOO_NEW.search(text)
    if found:
        domain = found[2].rstrip(".") if found[2].rstrip(".") != "ai.onnx" else "the default domain"
        return (f"the model file asks for opset {found[1]} of {domain}; onnxruntime {version} supports up to "
                f"opset {found[3]}",
                f"Upgrade onnxruntime (pip install -U onnxruntime) to one that supports opset {found[1]}, "
                f"or export the model again with target_opset <= {found[3]}.")
    return None


def check_versions(ir_version: int | None, opsets: Mapping[str, int] | None, package: str) -> None:
    """Refuse an IR version or opset newer than the installed onnxruntime reads (when there is one).

    Asked of onnxruntime itself, on an empty graph of the same versions: it has no
    table of what it supports, only its refusal. Without onnxruntime, nothing is checked.
    """
    try:
        ort = import_onnxruntime()
    except ModelpackError:
        return
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "versions",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    imports = {"": 7, **{"" if d == "ai.onnx" else d: v for d, v in (opsets or {}).items()}}
    probe = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in imports.items()])
    probe.ir_version = ir_version or probe.ir_version
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        ort.InferenceSession(probe.SerializeToString(), options, providers=[CPU])
    except Exception as exc:  # noqa: BLE001 - only a version refusal is reported
        newer = _too_new(str(exc), ort)
        if newer is not None:
            raise RuntimeBackendError(newer[0], package=package, fix=newer[1]) from exc


@contextlib.contextmanager
def translate_errors(package: str, ort: Any) -> Iterator[None]:
    """Raise onnxruntime's errors (and its plain RuntimeErrors) as modelpack errors."""
    caught: tuple[type[BaseException], ...] = (*_error_map(ort), RuntimeError, ValueError)
    try:
        yield
    except ModelpackError:
        raise
    except caught as exc:
        raise translate(exc, package, ort) from exc


class OnnxBackend:
    """One ONNX Runtime session over a verified package."""

    #: Which engine runs the model, and why (see :mod:`.trees.backend`).
    engine = "onnxruntime"
    engine_reason = ""

    def __init__(self, session: Any, ort: Any, package: str) -> None:
        self._session = session
        self._ort = ort
        self._package = package
        # The binding under InferenceSession.run, with the same arguments: the wrapper
        # re-validates input names and rebuilds the output list on every call (about
        # 1.5 µs, a fifth of a small model's run) after our adapter has checked them. Its
        # other duty, retrying on the CPU when a provider fails, is the placement
        # layer's. An onnxruntime without the attribute keeps the public method.
        self._run = getattr(getattr(session, "_sess", None), "run", None) or session.run
        self._placement = of_session(session)
        self.providers: list[str] = _running(session.get_providers(), self._placement)
        self.output_names = [o.name for o in session.get_outputs()]
        self.input_names = [i.name for i in session.get_inputs()]
        self._input_types = {i.name: i.type for i in session.get_inputs()}
        self._tensor_outputs = {o.name for o in session.get_outputs() if o.type.startswith("tensor")}

    def run(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> list[Any]:
        try:
            return self._run(outputs or self.output_names, feeds, None)
        except Exception as exc:
            if self._session is None:
                raise RuntimeBackendError("the model was closed", package=self._package,
                                          fix="Load the package again with modelpack.load().") from exc
            raise translate(exc, self._package, self._ort) from exc

    def placement(self) -> dict[str, dict[str, Any]] | None:
        """Nodes and operator types per provider, as this session really runs them.

        None when the installed onnxruntime keeps no record of it (before 1.24).

        Example
        -------
        >>> modelpack.load("forest.mpk", device="openvino").backend.placement()   # doctest: +SKIP
        {'OpenVINOExecutionProvider': {'nodes': 0, 'ops': {}},
         'CPUExecutionProvider': {'nodes': 2, 'ops': {'ai.onnx.ml.TreeEnsembleClassifier': 1, ...}}}
        """
        if self._placement is None:
            return None
        return {p: {"nodes": s["nodes"], "ops": dict(s["ops"])} for p, s in self._placement.items()}

    def run_bound(self, feeds: Mapping[str, Any] | Any, outputs: Sequence[str] | None = None) -> list[Any]:
        """Run on inputs that may already live on the device; outputs stay on the device.

        ``feeds`` maps input names to numpy arrays, ``onnxruntime.OrtValue``s, or any
        DLPack tensor (``torch``, ``cupy``, ``jax``), taken without a copy; a single
        value is accepted for a one-input model. Outputs are ``OrtValue``s bound on
        the device of the first provider (the GPU for CUDA), so a GPU pipeline makes
        no host round trip: ``torch.from_dlpack(value)`` or ``value.numpy()``.

        Example
        -------
        >>> (y,) = model.backend.run_bound({"x": torch.ones(2, 4, device="cuda")})   # doctest: +SKIP
        >>> torch.from_dlpack(y).device   # doctest: +SKIP
        device(type='cuda', index=0)
        """
        session = self._session
        if session is None:
            raise RuntimeBackendError("the model was closed", package=self._package,
                                      fix="Load the package again with modelpack.load().")
        names = self._check_bound_names(feeds, outputs)
        try:
            binding = session.io_binding()
            for name, value in names[0].items():
                binding.bind_ortvalue_input(name, self._input_value(name, value))
            device, device_id = self._output_device()
            for name in names[1]:
                if name in self._tensor_outputs:
                    binding.bind_output(name, device, device_id)
                else:
                    binding.bind_output(name)
            session.run_with_iobinding(binding)
            return list(binding.get_outputs())
        except ModelpackError:
            raise
        except Exception as exc:
            raise translate(exc, self._package, self._ort) from exc

    def _check_bound_names(self, feeds: Any, outputs: Sequence[str] | None) -> tuple[dict[str, Any], list[str]]:
        if not isinstance(feeds, Mapping):
            if len(self.input_names) != 1:
                raise MissingColumnError("a single value was given to a model with several inputs",
                                         expected=f"a dict with {self.input_names}", got=type(feeds).__name__,
                                         package=self._package, fix="Pass {input name: tensor}.")
            feeds = {self.input_names[0]: feeds}
        unknown = [n for n in feeds if n not in self.input_names]
        missing = [n for n in self.input_names if n not in feeds]
        if unknown or missing:
            raise MissingColumnError("inputs do not match the model", expected=str(self.input_names),
                                     got=str(list(feeds)), package=self._package,
                                     fix="Pass exactly the inputs listed in Model.inputs.")
        wanted = list(outputs) if outputs is not None else list(self.output_names)
        strange = [n for n in wanted if n not in self.output_names]
        if strange:
            raise InputError(f"unknown output(s) {strange}", expected=str(self.output_names),
                             package=self._package, fix="Ask for outputs listed in Model.outputs.")
        return dict(feeds), wanted

    def _input_value(self, name: str, value: Any) -> Any:
        """``value`` as an OrtValue sharing its memory, of the input's element type."""
        ort = self._ort
        if isinstance(value, ort.OrtValue):
            ov = value
        elif hasattr(value, "__dlpack__") and not isinstance(value, np.ndarray):
            ov = _from_dlpack(ort, value)
        else:
            ov = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value))
        if ov.data_type() != self._input_types[name]:
            raise DTypeError(expected=self._input_types[name], got=ov.data_type(), input=name,
                             package=self._package, fix="Convert the tensor to the input's type first.")
        return ov

    def _output_device(self) -> tuple[str, int]:
        first = self.providers[0] if self.providers else CPU
        device = _DEVICE_OUTPUTS.get(first, "cpu")
        if device == "cpu":
            return "cpu", 0
        options = self._session.get_provider_options().get(first, {})
        return device, int(options.get("device_id", 0) or 0)

    @property
    def session(self) -> Any:
        """The underlying ``onnxruntime.InferenceSession``, for expert use."""
        return self._session

    def close(self) -> None:
        self._session = None
        self._run = _closed

    def __getstate__(self) -> None:
        raise TypeError("an ONNX Runtime session cannot be pickled; pickle the Model, which re-opens its package")


def _closed(*args: Any) -> None:
    raise RuntimeError("closed")


def _running(providers: list[str], placement: Mapping[str, Any] | None) -> list[str]:
    """Providers that run at least one node (all the session's when that is not recorded)."""
    if placement is None:
        return list(providers)
    busy = [p for p in providers if placement.get(p, {}).get("nodes")]
    return busy or list(providers)


def _from_dlpack(ort: Any, value: Any) -> Any:
    """An OrtValue sharing the tensor's memory (onnxruntime 1.24 has it only in its C layer)."""
    if hasattr(ort.OrtValue, "from_dlpack"):
        return ort.OrtValue.from_dlpack(value)
    c_value = ort.capi._pybind_state.OrtValue.from_dlpack(value.__dlpack__(), False)
    return ort.OrtValue(c_value)


# -- opening a session ---------------------------------------------------------------------------
def _model_source(package: Package) -> Any:
    from .._formats.onnx import check_external_data

    info = package.manifest.model
    data = package.read_bytes(info.file)
    check_external_data(data, info.external_data, str(package.path))
    if not info.external_data:
        return data
    # External tensors are read by path, relative to the model file: give both a folder.
    for name in info.external_data:
        package.local_path(name)
    return str(package.local_path(info.file))


def open(package: Package, *, device: str | Sequence[str] = "cpu",
         providers: Sequence[ProviderSpec] | None = None, fallback: bool = True,
         session_options: Mapping[str, Any] | None = None, engine: str = "auto",
         **ignored: Any) -> Any:
    """Create an ONNX Runtime session for ``package`` on the requested device(s).

    See :mod:`modelpack._devices.policy` for the policy; ``session_options`` are described
    in :mod:`.settings` and ``docs/devices.md``; ``engine`` in :mod:`.trees.backend`
    (a tree ensemble may run on modelpack's tree engine, ONNX Runtime running the rest).
    """
    ort = import_onnxruntime()
    name = str(package.path)
    check_engine(engine, name)
    auto = providers is None and is_auto(device)
    plan = resolve_providers(device, providers, fallback or auto, ort.get_available_providers())
    settings = merge_settings(package.manifest.runtime.session, session_options, name)
    source = _model_source(package)
    folder = os.path.dirname(source) if isinstance(source, str) else NO_EXTERNAL_DATA
    sha256 = functools.partial(_model_sha256, package, source)
    tensor_form = None
    if engine != "onnxruntime" and isinstance(source, bytes) and b"TreeEnsemble" in source \
            and any(provider_name(s) != CPU for s in plan):
        # ONNX Runtime's tree operator is CPU-only: on a device, the forest as standard operators.
        from .trees.backend import accelerator_source

        rewritten, tensor_form = accelerator_source(source, engine=engine, ort=ort, package=name)
        if rewritten is not source:
            source = rewritten
            sha256 = functools.partial(_sha256, rewritten)
        else:
            tensor_form = None
    # Rewrites of the graph for ONNX Runtime's CPU kernels; each gives the graph's answers to the bit.
    rewritable = engine != "onnxruntime" and tensor_form is None and isinstance(source, bytes) \
        and all(provider_name(s) == CPU for s in plan)
    as_exported = None  # a session on the graph as exported, for the calls a rewrite does not pay for
    if rewritable and b"ai.onnx.ml" in source and b"TreeEnsemble" not in source:
        # ai.onnx.ml's Scaler as Sub and Mul, and short constants expanded, in the forms ONNX
        # Runtime runs several times faster (.elementwise). (A tree model's preprocessing is
        # a small part of its time, and its own session on the whole graph serves its small
        # batches.)
        from .elementwise import rewrite as elementwise

        faster = _rewritten(elementwise, source)
        if faster is not None:
            as_exported = _session_maker(ort, source, settings, sha256, folder)
            source = faster
            sha256 = functools.partial(_sha256, source)
    codes: dict[str, str] = {}
    strings = [s.name for s in package.manifest.inputs if s.dtype == "string"]
    if strings and rewritable:
        # String columns run on their distinct values where the graph allows it (.coded).
        from .coded import rewrite

        found = _rewritten(rewrite, source, strings)
        if found is not None:
            # Calls without a coded column (one record included) run the graph as exported.
            uncoded = as_exported or _session_maker(ort, source, settings, sha256, folder)
            as_exported = None
            source, codes = found
            sha256 = functools.partial(_sha256, source)
    make = _session_maker(ort, source, settings, sha256, folder)
    with translate_errors(name, ort), warnings.catch_warnings():
        # Availability was resolved above; onnxruntime's own warning about it would repeat it.
        warnings.simplefilter("ignore", UserWarning)
        session = _negotiate(make, plan, strict=not fallback and not auto, auto=auto, package=name, ort=ort)
    backend = OnnxBackend(session, ort, name)
    try:
        _check_interface(package.manifest, session, name, hidden=set(codes.values()))
    except BaseException:
        backend.close()
        raise
    requested = list(dict.fromkeys(provider_name(s) for s in plan if provider_name(s) != CPU))
    message = None if auto or backend._placement is None else off_device_message(backend._placement, requested)
    if message:
        warn(f"{name}: {message}. Model.providers lists what runs.", PlacementWarning)
    if tensor_form is not None:
        backend.engine, backend.engine_reason = ENGINE_NAME, tensor_form
        return backend
    backend = _with_engine(backend, source, engine=engine, ort=ort, settings=settings, folder=folder, package=name)
    if codes:
        from .coded import CodedBackend

        whole = None
        if backend.engine != ENGINE_NAME:
            # Columns given whole (object arrays, one record) gain nothing from codes: they run
            # the graph as exported, without the Gathers. (A tree model's own whole-graph session
            # serves its small batches already; a second one would double its forest's memory.)
            whole = _second_backend(uncoded, plan, backend, ort, name)
        return CodedBackend(backend, codes, exported=whole)
    if as_exported is not None:
        from .elementwise import ByRows

        return ByRows(backend, _second_backend(as_exported, plan, backend, ort, name))
    return backend


def _second_backend(make: Callable[[list[ProviderSpec]], Any], plan: list[ProviderSpec], first: Any,
                    ort: Any, package: str) -> OnnxBackend:
    """A backend on another form of the graph, beside ``first`` (closed if this one fails)."""
    try:
        with translate_errors(package, ort), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return OnnxBackend(make(plan), ort, package)
    except BaseException:
        first.close()
        raise


def _rewritten(rewrite: Callable[..., Any], source: bytes, *args: Any) -> Any:
    """What ``rewrite`` makes of the graph; None where it takes nothing, or cannot read the graph."""
    try:
        return rewrite(source, *args)
    except Exception:  # noqa: BLE001  (a graph too broken to read here: ONNX Runtime says why when it loads it)
        return None


def _with_engine(backend: OnnxBackend, source: bytes | str, *, engine: str, ort: Any,
                 settings: Mapping[str, Any], folder: str, package: str) -> Any:
    """The backend, its tree ensemble on the tree engine where :mod:`.trees.backend` takes it."""
    if engine == "auto" and isinstance(source, bytes) and b"TreeEnsemble" not in source:
        backend.engine_reason = NO_TREES
        return backend
    from .._devices.cgroup import usable_cpus
    from .trees.backend import wrap

    threads = settings.get("intra_op_num_threads") or usable_cpus()
    # The parts of the graph around the ensemble run just before and after the engine's loops:
    # a worker that spins on after a part takes a core from them (measured on a PMML random
    # forest, 100k rows, 2 threads: its loop 16 ms with sleeping workers, 30 ms with spinning).
    parts = {**settings, "config": {**settings.get("config", {}), "session.intra_op.allow_spinning": "0"}}
    try:
        return wrap(backend, source if isinstance(source, bytes) else None, engine=engine, ort=ort,
                    options=options_for(ort, parts, folder), threads=int(threads),
                    on_cpu=backend.providers == [CPU], package=package)
    except BaseException:
        backend.close()
        raise


#: ONNX Runtime's element type names that differ from the manifest's.
_ORT_DTYPES = {"float": "float32", "double": "float64"}


def _check_interface(manifest: Manifest, session: Any, package: str, hidden: set[str] | None = None) -> None:
    """The manifest's inputs and outputs must be the graph's, in its order and dtypes.

    Outputs are returned by position and named from the manifest, so a manifest
    listing them otherwise would label one output with another's name. ``hidden``:
    inputs added at load (:mod:`.coded`), which the manifest does not list.
    """
    inputs = [i for i in session.get_inputs() if not hidden or i.name not in hidden]
    for what, declared, actual in (("inputs", manifest.inputs, inputs),
                                   ("outputs", manifest.outputs, session.get_outputs())):
        names, graph = [s.name for s in declared], [a.name for a in actual]
        if names != graph:
            raise ManifestError(f"the manifest lists the {what} {names[:10]}, the model file has {graph[:10]}",
                                package=package, fix=_REEXPORT)
        for spec, arg in zip(declared, actual, strict=True):
            kind, _, element = arg.type.partition("(")
            element = element.rstrip(")")
            if spec.kind == "tensor" and kind == "tensor" and _ORT_DTYPES.get(element, element) != spec.dtype:
                raise ManifestError(f"the manifest says {what[:-1]} {spec.name!r} is {spec.dtype}, the model file "
                                    f"says {_ORT_DTYPES.get(element, element)}", package=package, fix=_REEXPORT)


_REEXPORT = "Do not use this package as it is; ask its author to re-export it."


def _negotiate(make: Callable[[list[ProviderSpec]], Any], plan: list[ProviderSpec], *, strict: bool,
               auto: bool, package: str, ort: Any) -> Any:
    """A session on the first workable providers of ``plan``, under the fallback policy."""
    head, spare = _split_duplicates(plan)
    wanted = [provider_name(s) for s in head if provider_name(s) != CPU]
    while True:
        try:
            session = make(head)
        except Exception as exc:
            culprit = next((provider_name(s) for s in head if provider_name(s) != CPU), None)
            if culprit is None:
                raise
            reason = f"fails on this model: {short_error(exc)}"
            if strict:
                _raise_model_error_if_cpu_fails_too(make, package, ort, exc)
            _give_up(_label(head, culprit), reason, strict=strict, quiet=auto, package=package, cause=exc)
            head, spare = _replace(head, spare, culprit)
            continue
        loaded = session.get_providers()
        absent = [provider_name(s) for s in head if provider_name(s) not in loaded]
        if not absent:
            break
        for provider in absent:
            _give_up(_label(head, provider), "did not load (its libraries or device are missing here; run "
                     "`modelpack devices` to see why)", strict=strict, quiet=auto, package=package)
        if not any(p == provider_name(s) for p in absent for s in spare):
            break
        head, spare = _replace(head, spare, absent[0])
    if auto and wanted and not any(p in session.get_providers() for p in wanted):
        warn(f"{package}: device='auto' found {wanted} installed but none of them runs here; running on the "
             "CPU. Run `modelpack devices` to see why.")
    return session


def _label(plan: list[ProviderSpec], provider: str) -> str:
    """The provider with the options it was asked with, e.g. "OpenVINOExecutionProvider (device_type=GPU)"."""
    spec = next(s for s in plan if provider_name(s) == provider)
    if isinstance(spec, str) or not spec[1]:
        return provider
    return f"{provider} ({', '.join(f'{k}={v}' for k, v in spec[1].items())})"


def _split_duplicates(plan: list[ProviderSpec]) -> tuple[list[ProviderSpec], list[ProviderSpec]]:
    """(first spec of each provider, later specs kept as fallbacks); a session takes a provider once."""
    head: list[ProviderSpec] = []
    spare: list[ProviderSpec] = []
    for spec in plan:
        (spare if provider_name(spec) in [provider_name(s) for s in head] else head).append(spec)
    return head, spare


def _replace(head: list[ProviderSpec], spare: list[ProviderSpec],
             provider: str) -> tuple[list[ProviderSpec], list[ProviderSpec]]:
    """Drop ``provider`` from ``head``, putting its next spare spec (if any) in its place."""
    index = [provider_name(s) for s in head].index(provider)
    following = next((s for s in spare if provider_name(s) == provider), None)
    rest = [s for s in spare if s is not following]
    head = head[:index] + ([following] if following is not None else []) + head[index + 1:]
    if CPU not in [provider_name(s) for s in head]:
        head.append(CPU)
    return head, rest


def _give_up(provider: str, reason: str, *, strict: bool, quiet: bool, package: str,
             cause: BaseException | None = None) -> None:
    message = f"{provider} {reason}"
    if strict:
        raise DeviceUnavailableError(message, package=package,
                                     fix="Pass fallback=True to run on the next device, or fix the device "
                                         "(`modelpack devices` tells what is missing).") from cause
    if not quiet:
        warn(f"{package}: {message}; running on the next device in the list.")


def _raise_model_error_if_cpu_fails_too(make: Callable[[list[ProviderSpec]], Any], package: str, ort: Any,
                                        first: BaseException) -> None:
    """In strict mode, blame the provider only if the CPU can run the model."""
    try:
        make([CPU])
    except Exception as exc:
        raise translate(exc, package, ort) from first


def _session_maker(ort: Any, source: bytes | str, settings: Mapping[str, Any],
                   sha256: Callable[[], str], folder: str) -> Callable[[list[ProviderSpec]], Any]:
    def make(providers: list[ProviderSpec]) -> Any:
        cache = settings.get("optimized_model_cache")
        if cache and isinstance(source, bytes):
            cache_folder = cache_dir(cache)
            providers = with_engine_caches(providers, cache_folder)
            if all(provider_name(s) in SAVABLE for s in providers):
                path = cache_path(cache_folder, sha256(), providers, ort.__version__, settings)
                return cached_session(ort, source, path, providers, settings)
        options = options_for(ort, settings, folder)
        return ort.InferenceSession(source, options, providers=providers, enable_fallback=0)
    return make


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _model_sha256(package: Package, source: bytes | str) -> str:
    entry = next((f for f in package.manifest.files if f.path == package.manifest.model.file), None)
    if entry is not None:
        return entry.sha256
    return hashlib.sha256(source if isinstance(source, bytes) else b"").hexdigest()
