"""Every response says what the page may load, where it may be framed and where its forms may post.

- Images and media from the app itself only (plus data: and blob: URLs the page makes), so that no model output
  can make a visitor's browser fetch from elsewhere.
- `frame-ancestors 'self' https://huggingface.co`: a Space shows the app in an iframe on huggingface.co, and no
  other site may frame it (clickjacking).
- `form-action 'self'`: a form that hostile content slips into the page cannot post anywhere else.
- `base-uri 'self'` and `object-src 'none'`: no `<base>` redirecting the page's relative URLs, no plugins.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONTENT_SECURITY_POLICY", "SecurityHeaders"]

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "img-src 'self' data: blob:",
        "media-src 'self' data: blob:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'self' https://huggingface.co",
    )
)
HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "strict-origin-when-cross-origin",
}


class SecurityHeaders:
    """Adds `HEADERS` to every HTTP response, refusals of the middlewares inside it included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
