"""Prometheus metrics of the server, on prometheus-client (the ``metrics`` extra).

Every application gets a registry of its own, so two servers in one process
(tests, notebooks) never count into each other. Served at ``GET /metrics`` in the
Prometheus text format:

- ``modelpack_requests_total{protocol, model, status}``: inference requests by
  protocol (``rest``/``grpc``) and HTTP status (gRPC errors by the HTTP status of
  the same error: 400, 404, 503, 500), so errors by status are the series whose
  status is not 200;
- ``modelpack_request_seconds{protocol, model}``: latency of the successful ones;
- ``modelpack_batch_requests{model}`` and ``modelpack_batch_rows{model}``: requests
  and rows in each model run of the micro-batcher.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    """The server's counters and histograms.

    Example
    -------
    >>> m = Metrics()
    >>> m.observe("rest", "iris", 200, 0.004)
    >>> b'modelpack_requests_total{model="iris",protocol="rest",status="200"} 1.0' in m.render()
    True
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("modelpack_requests", "Inference requests by protocol, model and HTTP status.",
                                ["protocol", "model", "status"], registry=self.registry)
        self.latency = Histogram("modelpack_request_seconds", "Latency of successful inference requests.",
                                 ["protocol", "model"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.batch_requests = Histogram("modelpack_batch_requests", "Requests merged into one model run.",
                                        ["model"], buckets=_BATCH_BUCKETS, registry=self.registry)
        self.batch_rows = Histogram("modelpack_batch_rows", "Rows in one merged model run.",
                                    ["model"], buckets=_BATCH_BUCKETS, registry=self.registry)
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, protocol: str, model: str, status: int, seconds: float) -> None:
        """Count one inference request, and time it when it succeeded."""
        key = (protocol, model, status)
        series = self._series.get(key)
        if series is None:  # labels() takes a lock and builds a key each call: once per series
            series = self._series[key] = (self.requests.labels(protocol, model, str(status)),
                                          self.latency.labels(protocol, model))
        series[0].inc()
        if status < 400:
            series[1].observe(seconds)

    def batches(self, model: str) -> Callable[[int, int], None]:
        """A callback for the micro-batcher of ``model``: (requests, rows) of each run."""
        requests, rows = self.batch_requests.labels(model), self.batch_rows.labels(model)

        def observe(n: int, r: int) -> None:
            requests.observe(n)
            rows.observe(r)

        return observe

    def render(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)
