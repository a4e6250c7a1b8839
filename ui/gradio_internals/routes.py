"""Gradio's routes (gradio/routes.py, oauth.py, mcp.py in 6.31) that the edge treats apart, by what they do."""

from __future__ import annotations

__all__ = ["MCP_PATHS", "SIGN_IN_CALLBACKS", "SIGN_IN_PATHS", "UPLOAD_PATH", "is_static", "is_upload"]

UPLOAD_PATH = "/gradio_api/upload"
# The MCP server, both transports: the requests whose tools Gradio runs through its own loopback client.
MCP_PATHS = ("/gradio_api/mcp",)
# What acts on or tells a visitor's sign-in: APP_AUTH's login, logout and token, the OAuth routes, the user.
# An entry ending in "/" is a prefix.
SIGN_IN_PATHS = ("/login", "/login/", "/logout", "/gradio_api/token", "/gradio_api/user")
# Where Hugging Face sends the visitor back after sign-in: a navigation from its site, checked by OAuth's state.
SIGN_IN_CALLBACKS = ("/login/callback",)
# The page's files: the same for every visitor, cheap, and many per page load.
_STATIC = (
    "/assets/",
    "/static/",
    "/svelte/",
    "/favicon.ico",
    "/theme.css",
    "/gradio_api/theme.css",
    "/manifest.json",
    "/pwa_icon",
    "/robots.txt",
    "/gradio_api/custom_component/",
)


def is_static(method: str, path: str) -> bool:
    """Whether this request fetches one of the page's own files."""
    return method in ("GET", "HEAD") and path.startswith(_STATIC)


def is_upload(method: str, path: str) -> bool:
    return method == "POST" and path == UPLOAD_PATH
