"""The served models: protocol metadata, request checks against the manifest, running.

Everything here is synchronous and runs on a worker thread, never on the event
loop: decoding a large body, the model run and encoding the answer all take CPU.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from ..errors import InputError, MissingColumnError, ModelpackError, ShapeError
from ..manifest import TensorSpec
from ._classification import classify
from ._errors import ModelNotFoundError, ModelUnavailableError, RequestError
from ._schemas import PredictRequest
from ._v2 import (
    InferRequest,
    OutputTensor,
    datatype_of,
    decode_infer_request,
    encode_infer_response,
    input_metadata,
    output_metadata,
    to_tensor,
    validate_json,
)

if TYPE_CHECKING:
    from .._model import Model

__all__ = ["Loader", "ModelSource", "Repository", "ServedModel", "open_models", "package_signature"]

log = logging.getLogger("modelpack.serve")

#: What the server is given to serve: a package path, or a loaded :class:`~modelpack.Model`.
ModelSource = Union[str, Path, "Model"]

_PLATFORMS = {"onnx": "onnxruntime_onnx", "pmml": "pmml"}


class ServedModel:
    """One loaded model behind the protocol."""

    def __init__(self, model: Model, *, owned: bool, name: str | None = None) -> None:
        manifest = model.manifest
        self.model = model
        self.owned = owned
        self.name = name or manifest.name
        self.version = manifest.version
        self._inputs = {s.name: s for s in manifest.inputs}
        self._input_types = {s.name: input_metadata(s)[0] for s in manifest.inputs}
        self._outputs = {s.name: s for s in manifest.outputs}
        self._has_proba = any(s.role == "probabilities" for s in manifest.outputs) and bool(manifest.classes)
        self._path = str(model.path)
        self.metadata = self._metadata()
        self.source: ModelSource | None = None  # the package it was loaded from, when loaded by the server
        self.signature: tuple[int, ...] | None = None  # the package's file state when loaded
        self.batcher: Any = None  # its MicroBatcher, when requests are merged
        self._active = 0
        self._retired: list[Callable[[], None]] | None = None

    @contextmanager
    def lease(self) -> Iterator[ServedModel]:
        """Hold the model open for one request (taken on the event loop, like every request)."""
        self._active += 1
        try:
            yield self
        finally:
            self._active -= 1
            if self._retired is not None and self._active == 0:
                self._finish()

    def retire(self, *then: Callable[[], None]) -> None:
        """No new requests come; once those holding a lease end, run ``then`` and close the model."""
        self._retired = list(then)
        if self._active == 0:
            self._finish()

    def _finish(self) -> None:
        callbacks, self._retired = self._retired or [], None
        for callback in callbacks:
            callback()
        if self.owned:
            self.model.close()
            log.info("closed %s %s", self.name, self.version)

    @contextmanager
    def _named_errors(self) -> Iterator[None]:
        """Errors name the model as clients know it, never the package's path on the server."""
        try:
            yield
        except ModelpackError as exc:
            if exc.package == self._path:
                exc.package = self.name
                exc.args = tuple(a.replace(self._path, self.name) if isinstance(a, str) else a for a in exc.args)
            raise

    def _metadata(self) -> dict[str, Any]:
        m = self.model.manifest
        params: dict[str, Any] = {"task": m.task}
        if m.classes is not None:
            params["classes"] = json.dumps(list(m.classes))
        tensors = [{"name": s.name, "datatype": dt, "shape": shape}
                   for s in m.inputs for dt, shape in [input_metadata(s)]]
        outputs = [{"name": s.name, "datatype": dt, "shape": shape}
                   for s in m.outputs for dt, shape in [output_metadata(s, m.classes)]]
        return {"name": self.name, "versions": [self.version],
                "platform": _PLATFORMS.get(m.model.format, m.model.format),
                "inputs": tensors, "outputs": outputs, "parameters": params}

    @property
    def batchable(self) -> bool:
        """Whether requests can be stacked along a first, dynamic, batch dimension."""
        m = self.model.manifest
        inputs_ok = all(s.shape and not isinstance(s.shape[0], int) for s in m.inputs)
        outputs_ok = all(s.kind == "sequence" or (s.kind == "tensor" and s.shape and not isinstance(s.shape[0], int))
                         for s in m.outputs)
        return inputs_ok and outputs_ok

    # -- /infer ----------------------------------------------------------------------
    def decode(self, body: bytes, header_length: str | None) -> tuple[InferRequest, dict[str, np.ndarray]]:
        """The request and its feeds, checked against the model's inputs and outputs."""
        with self._named_errors():
            return self._decode(body, header_length)

    def _decode(self, body: bytes, header_length: str | None) -> tuple[InferRequest, dict[str, np.ndarray]]:
        request = decode_infer_request(body, header_length)
        return request, self._feeds(request)

    def feeds(self, request: InferRequest) -> dict[str, np.ndarray]:
        """The feeds of a decoded request, checked against the model's inputs and outputs."""
        with self._named_errors():
            return self._feeds(request)

    def _feeds(self, request: InferRequest) -> dict[str, np.ndarray]:
        feeds = {name: self._check_input(name, datatype, array)
                 for name, (datatype, array) in request.inputs.items()}
        missing = [n for n in self._inputs if n not in feeds]
        if missing:
            raise MissingColumnError("missing from the request", input=missing[0], expected=f"{list(self._inputs)}",
                                     got=f"{list(feeds)}", package=self.name,
                                     fix=f"Send every input listed by the model metadata of {self.name}.")
        unknown = [n for n in (request.outputs or {}) if n not in self._outputs]
        if unknown:
            raise RequestError(f"unknown output(s) {unknown}; the model has {list(self._outputs)}",
                               package=self.name, fix="Ask only for outputs the model metadata lists.")
        return feeds

    def _check_input(self, name: str, datatype: str, array: np.ndarray) -> np.ndarray:
        spec = self._inputs.get(name)
        if spec is None:
            raise MissingColumnError("not an input of the model", input=name, expected=f"{list(self._inputs)}",
                                     package=self.name, fix="Send only the inputs the model metadata lists.")
        wanted = self._input_types[name]
        if datatype != wanted:
            raise InputError(f"datatype {datatype} where the model takes {wanted}", input=name,
                             expected=wanted, got=datatype, package=self.name,
                             fix=f"Send the tensor as {wanted}.")
        _check_shape(spec, array, self.name)
        return array

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
        """Every output of the model for these feeds."""
        with self._named_errors():
            return self.model.run(feeds)

    def tensors(self, request: InferRequest, values: dict[str, Any]) -> list[OutputTensor]:
        """The outputs the request asked for, as protocol tensors (top-k strings where it asked)."""
        wanted = request.outputs
        if wanted is None:
            wanted = dict.fromkeys(self._outputs, request.binary_output)
        classes = self.model.manifest.classes
        tensors = []
        for name, binary in wanted.items():
            spec = self._outputs[name]
            array = to_tensor(values[name], spec, classes)
            k = request.classification.get(name)
            if k is not None:
                with self._named_errors():
                    array = classify(array, k, classes if spec.role == "probabilities" else None)
            tensors.append(OutputTensor(name, array, binary))
        return tensors

    def encode(self, request: InferRequest, values: dict[str, Any]) -> tuple[bytes, int | None]:
        """The response body for the outputs the request asked for."""
        return encode_infer_response(self.name, self.version, request.id, self.tensors(request, values))

    def infer(self, body: bytes, header_length: str | None) -> tuple[bytes, int | None]:
        """Decode, run and encode in one call (the path without micro-batching)."""
        request, feeds = self.decode(body, header_length)
        return self.encode(request, self.run(feeds))

    # -- /predict -----------------------------------------------------------------------
    def predict(self, body: bytes) -> dict[str, Any]:
        """Labels or values, and class probabilities, for records, columns or input arrays."""
        with self._named_errors():
            return self._predict(body)

    def _predict(self, body: bytes) -> dict[str, Any]:
        payload: PredictRequest = validate_json(PredictRequest, body, "predict request")
        given = [k for k in ("records", "columns", "inputs") if getattr(payload, k) is not None]
        if len(given) != 1:
            raise RequestError(f"the predict request has {given or 'none'} of records, columns, inputs",
                               package=self.name, fix="Send exactly one of them.")
        data = getattr(payload, given[0])
        want_proba = self._has_proba if payload.probabilities is None else payload.probabilities
        result: dict[str, Any] = {"model_name": self.name, "model_version": self.version,
                                  "predictions": _jsonable(self.model.predict(data))}
        if want_proba:
            result["probabilities"] = _jsonable(self.model.predict_proba(data))
        if self.model.classes is not None:
            result["classes"] = _jsonable(self.model.classes)
        return result


