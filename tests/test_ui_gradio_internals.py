"""What the app relies on of Gradio's internals still holds on the installed Gradio, and each patch takes.

Every test here fails (none warns) when a Gradio release moves what a patch relies on: run them after any change
of the pin, then fix the patch or move the checked range in ui/gradio_internals/_version.py.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import os
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import gradio as gr
import gradio.queueing
import gradio.state_holder
import pytest
from gradio.data_classes import FileData
from gradio.server_messages import ProcessCompletedMessage
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from services.session_keys import SessionKeys
from ui import gradio_internals
from ui.gradio_internals import called_through_mcp, cors, keep_out_of_mcp, unread, uploads
from ui.gradio_internals.chatbot import text_message
from ui.gradio_internals.endpoints import ApiShape, EventShape
from ui.gradio_internals.mcp import MCP_CLIENT_HEADER
from ui.gradio_internals.performance import (
    SessionStateWithoutDeepLinks,
    UnkeptConfigs,
    cache_init_signatures,
    skip_missing_matplotlib,
    wake_the_idle_queue_on_push,
)
from ui.gradio_internals.requests import SESSION_CARRIERS, GradioRequestGuard

pytestmark = pytest.mark.unit


def small_blocks() -> gr.Blocks:
    with gr.Blocks() as demo:
        text = gr.Textbox("start")
        out = gr.Textbox()
        gr.Button().click(lambda value: value, text, out)
    return demo


@pytest.fixture
def restore_gradio():
    """Undo what `apply` does to Gradio itself."""
    session_state = gradio.state_holder.SessionState
    queueing_asyncio = gradio.queueing.asyncio
    matplotlib = sys.modules.get("matplotlib", "absent")
    yield
    gradio.state_holder.SessionState = session_state
    gradio.queueing.asyncio = queueing_asyncio
    if matplotlib == "absent":
        sys.modules.pop("matplotlib", None)
    else:
        sys.modules["matplotlib"] = matplotlib


class TestVersionGuard:
    def test_the_pinned_version_is_the_one_installed(self):
        """The pin in requirements.txt and the version the patches were written for agree."""
        assert gr.__version__ == gradio_internals.PATCHED_VERSION

    def test_another_version_warns_and_changes_nothing(self, monkeypatch, restore_gradio):
        """On a Gradio outside the checked range, apply() warns and leaves Gradio as it is."""
        monkeypatch.setattr(gr, "__version__", "7.0.0")
        before = gradio.state_holder.SessionState
        with pytest.warns(UserWarning, match=r"written for gradio 6.31.0 \(checked from 6.31.0 up to 6.32.0\), not 7"):
            gradio_internals.apply(small_blocks())
        assert gradio.state_holder.SessionState is before

    @pytest.mark.parametrize(("version", "checked"), [("6.31.0", True), ("6.31.4", True), ("6.32.0", False)])
    def test_the_range_holds_patch_releases(self, monkeypatch, version, checked):
        """A patch release of the pinned minor version is within the range; the next minor is not."""
        from ui.gradio_internals._version import on_checked_version

        monkeypatch.setattr(gr, "__version__", version)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert on_checked_version("a test") is checked

    def test_keep_out_of_mcp_does_nothing_on_another_version(self, monkeypatch):
        """The MCP switch sets Gradio's private attribute only on the version it was checked against."""
        monkeypatch.setattr(gr, "__version__", "7.0.0")

        def tool() -> None:
            """A tool."""

        with pytest.warns(UserWarning, match="keep_out_of_mcp skipped"):
            kept = keep_out_of_mcp(tool)
        assert not hasattr(kept, "_mcp_type")


