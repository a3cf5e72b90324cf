""":func:`serve`: run the server until interrupted (the ``modelpack serve`` command calls it).

Imports no web framework until it runs, so ``import modelpack.serve`` works
without the ``serve`` extra, and serving then says what to install.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ModelpackError

if TYPE_CHECKING:
    from ._repository import ModelSource

__all__ = ["import_or_explain", "serve"]

_INSTALL = "Install the serving extra: pip install 'modelpack[serve]'."
_INSTALL_GRPC = "Install the gRPC extra: pip install 'modelpack[grpc]'."


def serve(models: Sequence[ModelSource | tuple[str, ModelSource]] | Mapping[str, ModelSource], *,
          host: str = "127.0.0.1", port: int = 8080, log_level: str = "info", **options: Any) -> None:
    """Serve packages over HTTP until interrupted (Ctrl-C).

    ``options`` go to :func:`~modelpack.serve.create_app` (``device``, ``threads``,
    ``max_batch_size``, ``max_latency_ms``, ``max_body_bytes``, ``trusted_keys``,
    ``grpc_port``, ``metrics``, ``reload_interval``, ``grace``); gRPC listens on ``host`` too.

    Example
    -------
    >>> serve(["iris.mpk", "churn.mpk"], port=8080, max_batch_size=64)   # doctest: +SKIP
    """
    uvicorn = import_or_explain("uvicorn")
    from ._app import create_app

    if options.get("grpc_port") is not None:
        import_or_explain("grpc", _INSTALL_GRPC)
        _check_free(host, options["grpc_port"])
    app = create_app(models, grpc_host=host, **options)
    base = f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"
    for name, version, engine in app.state.models:  # before uvicorn's own line: what is served, where, by what
        sys.stderr.write(f"serving {name} {version} at {base}/v2/models/{name}/versions/{version} ({engine})\n")
    for name in app.state.service.repository.states:
        sys.stderr.write(f"loading {name} behind {base}/v2/models/{name}\n")
    if options.get("grpc_port") is not None:
        sys.stderr.write(f"serving gRPC (inference.GRPCInferenceService) at {host}:{options['grpc_port']}\n")
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def _check_free(host: str, port: int) -> None:
    """Refuse a gRPC port already taken before loading anything (grpcio would fail later, deep in start-up)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ModelpackError(f"cannot listen for gRPC on {host}:{port} ({exc.strerror})",
                                 fix="Choose a free port with --grpc-port.") from exc


def import_or_explain(module: str, fix: str = _INSTALL) -> Any:
    """Import a module of the serving extra, or say how to install it."""
    try:
        return __import__(module)
    except ImportError as exc:
        raise ModelpackError(f"{module} is not installed", fix=fix) from exc