def _check_shape(spec: TensorSpec, array: np.ndarray, package: str) -> None:
    if spec.shape is None:
        return
    wanted = input_metadata(spec)[1]
    fits = array.ndim == len(wanted) and all(w < 0 or w == h for w, h in zip(wanted, array.shape, strict=True))
    if not fits:
        raise ShapeError(f"shape {list(array.shape)} does not fit {wanted} (-1: any size)", input=spec.name,
                         expected=f"{datatype_of(spec.dtype)} {wanted}", got=f"{list(array.shape)}",
                         package=package, fix="Send a tensor of the shape the model metadata lists.")


def _jsonable(values: Any) -> Any:
    arr = np.asarray(values)
    if arr.dtype.kind in "OUS":
        return [_jsonable(v) if isinstance(v, np.ndarray) else (v if isinstance(v, (str, int, float, bool)) or v is None
                else str(v)) for v in arr.tolist()]
    return arr.tolist()


class Repository:
    """The served models, by name and version, and the state of every name.

    Models come and go while the server runs (reload, the repository extension's
    load and unload); a model taken out keeps serving the requests that hold a
    lease on it, and is closed when the last one ends.
    """

    def __init__(self, models: Sequence[ServedModel],
                 sources: Mapping[str, list[ModelSource]] | None = None) -> None:
        self._order: list[ServedModel] = []
        self._by_key: dict[tuple[str, str], ServedModel] = {}
        self._latest: dict[str, ServedModel] = {}
        self.sources: dict[str, list[ModelSource]] = dict(sources or {})  # name -> what it was loaded from
        self.states: dict[str, tuple[str, str]] = {}  # name -> (LOADING or UNAVAILABLE, reason)
        self._place(models)

    def _place(self, models: Sequence[ServedModel], *, without: Sequence[ServedModel] = ()) -> None:
        order = [s for s in self._order if all(s is not w for w in without)]
        keys = {(s.name, s.version) for s in order}
        for served in models:
            key = (served.name, served.version)
            if key in keys:
                raise ModelpackError(f"two packages are both {served.name} {served.version}",
                                     fix="Serve each name and version once, or name them: NAME=PATH.")
            keys.add(key)
            order.append(served)
        self._order = order
        self._by_key = {(s.name, s.version): s for s in order}
        self._latest = {s.name: s for s in order}  # the last one given wins the unversioned URL

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(list(self._order))

    def __len__(self) -> int:
        return len(self._order)

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """The model served as ``name`` (and ``version``), or :class:`ModelNotFoundError`."""
        served = self._latest.get(name) if version is None else self._by_key.get((name, version))
        if served is not None:
            return served
        state, reason = self.states.get(name, ("", ""))
        if state == "LOADING":
            raise ModelUnavailableError(f"model {name!r} is loading", fix="Retry once its ready endpoint says true.")
        if state == "UNAVAILABLE":
            raise ModelUnavailableError(f"model {name!r} is not loaded ({reason})",
                                        fix=f"Load it: POST /v2/repository/models/{name}/load.")
        what = f"{name} version {version}" if version is not None else name
        known = ", ".join(f"{n} {v}" for n, v in self._by_key) or "none"
        raise ModelNotFoundError(f"no model {what!r} is served (served: {known})",
                                 fix="Use a name and version from the model metadata or the repository index.")

    def ready(self) -> bool:
        """Whether the server is ready: it serves a model and none is loading."""
        return bool(self._order) and not any(state == "LOADING" for state, _ in self.states.values())

    def is_ready(self, name: str, version: str | None = None) -> bool:
        """Whether ``name`` (and ``version``) answers requests now."""
        return (self._latest.get(name) if version is None else self._by_key.get((name, version))) is not None

    def metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        """The protocol's model metadata, listing every served version of the name."""
        meta = dict(self.get(name, version).metadata)
        meta["versions"] = [s.version for s in self._order if s.name == name]
        return meta

    def index(self, *, ready_only: bool = False) -> list[dict[str, str]]:
        """The repository extension's index: every model with its state."""
        entries = [{"name": s.name, "version": s.version, "state": "READY", "reason": ""} for s in self._order]
        for name in self.sources:
            if name not in self._latest:
                state, reason = self.states.get(name, ("UNAVAILABLE", "unloaded"))
                entries.append({"name": name, "version": "", "state": state, "reason": reason})
        return [e for e in entries if e["state"] == "READY" or not ready_only]

    def replace(self, name: str, models: Sequence[ServedModel]) -> list[ServedModel]:
        """Serve ``models`` in place of every version of ``name``; return those taken out."""
        old = [s for s in self._order if s.name == name]
        self._place(models, without=old)
        self.states.pop(name, None)
        return old

    def swap(self, old: ServedModel, new: ServedModel) -> None:
        """Serve ``new`` in place of ``old`` (a reloaded package), or refuse if its version is taken."""
        self._place([new], without=[old])

    def close(self) -> None:
        """Close the models the server loaded itself."""
        for served in self._order:
            if served.owned:
                served.model.close()