class TestSessionsWithoutDeepLinks:
    def test_gradio_own_init_runs_and_no_config_is_built(self, restore_gradio):
        """The session is Gradio's own (its __init__ sets every field it has), with configs that are never built
        nor kept, whatever an event records in them."""
        demo = small_blocks()
        session = SessionStateWithoutDeepLinks(demo)
        plain = gradio.state_holder.SessionState(demo)
        assert set(vars(session)) == set(vars(plain))
        text_id = next(i for i, block in demo.blocks.items() if isinstance(block, gr.Textbox))
        session._update_value_in_config(text_id, "a 6 MB conversation")
        built: list[int] = []
        session.blocks_config.config_for_block = lambda key, *args: built.append(key)  # type: ignore[method-assign]
        session[text_id] = gr.Textbox("made by a property update", render=False)
        session._update_config(text_id)
        assert built == []
        assert list(session.config_values) == []
        assert session.config_values[text_id] == {}
        assert list(session.components) == []

    def test_setting_a_value_does_what_gradios_own_does(self):
        """A State's value and its time to live, and the component an update made, as Gradio's own session keeps
        them."""
        with gr.Blocks() as demo:
            state = gr.State(time_to_live=60)
            text = gr.Textbox()
        ours, plain = SessionStateWithoutDeepLinks(demo), gradio.state_holder.SessionState(demo)
        replacement = gr.Textbox("updated", render=False)
        for session in (ours, plain):
            session[state._id] = {"turns": 3}
            session[text._id] = replacement
        assert ours.state_data == plain.state_data == {state._id: {"turns": 3}}
        assert ours._state_ttl[state._id][0] == plain._state_ttl[state._id][0] == 60
        assert ours[text._id] is plain[text._id] is replacement

    def test_unkept_configs_read_as_present_and_empty(self):
        """The mapping answers Gradio's reads without building anything, and drops its writes."""
        configs = UnkeptConfigs()
        configs[3] = {"props": {"value": "x"}}
        assert 3 in configs
        assert configs[3] == {}
        assert len(configs) == 0

    def test_apply_makes_gradio_build_such_sessions(self, restore_gradio):
        """After apply(), the sessions Gradio's own StateHolder makes are SessionStateWithoutDeepLinks."""
        demo = small_blocks()
        gradio_internals.apply(demo)
        holder = gradio.state_holder.StateHolder()
        holder.set_blocks(demo)
        assert type(holder["a-session"]) is SessionStateWithoutDeepLinks


class TestMatplotlib:
    def test_an_absent_matplotlib_fails_at_once(self, restore_gradio):
        """Without matplotlib installed, its import fails from sys.modules instead of a search of sys.path."""
        if importlib.util.find_spec("matplotlib") is not None:
            pytest.fail("matplotlib is installed here: this test needs the Space's environment, which has none")
        skip_missing_matplotlib()
        with pytest.raises(ImportError):
            import matplotlib  # noqa: F401


class TestIdleQueue:
    def test_an_idle_queue_waits_for_a_push_and_a_push_wakes_it(self, restore_gradio, monkeypatch):
        """Gradio's two queue loops, run for real: idle, they look for work a few times in 0.3 s (Gradio's own
        loops look every millisecond); a push (here one Gradio refuses at once) wakes them within milliseconds.
        Twice, each on a loop of its own, as a Blocks closed and launched again runs its queue."""
        demo = small_blocks()
        wake_the_idle_queue_on_push(demo)
        queue = demo._queue
        looks = 0
        length = gradio.queueing.Queue.__len__

        def counted(self: gradio.queueing.Queue) -> int:
            nonlocal looks
            looks += 1
            return length(self)

        monkeypatch.setattr(gradio.queueing.Queue, "__len__", counted)

        async def scenario() -> tuple[int, int]:
            nonlocal looks
            queue.stopped, looks = False, 0
            loops = [asyncio.create_task(queue.start_processing()), asyncio.create_task(queue.start_progress_updates())]
            await asyncio.sleep(0.3)
            idle = looks
            refused = await queue.push(SimpleNamespace(fn_index=None), None, None)  # type: ignore[arg-type]
            assert refused[2] == "error"
            # Both look again at once; unwoken, they would wait out IDLE_WAIT_SECONDS (1 s from their last look).
            deadline = time.monotonic() + 0.5
            while looks - idle < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            woken = looks - idle
            queue.stopped = True
            await queue.push(SimpleNamespace(fn_index=None), None, None)  # type: ignore[arg-type]  # they see it
            assert await asyncio.gather(*loops, return_exceptions=True) == [None, None]  # neither loop failed
            return idle, woken

        for _ in range(2):
            idle, woken = asyncio.run(scenario())
            assert idle <= 10
            assert woken >= 2

    def test_with_work_about_it_polls_as_gradio_does(self, restore_gradio):
        """A queued or running job: the poll is Gradio's own interval, not the idle wait."""
        demo = small_blocks()
        wake_the_idle_queue_on_push(demo)
        queue = demo._queue
        queue.active_jobs = [[object()]]  # type: ignore[list-item]

        async def one_poll() -> float:
            started = time.perf_counter()
            await gradio.queueing.asyncio.sleep(queue.sleep_when_free)
            return time.perf_counter() - started

        assert asyncio.run(one_poll()) < 0.1
        assert float(queue.sleep_when_free) == 0.001


