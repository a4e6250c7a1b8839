"""gradio_tuning.py leaves Gradio's behaviour as Gradio defines it: checked against Gradio's own code, on this app."""

from __future__ import annotations

import json
import subprocess
import sys

import gradio as gr
import pytest
from gradio.state_holder import SessionState

from gradio_tuning import LazySessionState, _LazyConfigs
from tests.conftest import ROOT, app_env


def run_with_app(code: str) -> str:
    """Run `code` in a fresh interpreter that has imported the app (and so applied the tuning)."""
    result = subprocess.run(
        [sys.executable, "-c", "from app import demo\n" + code],
        cwd=ROOT,
        env=app_env(OPENAI_BASE_URL="http://127.0.0.1:9/v1", LLM_MODEL="m"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip()


def canonical(configs: object) -> str:
    return json.dumps(configs, default=str, sort_keys=True)


class TestSignatureCache:
    def test_session_configs_are_as_without_it_and_compute_no_signature(self):
        """With `__signature__` cached, every component config of the app equals Gradio's uncached one, and a new
        session then computes no signature at all."""
        out = run_with_app(
            """
import inspect, json
from unittest import mock
from gradio.blocks import BlocksConfig
def configs():
    return {k: BlocksConfig.config_for_block(k, [], b) for k, b in demo.default_config.blocks.items()}
cached = configs()
with mock.patch.object(inspect, "_signature_from_function", side_effect=AssertionError("computed")):
    configs()
for block in demo.blocks.values():
    for cls in type(block).__mro__:
        if inspect.isfunction(init := vars(cls).get("__init__")):
            init.__dict__.pop("__signature__", None)
fresh = configs()
assert json.dumps(cached, default=str, sort_keys=True) == json.dumps(fresh, default=str, sort_keys=True)
print(len(fresh))
"""
        )
        assert int(out) > 40  # every block of the app was compared


class TestLazySessionState:
    def test_is_what_new_sessions_are_made_of_in_the_app(self):
        """Importing the app makes Gradio's StateHolder create LazySessionState, with no config built at start."""
        out = run_with_app(
            """
import gradio.state_holder as sh
from gradio.blocks import BlocksConfig
from unittest import mock
assert sh.SessionState.__name__ == "LazySessionState", sh.SessionState
holder = sh.StateHolder()
holder.set_blocks(demo)
with mock.patch.object(BlocksConfig, "config_for_block", side_effect=AssertionError("built at start")):
    session = holder["a-new-session"]
print(type(session).__name__, len(session.config_values))
"""
        )
        name, count = out.split()
        assert name == "LazySessionState"
        assert int(count) > 40

    def test_equals_gradios_session_state_on_this_app(self):
        """Every attribute, and every component config once read, is what Gradio's own SessionState holds."""
        out = run_with_app(
            """
import json
from gradio.state_holder import SessionState  # Gradio's class, bound before the app replaced the module's name
from gradio_tuning import LazySessionState
eager, lazy = SessionState(demo), LazySessionState(demo)
assert sorted(vars(eager)) == sorted(vars(lazy)), (sorted(vars(eager)), sorted(vars(lazy)))
for name in vars(eager):
    if name not in ("blocks_config", "config_values"):
        assert getattr(eager, name) == getattr(lazy, name), name
assert eager.blocks_config.blocks == lazy.blocks_config.blocks
lazy.config_values[sorted(lazy.config_values._pending)[-1]]  # one read first: the order must still be Gradio's
dump = lambda s: json.dumps(list(s.components), default=str, sort_keys=True)
assert dump(eager) == dump(lazy)
print(len(list(eager.components)))
"""
        )
        assert int(out) > 40

    def test_a_value_recorded_before_a_read_is_kept(self):
        """Gradio records an event's values in the configs (`_update_value_in_config`) and a deep link reads them
        all later: the lazy configs give the same result as the eager ones."""
        with gr.Blocks() as demo:
            box = gr.Textbox("start")
            gr.Number(1)
        eager, lazy = SessionState(demo), LazySessionState(demo)
        for session in (eager, lazy):
            session._update_value_in_config(box._id, "typed")
        assert lazy.config_values[box._id]["props"]["value"] == "typed"
        assert canonical(list(eager.components)) == canonical(list(lazy.components))


class TestLazyConfigs:
    def test_behaves_as_the_full_dict(self):
        built: list[int] = []

        def build(key: int) -> dict[str, int]:
            built.append(key)
            return {"id": key}

        configs = _LazyConfigs(build, [1, 2, 3])
        assert built == []
        assert len(configs) == 3
        assert 2 in configs
        assert 9 not in configs
        assert configs[2] == {"id": 2}
        assert built == [2]
        assert configs.get(9, "none") == "none"
        assert configs.get(3) == {"id": 3}
        configs[1] = {"id": 1, "set": True}  # a write replaces a config not yet built
        assert built == [2, 3]
        with pytest.raises(KeyError):
            configs[9]
        assert dict(configs.items()) == {1: {"id": 1, "set": True}, 2: {"id": 2}, 3: {"id": 3}}
        assert sorted(configs) == sorted(configs.keys()) == [1, 2, 3]
        assert len(configs.values()) == 3
        assert built == [2, 3]  # each built once, the written one never

    def test_whole_dict_methods_see_every_config(self):
        """Methods Gradio does not use today behave as on the full dict too, rather than losing unbuilt configs."""

        def fresh() -> tuple[_LazyConfigs, dict[int, str]]:
            return _LazyConfigs(lambda key: f"config {key}", [1, 2, 3]), {1: "config 1", 2: "config 2", 3: "config 3"}

        lazy, full = fresh()
        assert lazy == full
        assert repr(lazy) == repr(full)
        assert lazy.copy() == full
        lazy, full = fresh()
        assert lazy.pop(2) == full.pop(2)
        del lazy[3], full[3]
        assert lazy == full
        assert len(lazy) == 1
        lazy, _ = fresh()
        lazy.update({2: "new"})
        assert lazy[2] == "new"
        assert lazy.setdefault(3, "other") == "config 3"
        lazy.clear()
        assert len(lazy) == 0
        assert 1 not in lazy

    def test_a_build_that_fails_can_be_retried(self):
        attempts: list[int] = []

        def build(key: int) -> str:
            attempts.append(key)
            if len(attempts) == 1:
                raise RuntimeError("first build fails")
            return "built"

        configs = _LazyConfigs(build, [7])
        with pytest.raises(RuntimeError):
            configs[7]
        assert 7 in configs
        assert configs[7] == "built"

    def test_builds_nothing_gradio_does_not_read(self):
        """A session that only runs events touches the configs of those events' components alone."""
        with gr.Blocks() as demo:
            a, b = gr.Textbox(), gr.Textbox()
            for _ in range(20):
                gr.Slider()
        session = LazySessionState(demo)
        session._update_value_in_config(a._id, "x")
        session._update_value_in_config(b._id, "y")
        assert dict.__len__(session.config_values) == 2
