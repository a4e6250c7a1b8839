"""Gradio's own CORS middleware stands aside for the app's cross-origin policy (`ui.edge.CrossOriginPolicy`).

Gradio 6.31 wraps every app in `route_utils.CustomCORSMiddleware`, which answers any Origin with
`Access-Control-Allow-Origin: <origin>` and `Access-Control-Allow-Credentials: true` unless the host is localhost:
another site's page could then call the API with the visitor's cookies and read the answer. It sits outside the
app's own middlewares (routes.py adds it after the app is built), so they cannot undo what it adds to a response.
Gradio stands it aside only for a parent FastAPI app with Starlette's CORSMiddleware (mount_gradio_app).

`stand_aside_for` replaces the name routes.py builds it from with a factory that returns the wrapped app as it
is when a `CrossOriginPolicy` is among the middlewares inside, and Gradio's own middleware otherwise (any other
Blocks in the process keeps Gradio's behaviour).

Upstream: docs/upstream/gradio.md, and gradio-app/gradio's reports of credentialed CORS (not fixed in 6.31).
Delete when Gradio allows credentials only for origins an app lists.
"""

from __future__ import annotations

from typing import Any

import gradio.route_utils
import gradio.routes
from starlette.types import ASGIApp

from ui.edge import CrossOriginPolicy

__all__ = ["GRADIOS_CORS", "stand_aside_for"]

GRADIOS_CORS = gradio.route_utils.CustomCORSMiddleware


def _has_policy(app: object) -> bool:
    # The middlewares inside, outermost first: each keeps the next in `.app`.
    for _ in range(32):
        if isinstance(app, CrossOriginPolicy):
            return True
        app = getattr(app, "app", None)
        if app is None:
            return False
    return False


def _cors_unless_policy(app: ASGIApp, *args: Any, **kwargs: Any) -> ASGIApp:
    if _has_policy(app):
        return app
    return GRADIOS_CORS(app, *args, **kwargs)


def stand_aside_for() -> None:
    """Have Gradio's CORS middleware stand aside wherever the app's own policy is in the stack."""
    gradio.routes.CustomCORSMiddleware = _cors_unless_policy  # type: ignore[assignment,misc]