class TestSignatures:
    def test_the_cached_signature_is_the_computed_one(self):
        """A component class's __signature__ is what inspect computes: nothing but the time changes."""
        import inspect

        demo = small_blocks()
        cache_init_signatures(demo)
        init = gr.Textbox.__init__
        assert init.__signature__ == inspect.Signature.from_callable(init, follow_wrapped=False)


class TestMcp:
    def test_kept_out_functions_are_not_tools(self):
        """Gradio's MCP server lists only functions whose _mcp_type is unset or "tool"."""

        def session_thing() -> int:
            """Counts."""
            return 1

        assert keep_out_of_mcp(session_thing)._mcp_type != "tool"  # type: ignore[attr-defined]

    def test_gradios_mcp_server_lists_no_kept_out_function(self):
        """Gradio's own MCP server, built for a Blocks, leaves out the endpoint marked session-only."""
        from gradio.mcp import GradioMCPServer

        @keep_out_of_mcp
        def session_thing(text: str) -> str:
            """Counts.

            Args:
                text: A text.
            """
            return text

        def tool(text: str) -> str:
            """Echoes.

            Args:
                text: A text.
            """
            return text

        with gr.Blocks() as demo:
            box = gr.Textbox()
            gr.Button().click(session_thing, box, box, api_name="session_thing")
            gr.Button().click(tool, box, box, api_name="tool")
        names = {tool.name for tool in asyncio.run(_list_tools(GradioMCPServer(demo)))}
        assert names == {"tool"}

    def test_gradios_mcp_client_sends_the_header(self):
        """The header `called_through_mcp` looks for is the one Gradio's loopback client is built with."""
        from gradio.mcp import GradioMCPServer

        name, value = MCP_CLIENT_HEADER
        assert f'headers={{"{name}": "{value}"}}' in inspect.getsource(GradioMCPServer._get_or_create_client)

    def test_calls_through_gradios_mcp_client_are_recognised(self):
        """The header Gradio's MCP loopback client sends marks the call; a plain request is not one."""
        assert called_through_mcp(gr.Request(headers={"x-gradio-user": "mcp"}))
        assert not called_through_mcp(gr.Request(headers={}))
        assert not called_through_mcp(None)


