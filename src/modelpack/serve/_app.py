"""The ASGI application: Open Inference Protocol (KServe V2) routes on FastAPI.

Handlers stay thin: they read the body and hand decoding, the model run and
encoding to a worker thread (:mod:`anyio.to_thread`, bounded by ``threads``),
so the event loop keeps accepting requests while models compute. Every error
becomes a JSON body ``{"error": "..."}`` with the status of
:func:`~modelpack.serve.errors.status_of`; no request can stop the server.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import FastAPI, Header, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._version import __version__
from ..errors import ModelpackError
from ._batching import MicroBatcher
from ._body import BodyLimit, inflate
from ._errors import status_of
from ._repository import ModelSource, Repository, ServedModel, open_models
from ._schemas import (
    ErrorResponse,
    InferenceRequest,
    InferenceResponse,
    LiveResponse,
    ModelMetadata,
    PredictRequest,
    PredictResponse,
    ReadyResponse,
    ServerMetadata,
)

__all__ = ["DEFAULT_MAX_BODY_BYTES", "SERVING_SESSION_OPTIONS", "create_app"]

log = logging.getLogger("modelpack.serve")

#: Largest request body accepted, in bytes, unless ``max_body_bytes`` says otherwise.
DEFAULT_MAX_BODY_BYTES = 64 * 2**20
EXTENSIONS = ["binary_tensor_data"]
#: ONNX Runtime settings of served models, under the caller's own: worker threads that spin
#: waiting for the next run burn the CPU that concurrent requests need, so they sleep instead.
SERVING_SESSION_OPTIONS: dict[str, Any] = {
    "config": {"session.intra_op.allow_spinning": "0", "session.inter_op.allow_spinning": "0"}}

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in ((400, "Malformed request, or inputs that do not fit the model"),
                       (404, "No such model"), (413, "Body over the size limit"),
                       (500, "The model failed"))}
_BINARY_NOTE = (
    "With the binary tensor data extension the body is the JSON header, of "
    "`Inference-Header-Content-Length` bytes, followed by the raw bytes of every input whose "
    "parameters carry `binary_data_size` (little-endian; BYTES elements each prefixed by a "
    "4-byte little-endian length). Outputs asked for with `binary_data` come back the same way.")


HeaderLength = Annotated[str | None, Header(alias="Inference-Header-Content-Length",
                                            description="Length of the JSON header (binary extension).")]


def _error(exc: BaseException) -> JSONResponse:
    status = status_of(exc)
    if status >= 500:
        log.error("request failed: %s", exc, exc_info=exc)
    text = str(exc) if isinstance(exc, ModelpackError) else f"internal error: {type(exc).__name__}: {exc}"
    return JSONResponse({"error": text}, status_code=status)


def _guard(handler: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
    """Turn every exception of a handler into a JSON error response."""

    @functools.wraps(handler)
    async def guarded(*args: Any, **kwargs: Any) -> Response:
        try:
            return await handler(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 (the server must outlive any request)
            return _error(exc)

    return guarded


class _Server:
    """The state behind the routes: the repository, the thread limit, the batchers."""

    def __init__(self, repository: Repository, *, threads: int, max_batch_size: int,
                 max_latency_ms: float, max_body_bytes: int) -> None:
        self.repository = repository
        self.threads = threads
        self.max_body_bytes = max_body_bytes
        self._limiter: anyio.CapacityLimiter | None = None
        self.batchers: dict[tuple[str, str], MicroBatcher] = {}
        if max_batch_size > 1:
            for served in repository:
                if served.batchable:
                    self.batchers[served.name, served.version] = MicroBatcher(
                        self._runner(served), max_batch_size=max_batch_size,
                        max_latency_ms=max_latency_ms, max_concurrent=threads)
                else:
                    log.info("%s: no dynamic batch dimension, requests are not merged", served.name)

    def _runner(self, served: ServedModel) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
        async def run(feeds: dict[str, Any]) -> dict[str, Any]:
            outputs: dict[str, Any] = await self.in_thread(served.run, feeds)
            return outputs
        return run

    async def in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._limiter is None:  # created lazily: it belongs to the running event loop
            self._limiter = anyio.CapacityLimiter(self.threads)
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def body(self, request: Request) -> bytes:
        """The request body, inflated if it came compressed (tritonclient can send gzip or deflate)."""
        body = await request.body()
        encoding = request.headers.get("content-encoding")
        if encoding is None:
            return body
        return await self.in_thread(inflate, body, encoding, self.max_body_bytes)

    async def infer(self, served: ServedModel, body: bytes, header_length: str | None) -> Response:
        batcher = self.batchers.get((served.name, served.version))
        if batcher is None:
            content, json_length = await self.in_thread(served.infer, body, header_length)
        else:
            request, feeds = await self.in_thread(served.decode, body, header_length)
            values = await batcher.submit(feeds)
            content, json_length = await self.in_thread(served.encode, request, values)
        if json_length is None:
            return Response(content, media_type="application/json")
        return Response(content, media_type="application/octet-stream",
                        headers={"Inference-Header-Content-Length": str(json_length)})

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        yield
        for batcher in self.batchers.values():
            await batcher.close()
        self.repository.close()


def create_app(models: Sequence[ModelSource] | Mapping[str, ModelSource], *, device: Any = "cpu",
               session_options: Mapping[str, Any] | None = None, threads: int | None = None,
               max_batch_size: int = 0, max_latency_ms: float = 2.0,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               trusted_keys: Sequence[Any] | None = None) -> FastAPI:
    """The ASGI application serving ``models`` over the Open Inference Protocol.

    Parameters
    ----------
    models:
        Package paths or loaded :class:`~modelpack.Model` objects; a mapping serves
        each under its key instead of the manifest's name. Models loaded here are
        closed when the application shuts down; models passed in are not.
    device, session_options:
        Where and how to run the packages loaded here (see :func:`modelpack.load`).
        ``session_options`` go over :data:`SERVING_SESSION_OPTIONS` (no spin-waiting).
    threads:
        Model runs (and request decoding) at once; default: the number of CPUs, at most 8.
    max_batch_size:
        Above 1, concurrent requests of a model are merged into runs of up to this
        many rows (see :mod:`modelpack.serve.batching`).
    max_latency_ms:
        Longest a request waits for others to merge with.
    max_body_bytes:
        Larger request bodies get HTTP 413.
    trusted_keys:
        Ed25519 public keys; when given, every package loaded here must be signed by
        one of them (Model objects passed in are not checked again).

    Example
    -------
    >>> import uvicorn
    >>> from modelpack.serve import create_app
    >>> app = create_app(["iris.mpk"], max_batch_size=64)      # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8080)           # doctest: +SKIP
    """
    repository = open_models(models, device=device, session_options=_serving_options(session_options),
                             trusted_keys=trusted_keys)
    server = _Server(repository, threads=threads or min(8, os.cpu_count() or 1),
                     max_batch_size=max_batch_size, max_latency_ms=max_latency_ms, max_body_bytes=max_body_bytes)
    app = FastAPI(title="modelpack serve", version=__version__, lifespan=server.lifespan,
                  description="Open Inference Protocol (KServe V2) REST API for modelpack packages, "
                              "with the binary tensor data extension.")
    app.state.batchers = server.batchers  # (name, version) -> MicroBatcher, for monitoring
    app.state.models = [(s.name, s.version) for s in repository]  # what is served, in order
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    _add_routes(app, server)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _serving_options(given: Mapping[str, Any] | None) -> dict[str, Any]:
    options = {**SERVING_SESSION_OPTIONS, **(given or {})}
    options["config"] = {**SERVING_SESSION_OPTIONS["config"], **dict((given or {}).get("config") or {})}
    return options


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    # Unknown routes and methods get the same body shape as every other error.
    return JSONResponse({"error": f"{exc.detail}: {request.method} {request.url.path}. "
                                  "The routes are listed at /docs."}, status_code=exc.status_code)


def _add_routes(app: FastAPI, server: _Server) -> None:
    repo = server.repository

    @_guard
    async def server_metadata() -> Response:
        return JSONResponse({"name": "modelpack", "version": __version__, "extensions": EXTENSIONS})

    @_guard
    async def live() -> Response:
        return JSONResponse({"live": True})

    @_guard
    async def ready() -> Response:
        return JSONResponse({"ready": len(repo) > 0})

    app.add_api_route("/v2", server_metadata, methods=["GET"], response_model=ServerMetadata,
                      summary="Server metadata")
    app.add_api_route("/v2/health/live", live, methods=["GET"], response_model=LiveResponse,
                      summary="Server liveness")
    app.add_api_route("/v2/health/ready", ready, methods=["GET"], response_model=ReadyResponse,
                      summary="Server readiness")
    for prefix, versioned in (("/v2/models/{name}", False), ("/v2/models/{name}/versions/{version}", True)):
        _add_model_routes(app, server, prefix, versioned)


def _add_model_routes(app: FastAPI, server: _Server, prefix: str, versioned: bool) -> None:
    repo = server.repository
    suffix = " (one version)" if versioned else ""

    @_guard
    async def metadata(name: str, version: str | None = None) -> Response:
        return JSONResponse(repo.get(name, version).metadata)

    @_guard
    async def model_ready(name: str, version: str | None = None) -> Response:
        repo.get(name, version)
        return JSONResponse({"ready": True})

    @_guard
    async def infer(request: Request, name: str, version: str | None = None,
                    inference_header_content_length: HeaderLength = None) -> Response:
        served = repo.get(name, version)
        return await server.infer(served, await server.body(request), inference_header_content_length)

    @_guard
    async def predict(request: Request, name: str, version: str | None = None) -> Response:
        served = repo.get(name, version)
        result = await server.in_thread(served.predict, await server.body(request))
        return Response(json.dumps(result, separators=(",", ":")), media_type="application/json")

    if not versioned:  # otherwise FastAPI would document `version` as a query parameter
        for fn in (metadata, model_ready, infer, predict):
            _drop_parameter(fn, "version")
    routes: list[tuple[str, Callable[..., Any], str, Any, dict[str, Any] | None, str]] = [
        ("", metadata, "GET", ModelMetadata, None, "Model metadata"),
        ("/ready", model_ready, "GET", ReadyResponse, None, "Model readiness"),
        ("/infer", infer, "POST", InferenceResponse, _body("InferenceRequest", binary=True), "Inference"),
        ("/predict", predict, "POST", PredictResponse, _body("PredictRequest"),
         "Labels and probabilities for records or columns (modelpack extension)"),
    ]
    for path, fn, method, model, body, summary in routes:
        responses = {**_ERRORS}
        if path == "/infer":
            responses[200] = {"content": {"application/octet-stream": {}},
                              "description": "JSON, or JSON header + binary outputs"}
        app.add_api_route(prefix + path, fn, methods=[method], response_model=model, summary=summary + suffix,
                          responses=responses if path in ("/infer", "/predict") else {404: _ERRORS[404]},
                          openapi_extra=body, operation_id=f"{fn.__name__}{'_version' if versioned else ''}",
                          description=_BINARY_NOTE if path == "/infer" else None)


def _drop_parameter(fn: Callable[..., Any], name: str) -> None:
    sig = inspect.signature(fn)
    fn.__signature__ = sig.replace(parameters=[p for p in sig.parameters.values()  # type: ignore[attr-defined]
                                               if p.name != name])


def _body(schema: str, binary: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    if binary:
        content["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
    return {"requestBody": {"required": True, "content": content}}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, plus the request schemas the handlers validate themselves."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    for path in schema["paths"].values():  # no parameter can fail validation: 422 never happens
        for operation in path.values():
            operation["responses"].pop("422", None)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    for model in (InferenceRequest, PredictRequest):
        doc = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(doc.pop("$defs", {}))
        components[model.__name__] = doc
    schema["components"]["schemas"] = dict(sorted(components.items()))
    app.openapi_schema = schema
    return schema
