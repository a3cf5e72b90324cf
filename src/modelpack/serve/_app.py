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
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._version import __version__
from ..errors import ModelpackError
from ._body import BodyLimit
from ._errors import ModelUnavailableError, status_of
from ._repository import Loader, ModelSource, open_models
from ._schemas import (
    ErrorResponse,
    InferenceRequest,
    InferenceResponse,
    LiveResponse,
    ModelMetadata,
    PredictRequest,
    PredictResponse,
    ReadyResponse,
    RepositoryEntry,
    RepositoryIndexRequest,
    RepositoryLoadRequest,
    ServerMetadata,
)
from ._service import Service
from ._v2 import validate_json

__all__ = ["DEFAULT_MAX_BODY_BYTES", "SERVING_SESSION_OPTIONS", "create_app"]

log = logging.getLogger("modelpack.serve")

#: Largest request body accepted, in bytes, unless ``max_body_bytes`` says otherwise.
DEFAULT_MAX_BODY_BYTES = 64 * 2**20
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
    if status >= 500 and not isinstance(exc, ModelUnavailableError):  # unloaded or loading: no fault
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


def create_app(models: Sequence[ModelSource | tuple[str, ModelSource]] | Mapping[str, ModelSource], *,
               device: Any = "cpu", session_options: Mapping[str, Any] | None = None, threads: int | None = None,
               max_batch_size: int = 0, max_latency_ms: float = 2.0,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               trusted_keys: Sequence[Any] | None = None, grpc_port: int | None = None,
               grpc_host: str = "127.0.0.1", metrics: bool | None = None, reload_interval: float = 0.0,
               grace: float = 30.0, load_in_background: bool = False) -> FastAPI:
    """The ASGI application serving ``models`` over the Open Inference Protocol.

    Parameters
    ----------
    models:
        Package paths or loaded :class:`~modelpack.Model` objects; a mapping, or
        ``(name, source)`` pairs, serve each under that name instead of the manifest's.
        Several versions of one name are served side by side. Models loaded here are
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
    grpc_port, grpc_host:
        Also serve the protocol over gRPC on this port (0: any free port, then in
        ``app.state.grpc_port``), started and stopped with the application.
    metrics:
        Serve Prometheus metrics at ``GET /metrics``; default: when prometheus-client is installed.
    reload_interval:
        Above 0, check every so many seconds whether a package file changed, and
        reload it; requests keep being served by the old model until the new one is in.
    grace:
        Seconds gRPC calls in flight get to finish at shutdown.
    load_in_background:
        Read only the manifests here, and load the packages once the application has
        started: it answers at once, with readiness false until they are in (a package
        that fails is logged and shown ``UNAVAILABLE`` in the repository index).

    Example
    -------
    >>> import uvicorn
    >>> from modelpack.serve import create_app
    >>> app = create_app(["iris.mpk"], max_batch_size=64)      # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8080)           # doctest: +SKIP
    """
    options = _serving_options(session_options)
    repository = open_models(models, device=device, session_options=options, trusted_keys=trusted_keys,
                             later=load_in_background)
    loader = Loader(device=device, session_options=options, trusted_keys=trusted_keys)
    server = Service(repository, loader, threads=threads or min(8, os.cpu_count() or 1),
                     max_batch_size=max_batch_size, max_latency_ms=max_latency_ms, max_body_bytes=max_body_bytes,
                     metrics=_metrics(metrics), grpc_address=None if grpc_port is None else (grpc_host, grpc_port),
                     reload_interval=reload_interval, grace=grace)
    app = FastAPI(title="modelpack serve", version=__version__, lifespan=server.lifespan,
                  description="Open Inference Protocol (KServe V2) REST API for modelpack packages, "
                              "with the binary tensor data extension.")
    app.state.batchers = server.batchers  # (name, version) -> MicroBatcher, for monitoring
    app.state.service = server
    app.state.models = [(s.name, s.version, s.model.engine) for s in repository]  # what is served, in order
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    _add_routes(app, server)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _metrics(wanted: bool | None) -> Any:
    if wanted is False:
        return None
    try:
        from ._metrics import Metrics
    except ImportError as exc:
        if wanted:
            raise ModelpackError("prometheus-client is not installed",
                                 fix="Install the metrics extra: pip install 'modelpack[metrics]'.") from exc
        return None
    return Metrics()


