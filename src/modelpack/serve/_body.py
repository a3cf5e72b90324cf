"""Request bodies at the HTTP level: the size limit, and compressed bodies.

The limit is checked from ``Content-Length`` before a byte is read, counted while a
chunked body streams in, and applied again to a compressed body after inflating,
so no request makes the server hold more than ``max_body_bytes`` of body.
"""

from __future__ import annotations

import zlib

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._errors import RequestError, RequestTooLargeError

__all__ = ["BodyLimit", "inflate"]

_FIX = "Send fewer rows per request, or start the server with a larger --max-body-size."


class BodyLimit:
    """Refuse bodies over ``max_bytes``: at once from Content-Length, else while reading."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            error = self._too_large(int(length))
            response = JSONResponse({"error": str(error)}, status_code=413)
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise self._too_large(seen)
            return message

        await self.app(scope, counted, send)

    def _too_large(self, size: int) -> RequestTooLargeError:
        return RequestTooLargeError(
            f"the request body has {size:,} bytes or more; the limit (max_body_bytes) is {self.max_bytes:,}",
            fix=_FIX)


_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS, "identity": None}


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """The body of a request sent with ``Content-Encoding`` gzip or deflate, at most ``limit`` bytes.

    Example
    -------
    >>> inflate(zlib.compress(b"{}"), "deflate", 1024)
    b'{}'
    """
    name = encoding.strip().lower()
    if name not in _WBITS:
        raise RequestError(f"Content-Encoding {encoding!r} is not supported",
                           fix="Send the body uncompressed, or compressed with gzip or deflate.")
    wbits = _WBITS[name]
    if wbits is None:
        return body
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(body, limit + 1)  # never more than the limit, whatever the ratio
    except zlib.error as exc:
        raise RequestError(f"the body is not valid {name} data ({exc})",
                           fix="Compress the whole body, or drop the Content-Encoding header.") from exc
    if len(data) > limit:
        raise RequestTooLargeError(f"the {name} body inflates past the limit (max_body_bytes) of {limit:,} bytes",
                                   fix=_FIX)
    if not inflater.eof:
        raise RequestError(f"the {name} body is cut short", fix="Send the whole compressed body.")
    return data