class TestListsOfFilesOverMcp:
    @staticmethod
    def server() -> Any:
        from gradio.mcp import GradioMCPServer

        def read(files: list[Any] | None = None) -> str:
            """Reads.

            Args:
                files: Some files.
            """
            return ""

        with gr.Blocks() as demo:
            gr.Button().click(read, gr.File(file_count="multiple"), gr.Textbox(), api_name="read")
        return GradioMCPServer(demo)

    def test_gradio_alone_leaves_a_dangling_ref_and_unmatched_positions(self):
        """What the patch is for, on Gradio's own code: if this fails, Gradio has fixed it (delete the patch)."""
        from gradio.mcp import GradioMCPServer

        original = getattr(GradioMCPServer.get_input_schema, "__wrapped__", GradioMCPServer.get_input_schema)
        schema, positions = original(self.server(), "read")
        assert schema["properties"]["files"]["items"]["$ref"] == "#/$defs/FileData"
        assert "$defs" not in schema
        assert ["files", "items"] in positions

    def test_the_schema_resolves_and_each_file_converts(self, tmp_path):
        """With the patch: no `$ref` left, and a data: URL in the list becomes a file the app receives."""
        gradio_internals.accept_lists_of_files()
        server = self.server()
        schema, positions = server.get_input_schema("read")
        assert "$ref" not in json.dumps(schema)
        converted = server.convert_strings_to_filedata({"files": ["data:text/plain;base64,aGk="]}, positions)
        assert converted["files"][0]["meta"] == {"_type": "gradio.FileData"}


class TestChatbotShape:
    @pytest.mark.parametrize("metadata", [None, {"title": "Thinking", "status": "done", "duration": 1.5}])
    def test_text_message_is_what_postprocess_gives(self, metadata):
        """A message built ready-made is exactly what Chatbot.postprocess makes of it, indentation kept."""
        message = text_message("assistant", "  def f():\n      return 1", metadata)
        assert gr.Chatbot().postprocess([message]).model_dump() == [message]


async def _list_tools(server: Any) -> list[Any]:
    """The MCP server's tools/list, as its handler answers outside a connection (no tool selection asked)."""
    from mcp.server.lowlevel.server import request_ctx
    from mcp.shared.context import RequestContext
    from mcp.types import ListToolsRequest

    request_ctx.set(RequestContext(request_id=1, meta=None, session=None, lifespan_context=None))
    handler = server.mcp_server.request_handlers[ListToolsRequest]
    result = await handler(ListToolsRequest(method="tools/list"))
    return list(result.root.tools)


