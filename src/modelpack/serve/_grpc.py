"""The Open Inference Protocol's gRPC service (``inference.GRPCInferenceService``) on grpcio.

It runs on grpcio's asyncio server inside the same event loop as the REST
application, over the same repository, worker threads and micro-batchers, so a
request is served the same way whichever port it came in on. Every error
becomes a gRPC status with the message of the modelpack error, which names the
fix: ``INVALID_ARGUMENT`` for a request that does not fit the model,
``NOT_FOUND`` for an unknown model, ``UNAVAILABLE`` while a model is not loaded,
``INTERNAL`` when the model itself fails; no request stops the server.

Needs the ``grpc`` extra: ``pip install 'modelpack[grpc]'``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import grpc
import grpc.aio
from google.protobuf.message import DecodeError

from .._version import __version__
from ..errors import ModelpackError
from ._errors import ModelUnavailableError, RequestError, status_of
from ._proto import SERVICE
from ._proto import grpc_service_pb2 as pb
from ._repository import Repository, ServedModel
from ._v2_grpc import decode_grpc_request, encode_grpc_response

__all__ = ["Backend", "start_grpc"]

log = logging.getLogger("modelpack.serve")

_INLINE = 65536  # elements decoded and answered on the event loop; more go to a worker thread
_MAX_DETAILS = 4096  # bytes of a status message once percent-encoded
_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND,
          413: grpc.StatusCode.RESOURCE_EXHAUSTED, 503: grpc.StatusCode.UNAVAILABLE}


class Backend(Protocol):
    """What the service needs from the server it shares: models, threads, batching, metrics."""

    repository: Repository
    extensions: list[str]

    async def compute(self, served: ServedModel, feeds: dict[str, Any]) -> dict[str, Any]: ...

    async def in_thread(self, fn: Callable[..., Any], *args: Any) -> Any: ...

    def observe(self, protocol: str, model: str, status: int, seconds: float) -> None: ...

    async def load_model(self, name: str, *, parameters: Sequence[str] = ()) -> None: ...

    async def unload_model(self, name: str) -> None: ...


Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


def _details(text: str) -> str:
    """The message cut in the middle to fit a trailer: its start says what was wrong, its end the fix.

    A message echoes the request (a model name, input names), and a client drops a status whose
    percent-encoded message passes its metadata limit (8 KiB by default), reporting only
    RESOURCE_EXHAUSTED.
    """
    keep = _MAX_DETAILS // 4
    cut = text
    while _encoded_size(cut) > _MAX_DETAILS:
        cut = f"{text[:keep]} … {text[-keep:]}"
        keep //= 2
    return cut


def _encoded_size(text: str) -> int:
    return sum(1 if " " <= c <= "~" and c != "%" else 3 * len(c.encode("utf-8", "replace")) for c in text)


class _Malformed(RequestError):
    """A request whose bytes are not the method's message: answered INVALID_ARGUMENT, not grpcio's UNKNOWN."""


def _parser(message: Any) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return message.FromString(data)
        except DecodeError as exc:
            return _Malformed(f"the request is not an inference.{message.__name__} message ({exc})",
                              fix="Send a message serialized from the Open Inference Protocol's grpc_service.proto.")
    return parse


def _guard(backend: Backend, method: str, handler: Callable[[Any], Awaitable[Any]]) -> Handler:
    """Turn every exception of a handler into a gRPC status carrying the error's message."""

    @functools.wraps(handler)
    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, _Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(request))
        began = time.perf_counter()
        try:
            response = await handler(request)
        except Exception as exc:  # noqa: BLE001 (the server must outlive any request)
            status = status_of(exc)
            if method == "ModelInfer":
                backend.observe("grpc", request.model_name, status, time.perf_counter() - began)
            if status >= 500 and not isinstance(exc, ModelUnavailableError):  # unloaded or loading: no fault
                log.error("%s failed: %s", method, exc, exc_info=exc)
            text = str(exc) if isinstance(exc, ModelpackError) else f"internal error: {type(exc).__name__}: {exc}"
            await context.abort(_CODES.get(status, grpc.StatusCode.INTERNAL), _details(text))
        if method == "ModelInfer":
            backend.observe("grpc", request.model_name, 200, time.perf_counter() - began)
        return response

    return guarded


