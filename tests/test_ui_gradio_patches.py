"""The Gradio workarounds keep Gradio's behaviour, skip themselves on another version, and do what they say."""

from __future__ import annotations

import importlib.util
import sys
import warnings

import gradio as gr
import gradio.state_holder
import pytest

from tests.support.blocks import built
from ui import gradio_patches
from ui.gradio_patches import SessionStateWithoutDeepLinks, UnkeptConfigs, called_through_mcp, keep_out_of_mcp

pytestmark = pytest.mark.unit


def small_blocks() -> gr.Blocks:
    def build() -> gr.Blocks:
        with gr.Blocks() as demo:
            text = gr.Textbox("start")
            out = gr.Textbox()
            gr.Button().click(lambda value: value, text, out)
        return demo

    return built(build)


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
        assert gr.__version__ == gradio_patches.PATCHED_VERSION

    def test_another_version_warns_and_changes_nothing(self, monkeypatch, restore_gradio):
        """On any other Gradio version, apply() warns and leaves Gradio as it is."""
        monkeypatch.setattr(gr, "__version__", "7.0.0")
        before = gradio.state_holder.SessionState
        with pytest.warns(UserWarning, match="written for gradio 6.31.0, not 7.0.0"):
            gradio_patches.apply(small_blocks())
        assert gradio.state_holder.SessionState is before

    def test_keep_out_of_mcp_does_nothing_on_another_version(self, monkeypatch):
        """The MCP switch sets Gradio's private attribute only on the version it was checked against."""
        monkeypatch.setattr(gr, "__version__", "7.0.0")

        def tool() -> None:
            """A tool."""

        assert not hasattr(keep_out_of_mcp(tool), "_mcp_type")


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
        """After apply(), the sessions Gradio's StateHolder makes are SessionStateWithoutDeepLinks."""
        gradio_patches.apply(small_blocks())
        assert gradio.state_holder.SessionState is SessionStateWithoutDeepLinks


class TestMatplotlib:
    def test_an_absent_matplotlib_fails_at_once(self, restore_gradio):
        """Without matplotlib installed, its import fails from sys.modules instead of a search of sys.path."""
        if importlib.util.find_spec("matplotlib") is not None:
            pytest.fail("matplotlib is installed here: this test needs the Space's environment, which has none")
        gradio_patches.skip_missing_matplotlib()
        with pytest.raises(ImportError):
            import matplotlib  # noqa: F401


class TestSignatures:
    def test_the_cached_signature_is_the_computed_one(self):
        """A component class's __signature__ is what inspect computes: nothing but the time changes."""
        import inspect

        demo = small_blocks()
        gradio_patches.cache_init_signatures(demo)
        init = gr.Textbox.__init__
        assert init.__signature__ == inspect.Signature.from_callable(init, follow_wrapped=False)


class TestMcp:
    def test_kept_out_functions_are_not_tools(self):
        """Gradio's MCP server lists only functions whose _mcp_type is unset or "tool"."""

        def session_thing() -> int:
            """Counts."""
            return 1

        assert keep_out_of_mcp(session_thing)._mcp_type != "tool"  # type: ignore[attr-defined]

    def test_calls_through_gradios_mcp_client_are_recognised(self):
        """The header Gradio's MCP loopback client sends marks the call; a plain request is not one."""
        assert called_through_mcp(gr.Request(headers={"x-gradio-user": "mcp"}))
        assert not called_through_mcp(gr.Request(headers={}))
        assert not called_through_mcp(None)


def test_no_warning_on_the_pinned_version(restore_gradio):
    """apply() on the pinned version is silent."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gradio_patches.apply(small_blocks())
