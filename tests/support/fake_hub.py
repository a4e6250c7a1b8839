"""A stand-in for the Hugging Face Hub, as much of it as the app's sign-in reaches: `GET /api/whoami-v2`.

Off Spaces, Gradio's mocked login asks the Hub who owns the local token (huggingface_hub.whoami, which honours
HF_ENDPOINT). This server answers for one token, as the Hub does: the account for it, 401 for any other.
"""

from __future__ import annotations

import threading
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.fake_openai import free_port

__all__ = ["FakeHub"]


class FakeHub:
    def __init__(self, *, token: str, username: str = "ada", fullname: str = "Ada Lovelace") -> None:
        self.token = token
        self.username = username
        self.fullname = fullname
        self.port = free_port()
        self.calls = 0
        app = Starlette(routes=[Route("/api/whoami-v2", self._whoami, methods=["GET"])])
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="critical"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _whoami(self, request: Request) -> Response:
        self.calls += 1
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"error": "Invalid credentials in Authorization header"}, status_code=401)
        return JSONResponse(
            {
                "type": "user",
                "id": "0123456789abcdef01234567",
                "name": self.username,
                "fullname": self.fullname,
                "email": None,
                "avatarUrl": "/avatars/ada.svg",
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "tests", "role": "read"}},
            }
        )

    def __enter__(self) -> FakeHub:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake Hub did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
