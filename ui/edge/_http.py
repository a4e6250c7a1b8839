"""What the edge's middlewares share: the route path of a request, and the one shape of a refusal."""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import Scope

__all__ = ["refusal", "route_path"]


def route_path(scope: Scope) -> str:
    """The request's path within the app (without the root path a proxy mounts it under), no trailing slash."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path.rstrip("/") or "/"


def refusal(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """A refusal as FastAPI words its own (`{"detail": ...}`), with a sentence for people."""
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)