def test_no_warning_on_the_pinned_version(restore_gradio):
    """apply() on the pinned version is silent."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gradio_internals.apply(small_blocks())


# The guard of Gradio's request formats, in-process against a tiny app that echoes what Gradio would receive.


def _guarded(*, per_minute: int | None = None) -> TestClient:
    async def echo(request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse(
            {
                "path": request.url.path,
                "query": dict(request.query_params),
                "body": json.loads(body) if body else None,
            }
        )

    shapes = {
        "greet": ApiShape("greet", (("name", False, None),)),
        "chat": ApiShape("chat", (("message", False, None), ("temperature", True, 0.7))),
    }
    events = {0: EventShape(1), 1: EventShape(1, file_models={0: FileData})}
    sessions = SessionKeys(ttl=3600, per_address=None, per_minute=per_minute, capacity=100, secret=b"k" * 32)
    app = Starlette(
        routes=[Route("/{path:path}", echo, methods=["GET", "POST"])],
        middleware=[
            Middleware(GradioRequestGuard, shapes=lambda: shapes, events=lambda: events, sessions=sessions),
        ],
    )
    http = TestClient(app, client=("203.0.113.5", 1))
    http.sessions = sessions  # type: ignore[attr-defined]
    return http


HASH = "k3j9x0q2mz"
DEEP: list[Any] = ["x"]
for _ in range(40):
    DEEP = [DEEP]


class TestRequestGuard:
    def test_every_carrier_of_a_session_hash_is_bound(self):
        """The join's body, the event stream's query, /call's body, cancel's body, the heartbeat's and the media
        streams' path: Gradio sees the same bound key in each, never the caller's hash."""
        http = _guarded()
        key = http.sessions.bind(HASH, "203.0.113.5")
        join = http.post("/gradio_api/queue/join", json={"data": ["hi"], "fn_index": 0, "session_hash": HASH})
        assert join.json()["body"]["session_hash"] == key
        assert http.get("/gradio_api/queue/data", params={"session_hash": HASH}).json()["query"]["session_hash"] == key
        call = http.post("/gradio_api/call/greet", json={"data": ["Ada"], "session_hash": HASH})
        assert call.json()["body"] == {"data": ["Ada"], "session_hash": key}
        cancel = http.post("/gradio_api/cancel", json={"session_hash": HASH, "fn_index": 0, "event_id": "e"})
        assert cancel.json()["body"]["session_hash"] == key
        # The page's events outside the queue (Stop, undo, the page's load) go to /run/predict.
        quick = http.post("/gradio_api/run/predict", json={"data": ["x"], "fn_index": 0, "session_hash": HASH})
        assert quick.json()["body"]["session_hash"] == key
        chunk = http.post("/gradio_api/stream/event-1", json={"data": ["x"], "session_hash": HASH})
        assert chunk.json()["body"]["session_hash"] == key
        assert http.get(f"/gradio_api/heartbeat/{HASH}").json()["path"] == f"/gradio_api/heartbeat/{key}"
        stream = http.get(f"/gradio_api/stream/{HASH}/run/3/playlist.m3u8").json()["path"]
        assert stream == f"/gradio_api/stream/{key}/run/3/playlist.m3u8"

    def test_files_only_as_uploads_where_an_input_takes_them(self, tmp_path, monkeypatch):
        """A file reference names a file of the upload folder, in an input that takes files: a URL (which Gradio
        would fetch), a path elsewhere (a traceback in Gradio), a reference where no file is taken, or a value of
        the wrong shape are refused with a 422 before Gradio sees them."""
        from ui.gradio_internals import requests

        monkeypatch.setattr(requests, "get_upload_folder", lambda: str(tmp_path))
        (tmp_path / "h").mkdir()
        (tmp_path / "h" / "note.txt").write_text("hi")
        http = _guarded()

        def join(value: object) -> Any:
            return http.post("/gradio_api/queue/join", json={"data": [value], "fn_index": 1, "session_hash": HASH})

        uploaded = {"path": str(tmp_path / "h" / "note.txt"), "meta": {"_type": "gradio.FileData"}}
        assert join(uploaded).status_code == 200
        for path in ("https://example.org/x.png", "/etc/passwd", str(tmp_path / ".." / "x"), "data:text/plain,hi"):
            refused = join({"path": path, "meta": {"_type": "gradio.FileData"}})
            assert refused.status_code == 422
            assert refused.json()["detail"].startswith("Event 1's input 0 names a file that was")
        assert join("not a file").json()["detail"].startswith("Event 1's input 0 takes files uploaded")
        elsewhere = http.post("/gradio_api/queue/join", json={"data": [uploaded], "fn_index": 0, "session_hash": HASH})
        assert elsewhere.json()["detail"] == "Event 0's input 0 takes no files; the request sent a file reference."

    def test_another_address_gets_another_key(self):
        http = _guarded()
        mine = http.post("/gradio_api/call/greet", json={"data": ["Ada"], "session_hash": HASH}).json()
        stranger = TestClient(http.app, client=("198.51.100.7", 1))
        theirs = stranger.post("/gradio_api/call/greet", json={"data": ["Ada"], "session_hash": HASH}).json()
        assert mine["body"]["session_hash"] != theirs["body"]["session_hash"]

    @pytest.mark.parametrize(
        ("method", "path", "kwargs"),
        [
            ("POST", "/gradio_api/queue/join", {"json": {"data": ["x"], "fn_index": 0, "session_hash": "my-chat-1"}}),
            ("POST", "/gradio_api/call/greet", {"json": {"data": ["x"], "session_hash": "my-session-1"}}),
            ("GET", "/gradio_api/queue/data", {"params": {"session_hash": "my-session-1"}}),
            ("GET", "/gradio_api/heartbeat/my-session-1", {}),
            ("POST", "/gradio_api/cancel", {"json": {"session_hash": "abc", "fn_index": 0, "event_id": "e"}}),
        ],
    )
    def test_a_guessable_hash_is_refused_wherever_it_is(self, method, path, kwargs):
        refused = _guarded().request(method, path, **kwargs)
        assert refused.status_code == 422
        assert "session hash" in refused.json()["detail"]

    def test_a_call_without_a_hash_is_left_to_gradio(self):
        """Gradio names such a call's session after its event: one call, one session."""
        body = _guarded().post("/gradio_api/call/greet", json={"data": ["Ada"]}).json()["body"]
        assert body == {"data": ["Ada"]}

    def test_new_sessions_past_the_bound_get_429(self):
        http = _guarded(per_minute=3)
        statuses = [
            http.post("/gradio_api/call/greet", json={"data": ["x"], "session_hash": uuid.uuid4().hex}).status_code
            for _ in range(5)
        ]
        assert statuses == [200, 200, 200, 429, 429]
        refused = http.post("/gradio_api/call/greet", json={"data": ["x"], "session_hash": uuid.uuid4().hex})
        assert "Too many new sessions from this address" in refused.json()["detail"]
        assert int(refused.headers["retry-after"]) >= 1
        # Sessions already started go on; reading a stream starts none.
        first = http.post("/gradio_api/call/greet", json={"data": ["x"], "session_hash": HASH})
        assert first.status_code == 429
        assert http.get("/gradio_api/queue/data", params={"session_hash": uuid.uuid4().hex}).status_code == 200

    def test_routes_the_space_does_not_use(self):
        http = _guarded()
        assert http.get("/gradio_api/deep_link", params={"session_hash": HASH}).status_code == 404
        assert http.post("/gradio_api/component_server", json={"session_hash": HASH}).status_code == 404

    @pytest.mark.parametrize(
        ("path", "body", "status", "detail"),
        [
            ("/gradio_api/call/nope", {"data": []}, 404, "This Space has no API endpoint /nope"),
            ("/gradio_api/call/chat", {"data": []}, 422, "/chat needs 'message'"),
            ("/gradio_api/call/greet", {"data": ["a", "b"]}, 422, "/greet takes 1 inputs (name); got 2."),
            ("/gradio_api/call/v2/greet", {"nom": "a"}, 422, "/greet has no input 'nom'"),
            ("/gradio_api/queue/join", {"data": [], "fn_index": 9}, 404, "This Space has no event 9."),
            ("/gradio_api/queue/join", {"data": ["x"], "fn_index": "0"}, 422, '"fn_index" must be the number'),
            ("/gradio_api/call/greet", {"data": DEEP}, 422, "The request body nests deeper"),
        ],
    )
    def test_calls_are_checked_against_what_the_endpoint_takes(self, path, body, status, detail):
        refused = _guarded().post(path, json=body)
        assert refused.status_code == status
        assert refused.json()["detail"].startswith(detail)

    def test_a_short_call_takes_the_defaults(self):
        body = _guarded().post("/gradio_api/call/chat", json={"data": ["hi"]}).json()["body"]
        assert body == {"data": ["hi", 0.7]}

    def test_a_big_body_is_parsed_off_the_event_loop(self):
        """A body past 64 KB is checked on a worker thread: the same answer, and the loop free meanwhile."""
        body = _guarded().post("/gradio_api/call/greet", json={"data": ["x" * 500_000], "session_hash": HASH})
        assert len(body.json()["body"]["data"][0]) == 500_000


