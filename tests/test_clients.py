"""Every client its users have, against the launched app: gradio_client (and its oauth_token), curl as README
shows it, gr.load, and what each of them reads of the API (names, types, descriptions)."""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator

import gradio as gr
import gradio.external
import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.support.apps import ROOT, RunningApp, running_app
from tests.support.fake_openai import Behaviour, FakeOpenAI, Fault, free_port

pytestmark = pytest.mark.e2e

OWNER_TOKEN = "hf_owner_token_of_the_space_0123"
VISITOR_TOKEN = "hf_visitor_token_abcdef_987654"
ENDPOINTS = {"/chat", "/ask", "/greet", "/reverse", "/upper", "/lower", "/title", "/slugify", "/count", "/increment",
             "/reset_counter"}  # fmt: skip


class TestDescribed:
    def test_every_endpoint_is_described_and_typed(self, app: RunningApp):
        """/gradio_api/info: every endpoint has a description and named parameters; max_tokens is an integer,
        /count returns three integers, /chat a string."""
        info = httpx.get(app.url + "gradio_api/info", timeout=10).json()["named_endpoints"]
        assert set(info) == ENDPOINTS
        for name, endpoint in info.items():
            assert endpoint["description"].strip(), name
        chat = {p["parameter_name"]: p["type"] for p in info["/chat"]["parameters"]}
        assert chat["max_tokens"] == {"type": "integer"}
        assert [r["python_type"]["type"] for r in info["/count"]["returns"]] == ["int", "int", "int"]
        assert [r["python_type"]["type"] for r in info["/chat"]["returns"]] == ["str"]

    def test_openapi_lists_every_endpoint(self, app: RunningApp):
        """/gradio_api/openapi.json has each endpoint's call routes (by name, and for the result)."""
        paths = httpx.get(app.url + "gradio_api/openapi.json", timeout=10).json()["paths"]
        for name in ENDPOINTS:
            assert f"/gradio_api/call/v2{name}" in paths, name
            assert f"/gradio_api/call{name}/{{event_id}}" in paths, name


class TestGradioClient:
    def test_a_stream_yields_its_final_value_once(self, app: RunningApp, fake: FakeOpenAI):
        """Iterating a /chat job gives growing values, each once, the last the whole reply."""
        fake.behaviour.tokens = 30
        job = Client(app.url, verbose=False).submit("go", api_name="/chat")
        values = list(job)
        assert values[-1] == job.result() == "".join(f"t{i} " for i in range(30))
        assert len(values) == len(set(values))

    def test_the_api_returns_the_answer_without_the_thinking(self, app: RunningApp, fake: FakeOpenAI):
        """A reasoning model's thinking is not in /chat's result, nor sent back in the next turn."""
        fake.behaviour.thinking = "private thoughts"
        client = Client(app.url, verbose=False)
        assert client.predict("think", api_name="/chat") == "You said: think"
        client.predict("next", api_name="/chat")
        assert "private thoughts" not in str(fake.requests[-1]["messages"])

    def test_a_reply_that_only_thought_is_an_error(self, app: RunningApp, fake: FakeOpenAI):
        """All of max_tokens spent thinking: /chat says so, rather than returning ""."""
        fake.behaviour.thinking = "a b c d e f"
        with pytest.raises(AppError, match=r"^max_tokens: The model spent all 3 tokens thinking"):
            Client(app.url, verbose=False).predict("think", "s", 0.5, 3, api_name="/chat")


class TestCurl:
    def test_the_readme_commands_print_what_it_shows(self, app: RunningApp):
        """README's curl commands, run in bash against the app, print exactly the block that follows them."""
        http = README.split("### HTTP (curl)", 1)[1]
        commands, shown = re.findall(r"```(?:bash|text)\n(.*?)```", http, flags=re.S)[:2]
        script = commands.replace("http://127.0.0.1:7860", app.url.rstrip("/"))
        result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, check=True)
        assert result.stdout.strip() == shown.strip()

    def test_one_session_hash_is_one_conversation(self, app: RunningApp, fake: FakeOpenAI):
        """Two /call/chat calls with the same session_hash: the second carries the first exchange."""
        session = str(uuid.uuid4())
        with httpx.Client(base_url=app.url, timeout=20) as http:
            for message in ("my name is Ada", "what is my name"):
                body = {"data": [message], "session_hash": session}
                event = http.post("gradio_api/call/chat", json=body).json()["event_id"]
                http.get(f"gradio_api/call/chat/{event}")
        assert fake.requests[-1]["messages"][1:] == [
            {"role": "user", "content": "my name is Ada"},
            {"role": "assistant", "content": "You said: my name is Ada"},
            {"role": "user", "content": "what is my name"},
        ]


