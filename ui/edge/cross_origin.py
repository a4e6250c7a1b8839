"""Another site's request is an anonymous caller's: served without the visitor's cookies, never with credentials.

A page on another site can make the visitor's browser send requests here with the visitor's cookies (the sign-in
session, `APP_AUTH`'s access token: both `SameSite=None`), and read the answers when the response allows
credentials. So a request is *foreign* when its `Origin` is not this host (or is "null"), or, without an Origin,
when `Sec-Fetch-Site` says another site sent it and it is not a navigation. A foreign request:

- to a route that acts on the visitor's sign-in (`credentialed` paths: the token, login, logout, OAuth) gets 403,
  and so does a navigation from another site to one (a link or a form that logs the visitor out or in), but for
  the `callbacks` an identity provider sends the visitor back to (protected by their own state parameter);
- otherwise is served as if it had no cookies (the Cookie header and any session a middleware outside decoded are
  removed from what the app sees), with `Access-Control-Allow-Origin` so that the public API stays usable from
  other sites (`@gradio/client` sends no credentials to them), and never `Access-Control-Allow-Credentials`.

A navigation from another site (a link, the OAuth callback, the Space's iframe on huggingface.co) keeps its cookies:
it shows the page, and nothing of it is readable by the site it came from. When the app is served on a loopback
host, other sites get no CORS headers at all (as Gradio does), so a local app is not readable from the web.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ui.edge._http import refusal, route_path

__all__ = ["CrossOriginPolicy", "is_foreign"]

_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "0.0.0.0", "::1", "[::1]"}
_METHODS = "GET, HEAD, POST, OPTIONS"
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _host_and_port(netloc: str, scheme: str | None) -> tuple[str, int | None]:
    try:
        parts = urlsplit(f"//{netloc}")
        port = parts.port
    except ValueError:
        return netloc.lower(), None
    if port is None and scheme is not None:
        port = _DEFAULT_PORTS.get(scheme)
    return (parts.hostname or "").lower(), port


def _origin_matches(origin: str, host: str) -> bool:
    """Whether `origin` (scheme://host[:port]) names `host` (a Host header). A proxy in front may end TLS, so the
    scheme is not compared; a port left out means the scheme's default on the Origin's side, either on the Host's."""
    parts = urlsplit(origin)
    if not parts.scheme or not parts.netloc:
        return False
    origin_host, origin_port = _host_and_port(parts.netloc, parts.scheme)
    own_host, own_port = _host_and_port(host, None)
    if origin_host != own_host:
        return False
    return (own_port is None and origin_port in (80, 443)) or own_port == origin_port


def is_foreign(headers: Headers, hosts: Sequence[str]) -> bool:
    """Whether another site sent this request (see the module's docstring); `hosts` are the names this app
    answers to for this request (its Host header, and a trusted proxy's X-Forwarded-Host)."""
    origin = headers.get("origin")
    if origin is not None:
        return not any(_origin_matches(origin, host) for host in hosts if host)
    site = headers.get("sec-fetch-site")
    return site in ("cross-site", "same-site") and headers.get("sec-fetch-mode") != "navigate"


class CrossOriginPolicy:
    """The module's rules. `credentialed`: route paths that act on the visitor's sign-in (a path or a prefix
    ending in "/"); `callbacks`: those an identity provider navigates back to; `trust_forwarded_host`: whether
    the X-Forwarded-Host of a trusted proxy names this app too."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        credentialed: Sequence[str],
        callbacks: Sequence[str] = (),
        trust_forwarded_host: bool = False,
    ) -> None:
        self.app = app
        self.credentialed = tuple(credentialed)
        self.callbacks = frozenset(callbacks)
        self.trust_forwarded_host = trust_forwarded_host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        hosts = [host, headers.get("x-forwarded-host", "")] if self.trust_forwarded_host else [host]
        foreign = is_foreign(headers, hosts)
        path = route_path(scope)
        from_another_site = foreign or headers.get("sec-fetch-site") in ("cross-site", "same-site")
        if from_another_site and self._acts_on_sign_in(path) and path not in self.callbacks:
            response = refusal(403, "This route acts on a visitor's sign-in: another site may not call it.")
            await response(scope, receive, send)
            return
        if not foreign:
            await self.app(scope, receive, send)
            return
        origin = headers.get("origin")
        readable = origin is not None and _host_and_port(host, None)[0] not in _LOOPBACK_HOSTS
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            preflight = PlainTextResponse("OK", headers={"access-control-max-age": "600", "vary": "Origin"})
            if readable and origin is not None:
                preflight.headers["access-control-allow-origin"] = origin
                preflight.headers["access-control-allow-methods"] = _METHODS
                requested = headers.get("access-control-request-headers")
                if requested:
                    preflight.headers["access-control-allow-headers"] = requested
            await preflight(scope, receive, send)
            return

        async def send_anonymous(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                del response_headers["access-control-allow-credentials"]
                if readable and origin is not None:
                    response_headers["access-control-allow-origin"] = origin
                    response_headers.add_vary_header("Origin")
            await send(message)

        anonymous = dict(scope)
        anonymous["headers"] = [(name, value) for name, value in scope["headers"] if name != b"cookie"]
        if "session" in scope:
            # A copy: the session middleware outside keeps the visitor's own, so this request cannot end it.
            anonymous["session"] = {}
        await self.app(anonymous, receive, send_anonymous)

    def _acts_on_sign_in(self, path: str) -> bool:
        return any(path == entry or (entry.endswith("/") and path.startswith(entry)) for entry in self.credentialed)