def _serving_options(given: Mapping[str, Any] | None) -> dict[str, Any]:
    options = {**SERVING_SESSION_OPTIONS, **(given or {})}
    options["config"] = {**SERVING_SESSION_OPTIONS["config"], **dict((given or {}).get("config") or {})}
    return options


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    # Unknown routes and methods get the same body shape as every other error.
    return JSONResponse({"error": f"{exc.detail}: {request.method} {request.url.path}. "
                                  "The routes are listed at /docs."}, status_code=exc.status_code)


def _add_routes(app: FastAPI, server: Service) -> None:
    repo = server.repository

    @_guard
    async def server_metadata() -> Response:
        return JSONResponse({"name": "modelpack", "version": __version__, "extensions": server.extensions})

    @_guard
    async def live() -> Response:
        return JSONResponse({"live": True})

    @_guard
    async def ready() -> Response:
        return JSONResponse({"ready": repo.ready()})

    app.add_api_route("/v2", server_metadata, methods=["GET"], response_model=ServerMetadata,
                      summary="Server metadata")
    app.add_api_route("/v2/health/live", live, methods=["GET"], response_model=LiveResponse,
                      summary="Server liveness")
    app.add_api_route("/v2/health/ready", ready, methods=["GET"], response_model=ReadyResponse,
                      summary="Server readiness")
    for prefix, versioned in (("/v2/models/{name}", False), ("/v2/models/{name}/versions/{version}", True)):
        _add_model_routes(app, server, prefix, versioned)
    _add_repository_routes(app, server)
    if server.metrics is not None:
        metrics = server.metrics

        async def prometheus() -> Response:
            return Response(metrics.render(), media_type=metrics.content_type)

        app.add_api_route("/metrics", prometheus, methods=["GET"], include_in_schema=False)


def _add_repository_routes(app: FastAPI, server: Service) -> None:
    """The repository extension: the index, and loading or unloading a model by name."""

    @_guard
    async def index(request: Request) -> Response:
        body = await request.body()
        query = validate_json(RepositoryIndexRequest, body, "repository index request") if body.strip() else \
            RepositoryIndexRequest()
        return JSONResponse(server.repository.index(ready_only=query.ready))

    @_guard
    async def load(request: Request, name: str) -> Response:
        body = await request.body()
        asked = validate_json(RepositoryLoadRequest, body, "repository load request") if body.strip() else \
            RepositoryLoadRequest()
        await server.load_model(name, parameters=list(asked.parameters or {}))
        return JSONResponse({})

    @_guard
    async def unload(name: str) -> Response:
        await server.unload_model(name)
        return JSONResponse({})

    app.add_api_route("/v2/repository/index", index, methods=["POST"], response_model=list[RepositoryEntry],
                      summary="Repository index: every model and its state")
    for path, fn, summary in (("load", load, "Load (or reload) a model"), ("unload", unload, "Unload a model")):
        app.add_api_route(f"/v2/repository/models/{{name}}/{path}", fn, methods=["POST"], summary=summary,
                          responses={404: _ERRORS[404]})


def _add_model_routes(app: FastAPI, server: Service, prefix: str, versioned: bool) -> None:
    repo = server.repository
    suffix = " (one version)" if versioned else ""

    @_guard
    async def metadata(name: str, version: str | None = None) -> Response:
        return JSONResponse(repo.metadata(name, version))

    @_guard
    async def model_ready(name: str, version: str | None = None) -> Response:
        repo.get(name, version)
        return JSONResponse({"ready": True})

    @_guard
    async def infer(request: Request, name: str, version: str | None = None,
                    inference_header_content_length: HeaderLength = None) -> Response:
        began = time.perf_counter()
        try:
            body = await server.body(await request.body(), request.headers.get("content-encoding"))
            served = repo.get(name, version)  # then no await before the model is leased
            content, json_length = await server.infer(served, body, inference_header_content_length)
        except Exception as exc:
            server.observe("rest", name, status_of(exc), time.perf_counter() - began)
            raise
        server.observe("rest", name, 200, time.perf_counter() - began)
        if json_length is None:
            return Response(content, media_type="application/json")
        return Response(content, media_type="application/octet-stream",
                        headers={"Inference-Header-Content-Length": str(json_length)})

    @_guard
    async def predict(request: Request, name: str, version: str | None = None) -> Response:
        body = await server.body(await request.body(), request.headers.get("content-encoding"))
        served = repo.get(name, version)
        with served.lease():
            result = await server.in_thread(served.predict, body)
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
