"""What the app relies on of Gradio's internals still holds on the installed Gradio, and each patch takes.

Every test here fails (none warns) when a Gradio release moves what a patch relies on: run them after any change
of the pin, then fix the patch or move the checked range in ui/gradio_internals/_version.py.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import sys
import warnings
from typing import Any

import gradio as gr
import gradio.state_holder
import pytest

from ui import gradio_internals
from ui.gradio_internals import called_through_mcp, keep_out_of_mcp
from ui.gradio_internals.chatbot import text_message
from ui.gradio_internals.mcp import MCP_CLIENT_HEADER
from ui.gradio_internals.performance import (
    SessionStateWithoutDeepLinks,
    UnkeptConfigs,
    cache_init_signatures,
    skip_missing_matplotlib,
)

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
    matplotlib = sys.modules.get("matplotlib", "absent")
    yield
    gradio.state_holder.SessionState = session_state
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
        assert list(session.config_values) == []
        assert session.config_values[text_id] == {}
        assert list(session.components) == []

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
