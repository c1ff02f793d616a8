"""What the console answers to each request, and the checks every request passes first.

The checks, in order:

1. **Who asks.** With a token, every request carries it: ``Authorization: Bearer TOKEN``, or
   the session cookie the page got when it was opened as ``/?token=TOKEN`` (HttpOnly,
   SameSite=Strict; the address is then cleaned of the token by a redirect). Without it:
   401. Without a token (only allowed on a loopback address), the ``Host`` header must name
   a loopback host, so that a web page whose name was pointed at 127.0.0.1 (DNS
   rebinding) cannot read the console through the visitor's browser.
2. **What it may change.** Only ``POST`` changes anything, and a ``POST`` needs the CSRF
   token of this console (``X-CSRF-Token``, as the page sends it; ``GET /api/csrf`` gives
   it to other clients), a JSON body, and no foreign ``Origin``. A form on another site
   can send none of these. ``readonly`` refuses every ``POST``.

Every answer carries security headers: a Content-Security-Policy that allows only this
console's own script and style (no inline script, nothing from elsewhere), no framing, no
sniffing of types, no referrer, no caching.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
import json
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ..nexus import AsyncEventNexus
from . import _assets
from ._http import HttpError, Request
from ._letters import DeadLetters
from ._rates import Rates

# Internal: the console's server asks it.
__all__: list[str] = []

COOKIE = "async_nexus_console"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

#: ``(status, body, content type, extra headers)``.
Answer = tuple[int, bytes, str, dict[str, str]]

_JSON = "application/json"
_ACTIONS = {"/api/dead-letters/replay": "replay", "/api/dead-letters/delete": "delete"}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is reached only from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # another name: it may resolve to anything


class ConsoleApp:
    """The console's pages and API over some nexuses, behind its token and CSRF checks."""

    def __init__(
        self,
        nexuses: Mapping[str, AsyncEventNexus],
        rates: Rates,
        *,
        token: str | None,
        readonly: bool,
    ) -> None:
        self.nexuses = nexuses
        self.rates = rates
        self.letters = DeadLetters(nexuses)
        self.token = token
        self.readonly = readonly
        #: What the page sends back with each POST; new for each console.
        self.csrf = secrets.token_urlsafe(32)
        self._session = None if token is None else _session_of(token)

    async def answer(self, request: Request) -> Answer:
        """Check ``request`` and answer it; :class:`HttpError` for what is refused."""
        if request.method not in ("GET", "HEAD", "POST"):
            raise HttpError(405, f"{request.method} is not a method of the console: use GET or POST")
        if (
            request.method == "GET"
            and request.path == "/"
            and self.token
            and request.param("token") is not None
        ):
            return self._log_in(request)
        self._check_who(request)
        if request.method == "POST":
            return await self._change(request)
        return await self._read(request)

    # -- checks -------------------------------------------------------------------------

    def _check_who(self, request: Request) -> None:
        if self.token is None:
            host = request.headers.get("host")
            if host is None:
                raise HttpError(400, "an HTTP/1.1 request needs a Host header")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if not is_loopback(name):
                raise HttpError(
                    421,
                    f"this console has no token and answers only to loopback names (127.0.0.1, "
                    f"localhost, [::1]), not to {host[:100]!r}",
                )
            return
        given = request.headers.get("authorization", "")
        scheme, _, credential = given.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            credential.strip().encode(), self.token.encode()
        ):
            return
        cookie = request.cookies.get(COOKIE, "")
        if self._session is not None and hmac.compare_digest(cookie.encode(), self._session.encode()):
            return
        raise HttpError(
            401,
            "this console needs its token: open /?token=TOKEN in a browser, or send the header "
            "Authorization: Bearer TOKEN",
            {"WWW-Authenticate": 'Bearer realm="async-nexus console"'},
        )

    def _check_csrf(self, request: Request) -> None:
        given = request.headers.get("x-csrf-token", "")
        if not hmac.compare_digest(given.encode(), self.csrf.encode()):
            raise HttpError(
                403,
                "a change needs this console's CSRF token in the X-CSRF-Token header "
                "(the page sends it; GET /api/csrf gives it)",
            )
        origin = request.headers.get("origin")
        # The host only, not the scheme: behind a proxy that adds TLS the page is https.
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
            raise HttpError(403, f"a change from another origin ({origin[:100]}) is refused")
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != _JSON:
            raise HttpError(415, "a change takes a JSON body: send Content-Type: application/json")

    # -- answers ------------------------------------------------------------------------

    def _log_in(self, request: Request) -> Answer:
        given = request.param("token") or ""
        assert self.token is not None
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            raise HttpError(
                401,
                "wrong token: open /?token=TOKEN with the token the console was started with "
                "(--console-token or ASYNC_NEXUS_CONSOLE_TOKEN)",
                {"WWW-Authenticate": 'Bearer realm="async-nexus console"'},
            )
        assert self._session is not None
        cookie = f"{COOKIE}={self._session}; HttpOnly; SameSite=Strict; Path=/"
        return 303, b"", "text/plain; charset=utf-8", {"Location": "/", "Set-Cookie": cookie}

    async def _read(self, request: Request) -> Answer:
        path = request.path
        if path == "/":
            return 200, self._page(), "text/html; charset=utf-8", {}
        if path == "/console.js":
            return 200, _assets.SCRIPT.encode(), "text/javascript; charset=utf-8", {}
        if path == "/console.css":
            return 200, _assets.STYLE.encode(), "text/css; charset=utf-8", {}
        if path == "/api/stats":
            return _json({name: nexus.stats() for name, nexus in self.nexuses.items()})
        if path == "/api/rates":
            return _json(self.rates.snapshot())
        if path == "/api/dead-letters":
            return _json(await self.letters.listing(request.query))
        if path == "/api/csrf":
            return _json({"csrf": self.csrf, "readonly": self.readonly})
        if path in _ACTIONS:
            raise HttpError(405, f"{path} changes something: POST to it", {"Allow": "POST"})
        raise HttpError(404, f"nothing at {path[:100]}; the console is at /")

    async def _change(self, request: Request) -> Answer:
        action = _ACTIONS.get(request.path)
        if action is None:
            raise HttpError(405, f"{request.path[:100]} only reads: GET it", {"Allow": "GET"})
        if self.readonly:
            raise HttpError(
                403, "this console is read-only (readonly=True, --console-readonly): it changes nothing"
            )
        self._check_csrf(request)
        try:
            body = json.loads(request.body)
        except (ValueError, RecursionError):
            raise HttpError(400, 'the body is not JSON; send {"ids": [1, 2]} or {"all": true}') from None
        done = await self.letters.act(action, body)
        return _json({"replayed" if action == "replay" else "deleted": done})

    def _page(self) -> bytes:
        return _assets.PAGE.format(
            csrf=html.escape(self.csrf),
            readonly="true" if self.readonly else "false",
        ).encode()


def _session_of(token: str) -> str:
    # The cookie is derived from the token, so the token itself never sits in the browser.
    return hmac.new(token.encode(), b"async-nexus console session", hashlib.sha256).hexdigest()


def _json(value: Any) -> Answer:
    return 200, json.dumps(value, default=str, allow_nan=False).encode(), _JSON, {}
