"""The small tools of the Space: text tools, the greeting and the per-session counter, each a tab and an endpoint.

Each tab's button is also the endpoint: its function's parameter names, its components' types and its docstring
(with `Args:` and `Returns:`) are what the API docs, `gradio_client`, `/gradio_api/openapi.json` and MCP agents see.
The events skip the Textbox's preprocessing (`preprocess=False`): it would turn a number or an object an API
caller sent into its Python repr and answer for that; the services check that a text is text instead.
"""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr

from services import tools
from services.config import Settings
from services.sessions import Session, SessionStore
from ui.errors import user_errors
from ui.gradio_internals import called_through_mcp, keep_out_of_mcp

__all__ = ["Tools"]


class Tools:
    """The functions behind the tools' endpoints, bound to the settings and the sessions they use."""

    def __init__(self, settings: Settings, sessions: SessionStore) -> None:
        self._max_chars = settings.max_tool_chars
        self._sessions = sessions

    def _endpoint(self, tool: tools.TextTool) -> Callable[[str], str]:
        limit = self._max_chars

        @user_errors
        def endpoint(text: str) -> str:
            return tool.run(text, max_chars=limit)

        endpoint.__name__ = endpoint.__qualname__ = tool.name
        endpoint.__doc__ = (
            f"{tool.does}\n\nArgs:\n    text: The text (at most MAX_TOOL_CHARS characters).\n\n"
            f"Returns:\n    {tool.returns}\n"
        )
        return endpoint

    def count_fn(self) -> Callable[[str], tuple[int, int, int]]:
        limit = self._max_chars

        @user_errors
        def count(text: str) -> tuple[int, int, int]:
            """Count the characters, words (separated by whitespace) and lines of a text.

            Args:
                text: The text to count (at most MAX_TOOL_CHARS characters).

            Returns:
                Three whole numbers: characters, words, lines.
            """
            stats = tools.count(text, max_chars=limit)
            return stats.characters, stats.words, stats.lines

        return count

    @staticmethod
    @user_errors
    def greet(name: str) -> str:
        """Greet someone by name.

        Args:
            name: The name to greet (surrounding spaces are trimmed; at most 200 characters).

        Returns:
            "Hello, <name>!"
        """
        return tools.greet(name)

    def counter_fns(self) -> tuple[Callable[[gr.Request], int], Callable[[gr.Request], int]]:
        sessions = self._sessions

        def session_of(request: gr.Request, name: str) -> Session:
            if called_through_mcp(request):
                raise gr.Error(f"{name}: counts one browser session's clicks, and an MCP call has no session.")
            return sessions.get(request.session_hash or "")

        @keep_out_of_mcp
        def increment(request: gr.Request) -> int:
            """Add one to this session's counter (one browser tab, or one gradio_client.Client).

            Returns:
                The session's new count: 1, then 2, ...
            """
            session = session_of(request, "increment")
            session.counter = tools.increment(session.counter)
            return session.counter

        @keep_out_of_mcp
        def reset_counter(request: gr.Request) -> int:
            """Set this session's counter back to zero.

            Returns:
                0
            """
            session_of(request, "reset_counter").counter = 0
            return 0

        return increment, reset_counter

    def build_tools_tab(self) -> None:
        with gr.Row():
            text_in = gr.Textbox(
                label="Text", lines=4, placeholder="Type or paste some text", scale=2, elem_id="tool-text"
            )
            # No copy button here: Gradio puts it inside the <label>, where it would take the label from the textarea.
            text_out = gr.Textbox(label="Result", lines=4, scale=2, elem_id="tool-result")
        with gr.Row():
            for tool in tools.TOOLS:
                gr.Button(tool.label, size="sm").click(
                    self._endpoint(tool), text_in, text_out, api_name=tool.name, preprocess=False
                )
            count_button = gr.Button("Count characters, words, lines", size="sm")
        with gr.Row(elem_id="counts"):
            counts = [
                gr.Number(label=label, precision=0, interactive=False) for label in ("Characters", "Words", "Lines")
            ]
        count_button.click(self.count_fn(), text_in, counts, api_name="count", preprocess=False)

    def build_greeting_tab(self) -> None:
        with gr.Row():
            name = gr.Textbox(label="Your name", placeholder="Ada")
            greeting = gr.Textbox(label="Greeting")
        button = gr.Button("Greet", variant="primary")
        gr.on([button.click, name.submit], self.greet, name, greeting, api_name="greet", preprocess=False)

    def build_counter_tab(self) -> None:
        gr.Markdown("A counter kept per browser session (and per `gradio_client.Client`).")
        shown = gr.Number(0, label="Count", precision=0, interactive=False)
        increment, reset_counter = self.counter_fns()
        with gr.Row():
            gr.Button("Add 1", variant="primary").click(increment, None, shown, api_name="increment")
            gr.Button("Reset").click(reset_counter, None, shown, api_name="reset_counter")
