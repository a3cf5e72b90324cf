"""The errors of the HTTP layer, and the status code of every modelpack error.

They extend the core tree (:mod:`modelpack.errors`), so a caller that catches
``ModelpackError`` catches these too::

    ModelpackError
    ├── RequestError (ValueError)        400: the body is not JSON, bad binary framing, unknown names
    │   └── RequestTooLargeError         413: the body is over the server's limit
    ├── ModelNotFoundError (LookupError) 404: no model of that name (and version) is served
    └── ModelUnavailableError            503: the model is loading, or was unloaded
"""

from __future__ import annotations

from ..errors import DeviceError, InputError, ModelpackError, TaskError

__all__ = ["ModelNotFoundError", "ModelUnavailableError", "RequestError", "RequestTooLargeError", "status_of"]


class RequestError(ModelpackError, ValueError):
    """The HTTP request does not follow the protocol (HTTP 400)."""


class RequestTooLargeError(RequestError):
    """The request body is larger than the server accepts (HTTP 413)."""


class ModelNotFoundError(ModelpackError, LookupError):
    """No served model has the name (and version) in the URL (HTTP 404)."""


class ModelUnavailableError(ModelpackError):
    """The model is served by name but is loading or unloaded now (HTTP 503, gRPC UNAVAILABLE)."""


# Most specific first: the first class the error is an instance of decides.
_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (RequestTooLargeError, 413),
    (RequestError, 400),
    (ModelNotFoundError, 404),
    (ModelUnavailableError, 503),
    (InputError, 400),
    (TaskError, 400),
    (DeviceError, 503),
)


def status_of(exc: BaseException) -> int:
    """The HTTP status for an error: 4xx for the client's mistakes, 5xx for the server's.

    Example
    -------
    >>> status_of(RequestError("the body is not JSON", fix="Send JSON."))
    400
    """
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500
