"""``modelpack serve``: packages behind the Open Inference Protocol (KServe V2) over REST.

Needs the ``serve`` extra (FastAPI and uvicorn): ``pip install 'modelpack[serve]'``.
Importing this package is cheap; the web stack is imported on first use of
:func:`create_app` or :func:`serve`.

>>> from modelpack.serve import serve
>>> serve(["iris.mpk"], port=8080)   # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._app import create_app
    from ._server import serve

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from ._app import create_app

        return create_app
    if name == "serve":
        from ._server import serve

        return serve
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