class TestSessionCarriers:
    @pytest.mark.parametrize("route", sorted(SESSION_CARRIERS))
    def test_the_guard_binds_the_hash_on_each(self, route):
        """Each carrier the guard lists, sent a hash where Gradio reads it: Gradio gets the bound key instead (or,
        for a route the Space does not use, a 404)."""
        http = _guarded()
        key = http.sessions.bind(HASH, "203.0.113.5")
        values = {"api_name": "greet", "event_id": "event-1", "session_hash": HASH, "run": "run", "component_id": "3"}
        path = route.format(**values, segment_id="1", ext="ts")
        where = SESSION_CARRIERS[route]
        if where == "blocked":
            assert http.get(path, params={"session_hash": HASH}).status_code == 404
        elif where == "body":
            body: dict[str, Any] = {"data": ["Ada"], "session_hash": HASH}
            if "call" not in route:
                body["fn_index"] = 0
            assert http.post(path, json=body).json()["body"]["session_hash"] == key
        elif where == "query":
            assert http.get(path, params={"session_hash": HASH}).json()["query"]["session_hash"] == key
        else:
            assert http.get(path).json()["path"] == path.replace(HASH, key)

    def test_every_route_of_gradio_that_takes_a_session_hash_is_guarded(self):
        """Read from Gradio's own routes (their path, query and body parameters): a release that adds a route
        taking a session hash fails here until the guard binds it too."""
        from fastapi.routing import APIRoute
        from gradio.routes import App

        def routes(entries: list[Any]) -> Iterator[Any]:
            for entry in entries:
                if hasattr(entry, "original_router"):  # FastAPI's included router
                    yield from routes(entry.original_router.routes)
                else:
                    yield entry

        def takes_a_hash(dependant: Any) -> bool:
            named = [param.name for param in dependant.path_params + dependant.query_params]
            models = [getattr(param.field_info, "annotation", None) for param in dependant.body_params]
            return (
                "session_hash" in named
                or any("session_hash" in getattr(model, "model_fields", {}) for model in models)
                or any(takes_a_hash(sub) for sub in dependant.dependencies)
            )

        demo = small_blocks()
        demo.queue()
        found = {
            route.path.rstrip("/")
            for route in routes(App.create_app(demo).routes)
            if isinstance(route, APIRoute) and takes_a_hash(route.dependant)
        }
        assert found == set(SESSION_CARRIERS)


