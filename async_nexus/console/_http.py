"""Just enough HTTP/1.1 for the console: read one bounded request, write one response, close.

Every connection carries one request (``Connection: close``): the page polls once a second,
so keeping connections open would save little and hold sockets. Whatever is not a request
this console answers (garbage, a line or headers too long, a body too large, a body without
a length) becomes an :class:`HttpError` with the status to answer and a sentence that says
what was wrong.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

# Internal: the console's server uses these.
__all__: list[str] = []

#: The request line and the headers together, in bytes.
MAX_HEAD = 16 * 1024
MAX_HEADERS = 64
#: A body: the largest a console's own requests need is a list of ids.
MAX_BODY = 64 * 1024
#: Seconds a client may take to send its request.
READ_TIMEOUT = 10.0
#: Seconds a client may take to take its answer.
WRITE_TIMEOUT = 10.0
#: Connections served at once: more are answered 503 at once. The page makes two requests a
#: second; this leaves room for a few dozen pages and scripts, and bounds the file
#: descriptors that clients which connect and send nothing can hold for READ_TIMEOUT.
MAX_CONNECTIONS = 64
#: Seconds a connection beyond MAX_CONNECTIONS is read from before its 503.
BUSY_READ_TIMEOUT = 0.5

REASONS = {
    200: "OK",
    204: "No Content",
    303: "See Other",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    409: "Conflict",
    415: "Unsupported Media Type",
    421: "Misdirected Request",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


class HttpError(Exception):
    """A request answered with ``status`` and ``message`` instead of being served."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass
class Request:
    """One request: the method, the path and query, the headers (names in lower case), the body."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""
    cookies: dict[str, str] = field(default_factory=dict)

    def param(self, name: str) -> str | None:
        """The first value of the query parameter ``name``, or ``None``."""
        values = self.query.get(name)
        return values[0] if values else None


async def read_request(reader: asyncio.StreamReader) -> Request:
    """Read one request from ``reader``, within the limits above; :class:`HttpError` if it is none."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
    except asyncio.LimitOverrunError:
        raise HttpError(431, f"the request line and headers are over {MAX_HEAD} bytes") from None
    except asyncio.IncompleteReadError:
        raise HttpError(400, "the request ended before its headers did") from None
    except asyncio.TimeoutError:
        raise HttpError(408, f"no complete request within {READ_TIMEOUT:g} seconds") from None
    if len(head) > MAX_HEAD:
        raise HttpError(431, f"the request line and headers are over {MAX_HEAD} bytes")
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise HttpError(400, "the request line and headers must be ASCII") from None
    request_line, *header_lines = text[:-4].split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[1].startswith("/"):
        raise HttpError(400, f"not an HTTP/1.x request line: {request_line[:100]!r}")
    method, target, _version = parts
    if len(header_lines) > MAX_HEADERS:
        raise HttpError(431, f"more than {MAX_HEADERS} headers")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise HttpError(400, f"not a header line: {line[:100]!r}")
        headers[name.lower()] = value.strip()
    split = urlsplit(target)
    request = Request(
        method=method,
        path=unquote(split.path),
        query=parse_qs(split.query),
        headers=headers,
        cookies=_cookies(headers.get("cookie", "")),
    )
    if "transfer-encoding" in headers:
        raise HttpError(501, "a body sent in chunks is not accepted; send it with a Content-Length")
    length_text = headers.get("content-length")
    if length_text is None:
        if method == "POST":
            raise HttpError(411, "a POST needs a Content-Length header")
        return request
    if not length_text.isdigit():
        raise HttpError(400, f"Content-Length is not a number of bytes: {length_text[:40]!r}")
    length = int(length_text)
    if length > MAX_BODY:
        raise HttpError(413, f"the body is {length} bytes; the console takes at most {MAX_BODY}")
    try:
        request.body = await asyncio.wait_for(reader.readexactly(length), READ_TIMEOUT)
    except asyncio.IncompleteReadError:
        raise HttpError(400, f"the body ended before its Content-Length of {length} bytes") from None
    except asyncio.TimeoutError:
        raise HttpError(408, f"the body did not come within {READ_TIMEOUT:g} seconds") from None
    return request


def _cookies(header: str) -> dict[str, str]:
    found = {}
    for pair in header.split(";"):
        name, equals, value = pair.strip().partition("=")
        if equals:
            found[name] = value
    return found


def response(status: int, body: bytes, content_type: str, headers: dict[str, str]) -> bytes:
    """The bytes of a whole response, with ``headers`` (the security headers among them)."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += [
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        "",
        "",
    ]
    return "\r\n".join(lines).encode("latin-1") + body