def open_models(sources: Sequence[ModelSource | tuple[str, ModelSource]] | Mapping[str, ModelSource], *,
                device: Any = "cpu", session_options: Mapping[str, Any] | None = None,
                trusted_keys: Sequence[Any] | None = None, later: bool = False) -> Repository:
    """Load every package into a repository; a mapping or ``(name, source)`` pairs name them.

    If one package fails to load, those already loaded are closed before the error goes on.
    With ``later``, only the manifests are read: every name starts ``LOADING``, for the
    server to load once it listens.
    """
    loader = Loader(device=device, session_options=session_options, trusted_keys=trusted_keys)
    items: list[tuple[str | None, ModelSource]] = (
        list(sources.items()) if isinstance(sources, Mapping)
        else [s if isinstance(s, tuple) else (None, s) for s in sources])
    if later:
        by_name: dict[str, list[ModelSource]] = {}
        for name, source in items:
            by_name.setdefault(name or _manifest_name(source), []).append(source)
        repository = Repository([], by_name)
        repository.states.update(dict.fromkeys(by_name, ("LOADING", "")))
        return repository
    served: list[ServedModel] = []
    try:
        for name, source in items:
            served.append(loader.open(source, name))
        by_name = {}
        for s, (_, source) in zip(served, items, strict=True):
            by_name.setdefault(s.name, []).append(source)
        return Repository(served, by_name)
    except BaseException:
        for s in served:
            if s.owned:
                s.model.close()
        raise