class TestCorsStandsAside:
    def test_gradios_cors_stands_aside_for_the_policy(self):
        """On Gradio's own App, built with the app's edge, another site gets no Allow-Credentials; without the
        edge in the stack, Gradio's CORS middleware is still there (other Blocks in the process keep it)."""
        from gradio.routes import App

        from services.config import Settings
        from ui.launch import edge_middleware

        cors.stand_aside_for()
        demo = small_blocks()
        ours = App.create_app(demo, app_kwargs={"middleware": edge_middleware(Settings(), demo)})
        theirs = App.create_app(small_blocks())
        headers = {"origin": "https://evil.test", "host": "space.test"}
        with TestClient(ours) as http:
            answer = http.get("/gradio_api/info", headers=headers)
        assert answer.headers.get("access-control-allow-origin") == "https://evil.test"
        assert "access-control-allow-credentials" not in answer.headers
        with TestClient(theirs) as http:
            assert http.get("/gradio_api/info", headers=headers).headers["access-control-allow-credentials"] == "true"


class TestUnreadResults:
    def make(self, **bounds: Any) -> tuple[gr.Blocks, unread.UnreadResults, list[str]]:
        demo = small_blocks()
        demo.queue()
        demo.state_holder = gradio.state_holder.StateHolder()
        demo.state_holder.set_blocks(demo)
        ended: list[str] = []
        values = {"per_session_messages": 5, "per_session_bytes": 10_000, "total_bytes": 25_000, "ttl": 60.0}
        results = unread.install(demo, **{**values, **bounds}, on_session_end=[ended.append])
        return demo, results, ended

    @staticmethod
    def result(event_id: str, size: int) -> ProcessCompletedMessage:
        return ProcessCompletedMessage(output={"data": ["x" * size]}, success=True, event_id=event_id)

    def test_gradio_uses_the_mapping_it_is_given(self):
        """Gradio's queue makes its session queues through `pending_messages_per_session[...] = AsyncQueue()`,
        and sends through `[...]`: both land in the counting mapping."""
        demo, results, _ = self.make()
        assert demo._queue.pending_messages_per_session is results
        assert "self.pending_messages_per_session[body.session_hash] = AsyncQueue()" in inspect.getsource(
            type(demo._queue).push
        )
        assert "messages = self.pending_messages_per_session[event.session_hash]" in inspect.getsource(
            type(demo._queue).send_message
        )

    def test_bounds_in_count_bytes_and_total(self):
        async def run() -> None:
            _, results, _ = self.make()
            results["a"] = asyncio.Queue()
            for i in range(5):
                results["a"].put_nowait(self.result(f"e{i}", 100))
            assert "a" in results
            results["a"].put_nowait(self.result("e5", 100))  # the sixth unread: the session is let go
            assert "a" not in results
            results["b"] = asyncio.Queue()
            results["b"].put_nowait(self.result("eb", 20_000))  # over a session's bytes
            assert "b" not in results
            for key in ("c", "d", "e"):
                results[key] = asyncio.Queue()
                results[key].put_nowait(self.result("e" + key, 9_000))
            assert "c" not in results  # 27 KB unread in all: the oldest went
            assert {"d", "e"} <= set(results)
            assert results.unread_bytes < 25_000

        asyncio.run(run())

    def test_read_results_are_no_longer_counted(self):
        async def run() -> None:
            _, results, _ = self.make()
            results["a"] = asyncio.Queue()
            for i in range(20):
                results["a"].put_nowait(self.result(f"e{i}", 2_000))
                await results["a"].get()
            assert "a" in results
            assert results.unread_bytes == 0

        asyncio.run(run())

    def test_unread_results_expire(self):
        async def run() -> None:
            _, results, _ = self.make(ttl=0.2)
            results["a"] = asyncio.Queue()
            results["a"].put_nowait(self.result("e", 100))
            await asyncio.sleep(0.4)
            assert "a" not in results
            assert results.unread_bytes == 0

        asyncio.run(run())

    def test_a_call_without_a_hash_ends_its_session_once_answered(self):
        """Its session is named after its event: when that event's result is in, Gradio's state for it and the
        app's own go."""

        async def run() -> None:
            demo, results, ended = self.make()
            demo.state_holder["event-1"]
            results["event-1"] = asyncio.Queue()
            results["event-1"].put_nowait(self.result("event-1", 10))
            assert ended == ["event-1"]
            assert "event-1" not in demo.state_holder
            results["page-session"] = asyncio.Queue()
            results["page-session"].put_nowait(self.result("event-2", 10))
            assert ended == ["event-1"]

        asyncio.run(run())

    def test_a_let_go_session_swallows_late_messages(self):
        async def run() -> None:
            _, results, _ = self.make()
            late = results["gone"]  # as send_message reads it, for a session no longer kept
            late.put_nowait(self.result("e", 10))
            assert "gone" not in results
            assert results.unread_bytes == 0

        asyncio.run(run())

    def test_an_astral_result_is_counted_at_its_real_size(self):
        small = unread.message_bytes(self.result("e", 0))
        astral = ProcessCompletedMessage(output={"data": ["\U0001f600" * 1000]}, success=True)
        assert unread.message_bytes(astral) - small >= 4000


class TestUploadCache:
    def test_the_oldest_files_go_first(self, tmp_path):
        for i in range(10):
            folder = tmp_path / f"hash{i}"
            folder.mkdir()
            file = folder / "upload.json"
            file.write_bytes(b"x" * 1000)
            os.utime(file, (1000 + i, 1000 + i))
        freed = uploads.trim_folder(tmp_path, 4500)
        assert freed == 6000
        left = sorted(path.parent.name for path in tmp_path.rglob("*.json"))
        assert left == ["hash6", "hash7", "hash8", "hash9"]

    def test_the_folder_is_gradios_upload_folder(self, monkeypatch, tmp_path):
        monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
        assert uploads.UploadCacheBound(None, max_bytes=1).folder == tmp_path  # type: ignore[arg-type]
