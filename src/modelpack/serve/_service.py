"""The state both protocols serve from: models, worker threads, batchers, metrics, reloads.

REST routes and the gRPC service hold one :class:`Service` and go through it,
so a model is batched, counted, reloaded and shut down the same way whichever
port a request came in on. Everything here runs on the event loop; the model
runs and package loads go to worker threads (:mod:`anyio.to_thread`, bounded by
``threads``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread

from ..errors import ModelpackError
from ._batching import MicroBatcher
from ._body import inflate
from ._errors import ModelNotFoundError, ModelUnavailableError, RequestError
from ._repository import Loader, Repository, ServedModel, package_signature

__all__ = ["EXTENSIONS", "Service"]

log = logging.getLogger("modelpack.serve")

EXTENSIONS = ["binary_tensor_data", "classification", "model_repository"]
_INLINE_BYTES = 16384  # REST bodies up to this size are decoded and answered on the event loop (batching)


class Service:
    """The repository and how its models run; one per application."""

    def __init__(self, repository: Repository, loader: Loader, *, threads: int, max_batch_size: int,
                 max_latency_ms: float, max_body_bytes: int, metrics: Any = None,
                 grpc_address: tuple[str, int] | None = None, reload_interval: float = 0.0,
                 grace: float = 30.0) -> None:
        self.repository = repository
        self.loader = loader
        self.threads = threads
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.grpc_address = grpc_address
        self.grpc_port: int | None = None
        self.reload_interval = reload_interval
        self.grace = grace
        self.extensions = list(EXTENSIONS)
        self.batchers: dict[tuple[str, str], MicroBatcher] = {}
        self._batch = (max_batch_size, max_latency_ms)
        self._limiter: anyio.CapacityLimiter | None = None
        self._closing: set[asyncio.Task[Any]] = set()
        for served in repository:
            self._attach(served)

    # -- running ---------------------------------------------------------------------
    def _attach(self, served: ServedModel) -> None:
        size, latency = self._batch
        if size > 1 and served.batchable:
            served.batcher = MicroBatcher(
                self._runner(served), max_batch_size=size, max_latency_ms=latency, max_concurrent=self.threads,
                on_batch=self.metrics.batches(served.name) if self.metrics is not None else None)
        elif size > 1:
            log.info("%s: no dynamic batch dimension, requests are not merged", served.name)
        self._list_batchers()

    def _list_batchers(self) -> None:
        self.batchers.clear()
        self.batchers.update({(s.name, s.version): s.batcher for s in self.repository if s.batcher is not None})

    def _runner(self, served: ServedModel) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
        async def run(feeds: dict[str, Any]) -> dict[str, Any]:
            outputs: dict[str, Any] = await self.in_thread(served.run, feeds)
            return outputs
        return run

    async def in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._limiter is None:  # created lazily: it belongs to the running event loop
            self._limiter = anyio.CapacityLimiter(self.threads)
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def compute(self, served: ServedModel, feeds: dict[str, Any]) -> dict[str, Any]:
        """The model's outputs for checked feeds: merged with others' when batching is on."""
        if served.batcher is None:
            outputs: dict[str, Any] = await self.in_thread(served.run, feeds)
            return outputs
        merged: dict[str, Any] = await served.batcher.submit(feeds)
        return merged

    async def body(self, body: bytes, encoding: str | None) -> bytes:
        """A request body, inflated if it came compressed (tritonclient can send gzip or deflate)."""
        if encoding is None:
            return body
        inflated: bytes = await self.in_thread(inflate, body, encoding, self.max_body_bytes)
        return inflated

    async def infer(self, served: ServedModel, body: bytes, header_length: str | None) -> tuple[bytes, int | None]:
        """A REST inference: decode, run (batched when on) and encode, holding the model open."""
        with served.lease():
            if served.batcher is None:
                answer: tuple[bytes, int | None] = await self.in_thread(served.infer, body, header_length)
                return answer
            # A small request is decoded and answered on the event loop: a trip to a worker thread
            # and back costs more than the work (as gRPC does, _grpc.ModelInfer).
            small = len(body) <= _INLINE_BYTES
            request, feeds = served.decode(body, header_length) if small else \
                await self.in_thread(served.decode, body, header_length)
            values = await served.batcher.submit(feeds)
            return served.encode(request, values) if small else await self.in_thread(served.encode, request, values)

    def observe(self, protocol: str, model: str, status: int, seconds: float) -> None:
        """Count a request in the metrics (names no package was served as count as "")."""
        if self.metrics is not None:
            self.metrics.observe(protocol, model if model in self.repository.sources else "", status, seconds)

    # -- models coming and going ---------------------------------------------------------
    def _retire(self, served: ServedModel) -> None:
        batcher = served.batcher

        def close_batcher() -> None:
            if batcher is not None:
                task = asyncio.get_running_loop().create_task(batcher.close())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

        served.retire(close_batcher)

    async def load_model(self, name: str, *, parameters: Sequence[str] = ()) -> None:
        """Load (or reload) every package served as ``name``; the old versions serve until then.

        Load parameters (a ``config`` or ``file:`` contents to load instead) are refused, not
        ignored: a model comes only from the package the server was started with.
        """
        if parameters:
            raise RequestError(f"load parameters {sorted(parameters)} are not supported: this server loads a "
                               "model only from the package it was started with",
                               fix="Send the load request without parameters; to serve another package, "
                                   "start the server with it.")
        repo = self.repository
        sources = repo.sources.get(name)
        if sources is None:
            raise ModelNotFoundError(f"no model {name!r} in the repository (it holds: {', '.join(repo.sources)})",
                                     fix="Load a name from the repository index; other packages need a "
                                         "server started with them.")
        repo.states[name] = ("LOADING", "")
        new: list[ServedModel] = []
        try:
            for source in sources:
                new.append(await self.in_thread(self.loader.open, source, name))
            old = repo.replace(name, new)
        except Exception as exc:
            for s in new:
                s.retire()
            # The error names the package's path on the server: the log gets it, clients do not.
            log.error("loading %s failed: %s", name, exc)
            repo.states[name] = ("UNAVAILABLE", "load failed (the server log says why)")
            if repo.is_ready(name):
                repo.states.pop(name)
            raise ModelUnavailableError(f"model {name!r} failed to load; the server log says why",
                                        fix="Fix the package on the server, then load it again.") from None
        for s in new:
            self._attach(s)
        for s in old:
            self._retire(s)

    async def unload_model(self, name: str) -> None:
        """Stop serving ``name``; requests in flight finish on it first."""
        repo = self.repository
        if name not in repo.sources:
            raise ModelNotFoundError(f"no model {name!r} in the repository", fix="Unload a name from the index.")
        old = repo.replace(name, [])
        repo.states[name] = ("UNAVAILABLE", "unloaded")
        self._list_batchers()
        for s in old:
            self._retire(s)

    async def reload_changed(self) -> None:
        """Reload every package whose file changed since it was loaded; a failure keeps the old one."""
        for served in list(self.repository):
            if served.source is None or served.signature is None:
                continue
            now = package_signature(served.source)
            if now is None or now == served.signature:
                continue
            served.signature = now  # one try per change
            try:
                new = await self.in_thread(self.loader.open, served.source, served.name)
            except Exception as exc:  # noqa: BLE001 (the old model keeps serving; the log says why)
                log.error("reloading %s from %s failed, %s %s keeps serving: %s", served.name, served.source,
                          served.name, served.version, exc)
                continue
            if all(s is not served for s in self.repository):  # unloaded or loaded anew meanwhile: theirs stands
                new.retire()
                continue
            try:
                self.repository.swap(served, new)
            except ModelpackError as exc:  # its new version is served already
                new.retire()
                log.error("reloading %s from %s failed, %s %s keeps serving: %s", served.name, served.source,
                          served.name, served.version, exc)
                continue
            self._attach(new)
            self._retire(served)
            log.info("reloaded %s from %s: version %s", new.name, new.source, new.version)

    async def _load_pending(self) -> None:
        for name, (state, _) in list(self.repository.states.items()):
            if state == "LOADING":
                try:
                    await self.load_model(name)
                except ModelUnavailableError:  # logged, and the index shows it UNAVAILABLE
                    pass

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.reload_interval)
            await self.reload_changed()

    # -- start and stop ----------------------------------------------------------------
    @asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        grpc_server = None
        if self.grpc_address is not None:
            from ._grpc import start_grpc

            host, port = self.grpc_address
            grpc_server, self.grpc_port = await start_grpc(self, host=host, port=port,
                                                           max_message_bytes=self.max_body_bytes)
            app.state.grpc_port = self.grpc_port
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self._watch())] if self.reload_interval > 0 else []
        if self.repository.states:  # names still to load: behind open ports, readiness says false
            tasks.append(loop.create_task(self._load_pending()))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            if grpc_server is not None:  # REST has drained by now; RPCs in flight get `grace` seconds
                await grpc_server.stop(self.grace)
            for served in self.repository:
                if served.batcher is not None:
                    await served.batcher.close()
            await asyncio.gather(*self._closing, return_exceptions=True)
            self.repository.close()