class _Service:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.repo = backend.repository

    async def ServerLive(self, request: pb.ServerLiveRequest) -> pb.ServerLiveResponse:  # noqa: N802
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest) -> pb.ServerReadyResponse:  # noqa: N802
        return pb.ServerReadyResponse(ready=self.repo.ready())

    async def ModelReady(self, request: pb.ModelReadyRequest) -> pb.ModelReadyResponse:  # noqa: N802
        return pb.ModelReadyResponse(ready=self.repo.is_ready(request.name, request.version or None))

    async def ServerMetadata(self, request: pb.ServerMetadataRequest) -> pb.ServerMetadataResponse:  # noqa: N802
        return pb.ServerMetadataResponse(name="modelpack", version=__version__, extensions=self.backend.extensions)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest) -> pb.ModelMetadataResponse:  # noqa: N802
        meta = self.repo.metadata(request.name, request.version or None)
        response = pb.ModelMetadataResponse(name=meta["name"], versions=meta["versions"], platform=meta["platform"])
        for field in ("inputs", "outputs"):
            for t in meta[field]:
                getattr(response, field).add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        for key, value in meta["parameters"].items():
            response.parameters[key].string_param = str(value)
        return response

    async def ModelInfer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:  # noqa: N802
        served = self.repo.get(request.model_name, request.model_version or None)
        with served.lease():
            # Small requests are decoded and answered on the event loop. A large one goes to a worker
            # thread, there and back, whatever its form: typed contents and BYTES elements are converted
            # one by one, and so are the rows of a ZipMap or classification answer, raw request or not.
            large = len(request.inputs) + sum(_elements(t.shape) for t in request.inputs) > _INLINE
            decoded = await self.backend.in_thread(decode_grpc_request, request) if large else \
                decode_grpc_request(request)
            values = await self.backend.compute(served, served.feeds(decoded))
            answer = functools.partial(self._answer, served, decoded, values)
            return await self.backend.in_thread(answer) if large else answer()

    @staticmethod
    def _answer(served: ServedModel, decoded: Any, values: dict[str, Any]) -> pb.ModelInferResponse:
        return encode_grpc_response(served.name, served.version, decoded.id, served.tensors(decoded, values))

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest) -> pb.RepositoryIndexResponse:  # noqa: N802
        response = pb.RepositoryIndexResponse()
        for entry in self.repo.index(ready_only=request.ready):
            response.models.add(**entry)
        return response

    async def RepositoryModelLoad(self, request: pb.RepositoryModelLoadRequest  # noqa: N802
                                  ) -> pb.RepositoryModelLoadResponse:
        await self.backend.load_model(request.model_name, parameters=list(request.parameters))
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request: pb.RepositoryModelUnloadRequest  # noqa: N802
                                    ) -> pb.RepositoryModelUnloadResponse:
        await self.backend.unload_model(request.model_name)
        return pb.RepositoryModelUnloadResponse()


def _elements(shape: Any) -> int:
    count = 1
    for d in shape:
        count *= max(int(d), 0)
    return count


_METHODS = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer",
            "RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload")


def _handlers(backend: Backend) -> grpc.GenericRpcHandler:
    service = _Service(backend)
    methods = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods_by_name
    table = {}
    for name in _METHODS:
        method = methods[name]
        request_class = getattr(pb, method.input_type.name)
        table[name] = grpc.unary_unary_rpc_method_handler(
            _guard(backend, name, getattr(service, name)), request_deserializer=_parser(request_class),
            response_serializer=lambda message: message.SerializeToString())
    return grpc.method_handlers_generic_handler(SERVICE, table)


async def start_grpc(backend: Backend, *, host: str, port: int, max_message_bytes: int) -> tuple[grpc.aio.Server, int]:
    """Start the service on ``host:port`` (0: any free port); return the server and its port.

    Example
    -------
    >>> server, port = await start_grpc(backend, host="127.0.0.1", port=8081,   # doctest: +SKIP
    ...                                 max_message_bytes=64 << 20)
    """
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", max_message_bytes),
                                      ("grpc.max_send_message_length", -1),
                                      ("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((_handlers(backend),))
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ModelpackError(f"cannot listen for gRPC on {address} ({exc})",
                             fix="Choose a free port with --grpc-port.") from exc
    await server.start()
    return server, bound
