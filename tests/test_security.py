"""A whole session through a recording proxy, with recognisable secrets set: none may appear in any response or log."""

from __future__ import annotations

import base64
import json
import urllib.parse

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.support.apps import start_app, stop_app
from tests.support.fake_openai import Behaviour, FakeOpenAI, Fault
from tests.support.recording_proxy import RecordingProxy

pytestmark = pytest.mark.e2e

OPENAI_KEY = "sk-canary-0penai-7f3a9c"
HF_TOKEN = "hf_canaryToken8d2e1b"
PASSWORD = "pw-canary-4c6d"
HISTORY_SECRET = "history-canary-5e8f0a1b2c3d4e5f"
SECRETS = (OPENAI_KEY, HF_TOKEN, PASSWORD, HISTORY_SECRET)


def variants(secret: str) -> list[bytes]:
    """The secret as it could appear in a body: raw, any case, JSON-escaped, percent-encoded, or base64 (whole,
    and as the middle of a longer encoded `user:secret`)."""
    basic = base64.b64encode(f"ada:{secret}".encode())
    return [
        secret.encode(),
        secret.upper().encode(),
        json.dumps(secret).encode()[1:-1],
        urllib.parse.quote(secret, safe="").encode(),
        secret.replace("-", "%2D").encode(),
        base64.b64encode(secret.encode()).rstrip(b"="),
        basic[8:-4],
    ]


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory):
    """Run a full session (login, page, config, API info, chats, faults, tools) and return what was received."""
    with FakeOpenAI(Behaviour(delay=0.005)) as server:
        app = start_app(
            tmp_path_factory.mktemp("secrets"),
            OPENAI_BASE_URL=server.base_url,
            OPENAI_API_KEY=OPENAI_KEY,
            HF_TOKEN=HF_TOKEN,
            HISTORY_SECRET=HISTORY_SECRET,
            APP_AUTH=f"ada:{PASSWORD}",
            LLM_MODEL="fake-model",
            LLM_MAX_RETRIES="0",
        )
        try:
            with RecordingProxy(app.url) as proxy:
                with httpx.Client(base_url=proxy.url, timeout=10) as http:
                    http.get("/")  # the login page
                    http.get("/config")
                    http.post("/login", data={"username": "ada", "password": "wrong"})
                    http.post("/login", data={"username": "ada", "password": PASSWORD})
                    for path in ("/", "/config", "/gradio_api/info", "/gradio_api/openapi.json", "/manifest.json"):
                        http.get(path)
                client = Client(proxy.url, auth=("ada", PASSWORD), verbose=False)
                client.view_api(print_info=False)
                replies = [client.predict("hello secret world", api_name="/chat")]
                quoted = base64.b64encode(f"user:{OPENAI_KEY}".encode())
                faults = (
                    Fault(status=401),
                    Fault(status=500),
                    Fault(status=400, message=f"bad {OPENAI_KEY}"),
                    Fault(status=400, message=f"bad {OPENAI_KEY.upper()} {urllib.parse.quote(OPENAI_KEY)}"),
                    Fault(status=400, message=f"Authorization: Basic {quoted.decode()}"),
                    Fault(error_after=1, message=f"upstream: Authorization: Bearer {OPENAI_KEY}"),
                    Fault(error_after=1, message=f"event for {HF_TOKEN}", error_event=True),
                )
                for fault in faults:
                    server.behaviour.faults.append(fault)
                    with pytest.raises(AppError):
                        client.predict("again", api_name="/chat")
                server.behaviour.faults.append(Fault(cut_after=2))
                with pytest.raises(AppError):
                    client.predict("one two three", api_name="/chat")
                replies.append(client.predict("Ada", api_name="/greet"))
                with pytest.raises(AppError):
                    client.predict("x" * 200_000, api_name="/reverse")
                received = proxy.received
            authorization = server.requests[0]["_headers"]["authorization"]
        finally:
            stop_app(app)
    return {"received": received, "log": app.log(), "replies": replies, "authorization": authorization}


class TestSecretsNeverLeak:
    def test_the_session_really_ran(self, session):
        """The scan below is not vacuous: the key reached the backend and the replies came back through the proxy."""
        assert session["authorization"] == f"Bearer {OPENAI_KEY}"
        assert session["replies"] == ["You said: hello secret world", "Hello, Ada!"]
        assert b"You said: hello secret world" in session["received"]
        assert b"rejected the credentials (HTTP 401)" in session["received"]
        assert len(session["received"]) > 20_000

    @pytest.mark.parametrize("secret", SECRETS)
    def test_no_response_carries_a_secret(self, session, secret):
        """Page, config, API info, SSE messages and error texts: not one byte of any secret."""
        for variant in variants(secret):
            assert variant not in session["received"], f"{secret!r} was sent to a client"

    @pytest.mark.parametrize("secret", SECRETS)
    def test_logs_carry_no_secret(self, session, secret):
        """The app's whole output, errors included, never prints a secret."""
        assert secret not in session["log"]
        assert "Traceback" not in session["log"]