def _manifest_name(source: ModelSource) -> str:
    from .._load import inspect
    from .._model import Model

    return source.manifest.name if isinstance(source, Model) else inspect(source).name


class Loader:
    """Loads packages the way the server was told to (device, session settings, trusted keys)."""

    def __init__(self, *, device: Any, session_options: Mapping[str, Any] | None,
                 trusted_keys: Sequence[Any] | None) -> None:
        self.device = device
        self.session_options = session_options
        self.trusted_keys = trusted_keys

    def open(self, source: ModelSource, name: str | None) -> ServedModel:
        """A served model for a package path (loaded here, owned) or a loaded Model (not owned)."""
        from .._load import load
        from .._model import Model

        if isinstance(source, Model):
            return ServedModel(source, owned=False, name=name)
        signature = package_signature(source)
        model = load(source, device=self.device, session_options=self.session_options,
                     trusted_keys=self.trusted_keys)
        served = ServedModel(model, owned=True, name=name)
        served.source, served.signature = source, signature
        log.info("loaded %s %s from %s", served.name, served.version, source)
        return served


def package_signature(source: ModelSource) -> tuple[int, ...] | None:
    """What changes when a package is rewritten (in place or by a rename), or None for a URL."""
    path = Path(str(source))
    try:
        parts = [path.stat()]
        if path.is_dir():
            parts.append((path / "manifest.json").stat())
    except OSError:
        return None
    return tuple(v for st in parts for v in (st.st_ino, st.st_mtime_ns, st.st_size))
