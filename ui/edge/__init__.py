"""The edge: what every HTTP request goes through before the app, one concern a middleware.

Each is an ASGI middleware in Starlette's own style, and knows nothing of Gradio: `ClientAddress` (who calls),
`SecurityHeaders` (what the page may load, where it may be framed), `CrossOriginPolicy` (another site's request
is an anonymous caller's), `BodyLimit` (413 past the size), `RateLimit` (429 past the rate), `LoginThrottle`
(failed logins). What knows Gradio's request formats is in `ui.gradio_internals`; `ui.launch` stacks them all.
"""

from __future__ import annotations

from ui.edge.body_limit import BodyLimit
from ui.edge.client_address import CallerForwarding, ClientAddress, connection_address
from ui.edge.cross_origin import CrossOriginPolicy, is_foreign
from ui.edge.login_throttle import LoginThrottle
from ui.edge.rate_limit import RateLimit
from ui.edge.security_headers import CONTENT_SECURITY_POLICY, SecurityHeaders

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "BodyLimit",
    "CallerForwarding",
    "ClientAddress",
    "CrossOriginPolicy",
    "LoginThrottle",
    "RateLimit",
    "SecurityHeaders",
    "connection_address",
    "is_foreign",
]
