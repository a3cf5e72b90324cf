"""The served models: protocol metadata, request checks against the manifest, running.

Everything here is synchronous and runs on a worker thread, never on the event
loop: decoding a large body, the model run and encoding the answer all take CPU.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from ..errors import InputError, MissingColumnError, ModelpackError, ShapeError
from ..manifest import TensorSpec
from ._errors import ModelNotFoundError, RequestError
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

__all__ = ["ModelSource", "Repository", "ServedModel"]

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
        feeds = {name: self._check_input(name, datatype, array)
                 for name, (datatype, array) in request.inputs.items()}
        missing = [n for n in self._inputs if n not in feeds]
        if missing:
            raise MissingColumnError("missing from the request", input=missing[0], expected=f"{list(self._inputs)}",
                                     got=f"{list(feeds)}", package=self.name,
                                     fix=f"Send every input listed by GET /v2/models/{self.name}.")
        unknown = [n for n in (request.outputs or {}) if n not in self._outputs]
        if unknown:
            raise RequestError(f"unknown output(s) {unknown}; the model has {list(self._outputs)}",
                               package=self.name, fix="Ask only for outputs the model metadata lists.")
        return request, feeds

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

    def encode(self, request: InferRequest, values: dict[str, Any]) -> tuple[bytes, int | None]:
        """The response body for the outputs the request asked for."""
        wanted = request.outputs
        if wanted is None:
            wanted = dict.fromkeys(self._outputs, request.binary_output)
        manifest = self.model.manifest
        outputs = [OutputTensor(name, to_tensor(values[name], self._outputs[name], manifest.classes), binary)
                   for name, binary in wanted.items()]
        return encode_infer_response(self.name, self.version, request.id, outputs)

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
    """The served models, by name and version."""

    def __init__(self, models: Sequence[ServedModel]) -> None:
        self._by_key: dict[tuple[str, str], ServedModel] = {}
        self._latest: dict[str, ServedModel] = {}
        for served in models:
            key = (served.name, served.version)
            if key in self._by_key:
                raise ModelpackError(f"two packages are both {served.name} {served.version}",
                                     fix="Serve each name and version once, or name them: NAME=PATH.")
            self._by_key[key] = served
            self._latest[served.name] = served  # the last one given wins the unversioned URL

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """The model served as ``name`` (and ``version``), or :class:`ModelNotFoundError`."""
        served = self._latest.get(name) if version is None else self._by_key.get((name, version))
        if served is None:
            what = f"{name} version {version}" if version is not None else name
            known = ", ".join(f"{n} {v}" for n, v in self._by_key) or "none"
            raise ModelNotFoundError(f"no model {what!r} is served (served: {known})",
                                     fix="Use a name and version from GET /v2/models/{name}.")
        return served

    def close(self) -> None:
        """Close the models the server loaded itself."""
        for served in self._by_key.values():
            if served.owned:
                served.model.close()


def open_models(sources: Sequence[ModelSource] | Mapping[str, ModelSource], *, device: Any = "cpu",
                session_options: Mapping[str, Any] | None = None,
                trusted_keys: Sequence[Any] | None = None) -> Repository:
    """Load every package into a repository; a mapping serves each under its key as name.

    If one package fails to load, those already loaded are closed before the error goes on.
    """
    from .._load import load
    from .._model import Model

    items: list[tuple[str | None, ModelSource]] = (
        list(sources.items()) if isinstance(sources, Mapping) else [(None, s) for s in sources])
    served: list[ServedModel] = []
    try:
        for name, source in items:
            if isinstance(source, Model):
                served.append(ServedModel(source, owned=False, name=name))
            else:
                model = load(source, device=device, session_options=session_options, trusted_keys=trusted_keys)
                served.append(ServedModel(model, owned=True, name=name))
                log.info("loaded %s %s from %s", served[-1].name, served[-1].version, source)
        return Repository(served)
    except BaseException:
        for s in served:
            if s.owned:
                s.model.close()
        raise