README = (ROOT / "README.md").read_text()


class TestGradioLoad:
    def test_another_app_loads_the_space_and_its_endpoints_answer(self, app: RunningApp):
        """gr.load's path for a Space (Blocks.from_config through from_spaces_blocks) rebuilds the running app,
        and its endpoints answer from the loading app."""
        loaded = gr.load(app.url, src=gradio.external.from_spaces_blocks)
        try:
            _, url, _ = loaded.launch(prevent_thread_lock=True, server_port=free_port(), quiet=True)
            client = Client(url, verbose=False)
            assert client.predict("Ada", api_name="/greet") == "Hello, Ada!"
            assert client.predict("stressed", api_name="/reverse") == "desserts"
            # A loaded copy rebuilds each input from the Space's config, where `files` has no default (Gradio keeps
            # a component's default only when it is a value): the copy's callers give every input.
            assert client.predict("loaded", "", 0.7, 512, "", None, api_name="/chat") == "You said: loaded"
        finally:
            loaded.close()


@pytest.fixture(scope="module")
def router() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(Behaviour(delay=0.0)) as server:
        yield server


@pytest.fixture(scope="module")
def space_app(router: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """The app as on a Space with `hf_oauth: true`: Spaces' OAuth variables set, the owner's HF_TOKEN for
    anonymous visitors, and the router (a stand-in) for both."""
    env = {
        "SPACE_ID": "someone/space-chat",
        "SYSTEM": "spaces",
        "SPACE_HOST": "someone-space-chat.hf.space",
        "OAUTH_CLIENT_ID": "client-id",
        "OAUTH_CLIENT_SECRET": "client-secret-of-the-space-oauth-app",
        "OAUTH_SCOPES": "openid profile inference-api",
        "OPENID_PROVIDER_URL": f"http://127.0.0.1:{free_port()}",
        "HF_TOKEN": OWNER_TOKEN,
        "HF_ROUTER_URL": router.base_url,
        "HF_ROUTER_MODELS": "fake-model",
        "TRUSTED_PROXIES": "0",
    }
    with running_app(tmp_path_factory.mktemp("space"), **env) as running:
        yield running


class TestOAuthToken:
    def test_a_visitor_token_reaches_the_router_and_nothing_else(self, space_app: RunningApp, router: FakeOpenAI):
        """gradio_client's oauth_token: the router gets that token; an anonymous call gets the owner's."""
        router.reset()
        visitor = Client(space_app.url, verbose=False, oauth_token=VISITOR_TOKEN)
        assert visitor.predict("as a visitor", api_name="/chat") == "You said: as a visitor"
        assert router.requests[-1]["_headers"]["authorization"] == f"Bearer {VISITOR_TOKEN}"
        assert Client(space_app.url, verbose=False).predict("anonymous", api_name="/chat") == "You said: anonymous"
        assert router.requests[-1]["_headers"]["authorization"] == f"Bearer {OWNER_TOKEN}"
        assert VISITOR_TOKEN not in space_app.log()

    def test_a_visitor_token_in_an_upstream_error_is_masked(self, space_app: RunningApp, router: FakeOpenAI):
        """A router 400 quoting the visitor's token: the error keeps the router's words, with the token masked."""
        router.reset()
        router.behaviour.faults.append(Fault(status=400, message=f"token {VISITOR_TOKEN} is not allowed"))
        with pytest.raises(AppError) as caught:
            Client(space_app.url, verbose=False, oauth_token=VISITOR_TOKEN).predict("x", api_name="/chat")
        assert VISITOR_TOKEN not in str(caught.value)
        assert "token *** is not allowed" in str(caught.value)
        assert VISITOR_TOKEN not in space_app.log()

    def test_the_space_offers_sign_in(self, space_app: RunningApp):
        """On a Space with its OAuth app, the page has the sign-in button, and the status line invites it."""
        config = httpx.get(space_app.url + "config", timeout=10).json()
        values = [c["props"].get("value") for c in config["components"]]
        assert "Sign in with Hugging Face" in values
        assert any("Sign in with Hugging Face to chat on your own account" in str(value) for value in values)
