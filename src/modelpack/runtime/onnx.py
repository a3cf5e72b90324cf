"""The ONNX Runtime backend.

Every call into onnxruntime goes through :func:`translate_errors` (at session
creation) or the ``except`` clause of :meth:`OnnxBackend.run`, which turn
onnxruntime's exceptions into modelpack errors chained to the original, so no
raw onnxruntime error reaches the user. ``run`` uses a bare ``try`` rather than
a context manager because it is the hot path: a ``try`` costs nothing when no
exception is raised.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import numpy as np

from ..devices import ProviderSpec, resolve_providers
from ..errors import (DeviceError, InputError, ModelpackError, PackageError, RuntimeBackendError)

if TYPE_CHECKING:
    from ..package import Package

__all__ = ["OnnxBackend", "build_session_options", "import_onnxruntime", "open", "translate_errors"]

RUNTIME_EXTRAS = ("Install a runtime: pip install 'modelpack[cpu]' (or [gpu] / [openvino]; only "
                  "one of them per environment, their wheels overwrite each other).")


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise RuntimeBackendError("ONNX Runtime is not installed", fix=RUNTIME_EXTRAS) from exc
    return onnxruntime


def _error_map(ort: Any) -> dict[type, type[ModelpackError]]:
    state = ort.capi.onnxruntime_pybind11_state
    return {
        state.InvalidArgument: InputError,
        state.InvalidGraph: PackageError,
        state.InvalidProtobuf: PackageError,
        state.NoModel: PackageError,
        state.NoSuchFile: PackageError,
        state.ModelLoaded: RuntimeBackendError,
        state.NotImplemented: RuntimeBackendError,
        state.EPFail: DeviceError,
        state.DeviceReset: DeviceError,
        state.Fail: RuntimeBackendError,
        state.RuntimeException: RuntimeBackendError,
        state.EngineError: RuntimeBackendError,
        state.ModelLoadCanceled: RuntimeBackendError,
        state.ModelRequiresCompilation: RuntimeBackendError,
        state.NotFound: RuntimeBackendError,
    }


_FIXES: dict[type[ModelpackError], str] = {
    InputError: "Check the inputs against Model.inputs (names, dtypes, shapes).",
    PackageError: "The model file is not a model ONNX Runtime can read; re-export it.",
    DeviceError: "Try another device, or device='cpu'.",
    RuntimeBackendError: "Upgrade onnxruntime, or re-export the model with an older opset.",
}


def translate(exc: BaseException, package: str, ort: Any) -> ModelpackError:
    """The modelpack error for an onnxruntime exception (``RuntimeBackendError`` if unknown)."""
    for ort_type, ours in _error_map(ort).items():
        if isinstance(exc, ort_type):
            break
    else:
        ours = RuntimeBackendError
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ours(f"ONNX Runtime: {text}", package=package, fix=_FIXES[ours])


@contextlib.contextmanager
def translate_errors(package: str, ort: Any) -> Iterator[None]:
    """Raise onnxruntime's errors (and its plain RuntimeErrors) as modelpack errors."""
    try:
        yield
    except ModelpackError:
        raise
    except (*_error_map(ort), RuntimeError, ValueError) as exc:
        raise translate(exc, package, ort) from exc


class OnnxBackend:
    """One ONNX Runtime session over a verified package."""

    def __init__(self, session: Any, ort: Any, package: str) -> None:
        self._session = session
        self._ort = ort
        self._package = package
        # The binding's run skips InferenceSession.run's Python checks (inputs present,
        # output names defaulted), which the InputAdapter and this class already ensure:
        # on a one-row model that is a measurable share of the whole call.
        self._run = getattr(session, "_sess", session).run
        self.providers: list[str] = list(session.get_providers())
        self.output_names = [o.name for o in session.get_outputs()]

    def run(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> list[Any]:
        try:
            return self._run(outputs or self.output_names, feeds, None)  # type: ignore[no-any-return]
        except Exception as exc:
            if self._session is None:
                raise RuntimeBackendError("the model was closed", package=self._package,
                                          fix="Load the package again with modelpack.load().") from exc
            raise translate(exc, self._package, self._ort) from exc

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


def build_session_options(ort: Any, settings: Mapping[str, Any]) -> Any:
    """SessionOptions from the manifest's runtime.session settings and load()'s overrides."""
    options = ort.SessionOptions()
    levels = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
              "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
    for key, value in settings.items():
        if key == "graph_optimization_level":
            if value not in levels:
                raise DeviceError(f"graph_optimization_level {value!r} is not one of {list(levels)}",
                                  fix="Use one of those names.")
            options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, levels[value])
        elif key in ("intra_op_num_threads", "inter_op_num_threads"):
            setattr(options, key, int(value))
        elif key == "config":
            for name, entry in dict(value).items():
                options.add_session_config_entry(str(name), str(entry))
        else:
            raise DeviceError(f"unknown session setting {key!r}",
                              fix="Use graph_optimization_level, intra_op_num_threads, "
                                  "inter_op_num_threads or config.")
    return options


def _model_source(package: Package) -> Any:
    info = package.manifest.model
    if not info.external_data:
        return package.read_bytes(info.file)
    # External tensors are read by path, relative to the model file: give both a folder.
    for name in info.external_data:
        package.local_path(name)
    return str(package.local_path(info.file))


def open(package: Package, *, device: str | Sequence[str] = "cpu",
         providers: Sequence[ProviderSpec] | None = None, fallback: bool = True,
         session_options: Mapping[str, Any] | None = None, **ignored: Any) -> OnnxBackend:
    """Create an ONNX Runtime session for ``package`` on the requested device(s)."""
    ort = import_onnxruntime()
    name = str(package.path)
    chosen = resolve_providers(device, providers, fallback, ort.get_available_providers())
    settings = {**package.manifest.runtime.session, **(session_options or {})}
    options = build_session_options(ort, settings)
    with translate_errors(name, ort), warnings.catch_warnings():
        # We resolved availability ourselves; onnxruntime's own fallback warning would repeat it.
        warnings.simplefilter("ignore", UserWarning)
        session = ort.InferenceSession(_model_source(package), sess_options=options, providers=chosen)
    backend = OnnxBackend(session, ort, name)
    _check_first_choice(chosen, backend.providers, fallback, name)
    return backend


def _check_first_choice(chosen: list[ProviderSpec], actual: list[str], fallback: bool, package: str) -> None:
    first = chosen[0] if isinstance(chosen[0], str) else chosen[0][0]
    if first in actual:
        return
    from ..errors import DeviceUnavailableError

    message = f"{first} was requested and available but did not load; running on {actual}"
    if not fallback:
        raise DeviceUnavailableError(message, package=package,
                                     fix="Check the provider's libraries (CUDA, cuDNN, TensorRT versions) "
                                         "with `modelpack devices`.")
    warnings.warn(f"{package}: {message}", RuntimeWarning, stacklevel=3)
