"""The Space's UI: one gr.Blocks with a streaming chat and small tools. All logic lives in `services/`.

Run `python app.py --help` for the launch options; `from app import demo` works in a notebook.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import gradio as gr

import gradio_tuning
from services import tools
from services.chat import prepare_chat, stream_reply, text_of, trim_history
from services.config import load_settings
from services.errors import ConfigError, ServiceError
from services.llm import Message, create_backend
from services.ratelimit import ChatRateLimits
from services.redact import install_log_redaction


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run the Space Chat app locally.")
    parser.add_argument("--host", help="interface to bind (default: GRADIO_SERVER_NAME, else 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default: GRADIO_SERVER_PORT, else 7860)")
    parser.add_argument("--share", action="store_true", help="also open a temporary public share link")
    parser.add_argument("--inbrowser", action="store_true", help="open the app in a browser tab")
    return parser.parse_args(argv)


# Parse the command line first, so that `python app.py --help` answers without loading a model.
ARGS = _parse_args() if __name__ == "__main__" else None

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
logger = logging.getLogger("app")
# One INFO line per HTTP request to the model server is noise, and costs time on the streaming path.
for _name in ("httpx", "httpx2"):
    logging.getLogger(_name).setLevel(logging.WARNING)

try:
    SETTINGS = load_settings()
except ConfigError as error:
    # A malformed variable stops start-up with one line naming it, instead of a traceback.
    raise SystemExit(f"Configuration error: {error}") from None
# Before anything can log: a library that logs a request or an error must not print a key or password.
install_log_redaction(SETTINGS.secrets())
try:
    BACKEND = create_backend(SETTINGS)
except ConfigError as error:
    raise SystemExit(f"Configuration error: {error}") from None
RATE_LIMITS = ChatRateLimits.from_settings(SETTINGS)
STREAM_INTERVAL = SETTINGS.stream_interval_for(BACKEND.name)

TITLE = "Space Chat"
PLACEHOLDER = "Type a message and press Enter"
DESCRIPTION = (
    "Chat with a language model that streams its answer, plus a few small text tools. "
    "Call every tab from code with `gradio_client`: see *Use via API* at the bottom of the page."
)
EXAMPLES = [
    "Explain recursion to a ten-year-old, with one example.",
    "Write a Python function that checks whether a string is a palindrome.",
    "Suggest three names for a bakery as a Markdown list, the best one in bold.",
]


def _user_error(error: ServiceError) -> gr.Error:
    """A service error as the message a person sees, logged here as one line instead of Gradio's traceback.

    Gradio prints the traceback of a gr.Error, causes included, straight to stderr (not through logging, so
    not redacted); an upstream error's text can quote a key. Our message is written to be safe to show.
    """
    logger.warning("%s: %s", type(error).__name__, error)
    return gr.Error(str(error), print_exception=False)


def _checked_by_services(slider: gr.Slider) -> gr.Slider:
    """Let `services.chat` check this slider's value, so an API caller's bad value gets an error naming the field.

    Gradio 6.31's own Slider check says "Value 5.0 is greater than maximum value 2." without the field, and
    turns a non-number into a generic error. (A Slider subclass would do the same, but Gradio writes a .pyi
    file beside any module that defines a component class.)
    """
    slider.preprocess = lambda payload: payload  # type: ignore[method-assign]
    return slider


def _status_line() -> str:
    server = getattr(BACKEND, "server", None)
    loaded = getattr(BACKEND, "loaded", None)
    where = f" at {server}" if server else f" on {loaded.device}" if loaded else ""
    if BACKEND.name == "none":
        return "**Model:** not configured. Set `OPENAI_API_KEY`, `HF_TOKEN` or `OPENAI_BASE_URL` (see README)."
    return f"**Backend:** {BACKEND.name} · **Model:** `{BACKEND.model}`{where}"


async def _reply(
    message: Any, history: Any, system_prompt: Any, temperature: Any, max_tokens: Any, request: gr.Request
) -> AsyncIterator[str]:
    """One chat turn, for the page and the API alike: limits, validation, then the reply so far, growing.

    Async all the way down, so no thread hop per streamed update.
    """
    try:
        RATE_LIMITS.check(
            session=request.session_hash,
            peer=request.client.host if request.client else None,
            headers=request.headers,
        )
        turn = prepare_chat(
            BACKEND,
            message,
            history,
            system_prompt=system_prompt,
            temperature=temperature,
            max_tokens=max_tokens,
            settings=SETTINGS,
        )
        if turn.dropped:
            gr.Warning(f"{turn.dropped} earlier message(s) were left out so the conversation fits the model.")
        async for text in stream_reply(BACKEND, turn, interval=STREAM_INTERVAL):
            yield text
    except ServiceError as error:
        # Raised mid-stream, the partial reply stays on screen and the message says it was cut.
        raise _user_error(error) from error


# The box while a reply streams (Stop instead of Send), and after it.
def _box_busy() -> gr.Textbox:
    return gr.Textbox(value="", interactive=False, submit_btn=False, stop_btn="Stop", placeholder="")


async def _box_ready() -> gr.Textbox:
    return gr.Textbox(interactive=True, submit_btn="Send", stop_btn=False, placeholder=PLACEHOLDER)


def _text_message(role: str, text: str) -> dict[str, Any]:
    """A chat message with its text as typed: a plain string would go through Chatbot.postprocess's
    inspect.cleandoc, which strips the common indentation of pasted code."""
    return {"role": role, "content": [{"type": "text", "text": text}]}


def _last_user_index(history: list[dict[str, Any]]) -> int | None:
    return max((i for i, m in enumerate(history) if m.get("role") == "user"), default=None)


class PageChat:
    """The page's chat handlers, bound to its Chatbot so that they send the Chatbot's value ready-made.

    Gradio would run `Chatbot.postprocess` on a worker thread for every value of every event: a thread hop per
    streamed update, which at 64 visitors was a large share of the server's CPU (bench/chat_stream.py). These
    events run with postprocess=False and call the same `Chatbot.postprocess` here, on the event loop, and the
    conversation so far only once a reply. The handlers are async for the same reason: no thread hop per call.
    """

    def __init__(self, chatbot: gr.Chatbot) -> None:
        self.chatbot = chatbot

    def render(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """What Gradio itself would send to the page for these messages."""
        return self.chatbot.postprocess(messages).model_dump()

    async def take_message(self, message: str, history: list[dict[str, Any]]) -> tuple[gr.Textbox, Any]:
        """Send: the user's message shows at once, before the reply is queued, and the box turns into Stop.

        A blank box fails this step, so the reply after it does not run (and cannot re-send a message left
        unanswered by a failed turn). Its event shows no progress on any component, so nothing is shown for
        that failure: an unqueued step's error would otherwise cover its outputs with a bare "Error" badge.
        """
        if not (message or "").strip():
            raise gr.Error("Type a message first.", print_exception=False)
        return _box_busy(), self.render([*history, _text_message("user", message)])

    async def take_example(self, history: list[dict[str, Any]], selected: gr.SelectData) -> tuple[gr.Textbox, Any]:
        """An example card is sent as if typed (examples never run at start-up, so no key is spent then)."""
        return await self.take_message(str(selected.value.get("text", "")), history)

    async def take_retry(self, history: list[dict[str, Any]]) -> tuple[gr.Textbox, Any]:
        """Retry: the conversation up to the last user message, which is answered again."""
        last_user = _last_user_index(history)
        if last_user is None:
            raise gr.Error("There is no message to retry.", print_exception=False)
        return _box_busy(), self.render(history[: last_user + 1])

    async def undo(self, history: list[dict[str, Any]]) -> tuple[Any, str]:
        """Undo: the last exchange leaves the chat and its message goes back into the box."""
        last_user = _last_user_index(history)
        if last_user is None:
            return gr.skip(), ""
        return self.render(history[:last_user]), text_of(history[last_user].get("content"))

    async def chat_ui(
        self,
        history: list[dict[str, Any]],
        system_prompt: str,
        temperature: float,
        max_tokens: int,
        request: gr.Request,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Stream the answer to the conversation's last message into the chatbot."""
        shown = self.render(history)
        if not history or history[-1].get("role") != "user":
            yield shown  # nothing new to answer: the chat stays as it is
            return
        *before, last = history
        async for text in _reply(text_of(last.get("content")), before, system_prompt, temperature, max_tokens, request):
            yield [*shown, *self.render([_text_message("assistant", text)])]


async def chat(
    message: str,
    history: list[Message],
    system_prompt: str,
    temperature: float,
    max_tokens: int,
    request: gr.Request,
) -> AsyncIterator[tuple[str, Any]]:
    """The /chat API: streams the reply so far; the session's conversation (a gr.State) grows once, at the end.

    Intermediate updates skip the State: Gradio 6.31 rebuilds a State's config on each write
    (SessionState.__setitem__), a large share of the server's CPU per update when done on every one.
    """
    text = ""
    async for text in _reply(message, history, system_prompt, temperature, max_tokens, request):
        yield text, gr.skip()
    exchange: list[Message] = [{"role": "user", "content": message}, {"role": "assistant", "content": text}]
    kept, _ = trim_history([*history, *exchange], max_chars=SETTINGS.max_history_chars)
    yield text, kept


def _tool(fn: Callable[..., Any]) -> Callable[[str], Any]:
    """A text tool as a Gradio handler: the configured size limit applied, service errors shown as gr.Error."""

    def handler(text: str) -> Any:
        try:
            return fn(text, max_chars=SETTINGS.max_tool_chars)
        except ServiceError as error:
            raise _user_error(error) from error

    handler.__name__ = fn.__name__
    return handler


def greet(name: str) -> str:
    try:
        return tools.greet(name)
    except ServiceError as error:
        raise _user_error(error) from error


def count(text: str) -> dict[str, int]:
    stats = _tool(tools.count)(text)
    return {"characters": stats.characters, "words": stats.words, "lines": stats.lines}


def increment(count_so_far: int) -> tuple[int, int]:
    new = tools.increment(count_so_far)
    return new, new


def reset_counter() -> tuple[int, int]:
    return 0, 0


def _build_chat_tab() -> None:
    gr.Markdown(_status_line(), elem_id="status-line")
    chatbot = gr.Chatbot(
        label="Chat",
        height="60vh",
        buttons=["copy"],
        elem_id="chatbot",
        examples=[{"text": text} for text in EXAMPLES],
    )
    # Text labels, not icons: Gradio 6.31's icon buttons carry no accessible name.
    box = gr.Textbox(
        placeholder=PLACEHOLDER,
        label="Message",
        show_label=False,
        submit_btn="Send",
        stop_btn=False,
        elem_id="message",
    )
    with gr.Accordion("Parameters", open=False):
        system_prompt = gr.Textbox(SETTINGS.system_prompt, label="System prompt", lines=2)
        temperature = _checked_by_services(
            gr.Slider(0, 2, value=SETTINGS.default_temperature, step=0.05, label="Temperature")
        )
        max_tokens = _checked_by_services(
            gr.Slider(1, SETTINGS.max_tokens_cap, value=SETTINGS.default_max_tokens, step=1, label="Max tokens")
        )

    # One queued event per reply, with one quick unqueued step before it and after it (gr.ChatInterface
    # fires eight events a message and rewrites a gr.State on every streamed update: at 64 visitors at once
    # the page took 2.7x the model server's time, bench/chat_stream.py "browser UI".)
    page = {"api_visibility": "private"}
    quick = {"queue": False, "postprocess": False, "show_progress": "hidden", **page}  # the unqueued steps
    handlers = PageChat(chatbot)
    replies = []
    for started in (
        box.submit(handlers.take_message, [box, chatbot], [box, chatbot], show_progress_on=[], **quick),
        chatbot.example_select(handlers.take_example, [chatbot], [box, chatbot], **quick),
        chatbot.retry(handlers.take_retry, [chatbot], [box, chatbot], **quick),
    ):
        reply = started.success(
            handlers.chat_ui,
            [chatbot, system_prompt, temperature, max_tokens],
            [chatbot],
            show_progress="minimal",
            postprocess=False,
            **page,
        )
        # Gradio 6.31's page runs a `.then` step after a reply that ends or is stopped, but not after one that
        # fails, which only `.failure` steps follow: without it, the box stayed on Stop after an error.
        reply.then(_box_ready, None, [box], **quick)
        reply.failure(_box_ready, None, [box], **quick)
        replies.append(reply)
    box.stop(None, None, None, cancels=replies, **page)
    chatbot.undo(handlers.undo, [chatbot], [chatbot, box], queue=False, postprocess=False, **page)

    # The /chat API: a hidden button's event (as gr.ChatInterface does for its own endpoint), so that its
    # inputs are plain values and one gradio_client session is one conversation.
    api_message = gr.Textbox(label="message", visible=False)
    api_reply = gr.Textbox(label="response", visible=False)
    api_history = gr.State([])
    gr.Button(visible=False).click(
        chat,
        [api_message, api_history, system_prompt, temperature, max_tokens],
        [api_reply, api_history],
        api_name="chat",
        api_description="Stream a reply. One gradio_client session is one conversation.",
        show_progress="hidden",
        # Values pass as they are: services.chat checks the inputs and the output is a plain str. Gradio 6.31
        # otherwise runs each component's pre/postprocess on a worker thread, a thread hop per value per update.
        preprocess=False,
        postprocess=False,
    )


def _build_tools_tab() -> None:
    with gr.Row():
        text_in = gr.Textbox(label="Text", lines=4, placeholder="Type or paste some text", scale=2, elem_id="tool-text")
        # No copy button here: Gradio puts it inside the <label>, where it would take the label from the textarea.
        text_out = gr.Textbox(label="Result", lines=4, scale=2, elem_id="tool-result")
    with gr.Row():
        for api_name, (label, fn) in tools.TOOLS.items():
            gr.Button(label, size="sm").click(_tool(fn), text_in, text_out, api_name=api_name)
        count_button = gr.Button("Count characters, words, lines", size="sm")
    stats_out = gr.JSON(label="Counts", elem_id="counts")
    count_button.click(count, text_in, stats_out, api_name="count")


def _build_greeting_tab() -> None:
    with gr.Row():
        name = gr.Textbox(label="Your name", placeholder="Ada")
        greeting = gr.Textbox(label="Greeting")
    button = gr.Button("Greet", variant="primary")
    gr.on([button.click, name.submit], greet, name, greeting, api_name="greet")


def _build_counter_tab() -> None:
    gr.Markdown("A counter kept per browser session (and per `gradio_client.Client`).")
    state = gr.State(0)
    shown = gr.Number(0, label="Count", precision=0, interactive=False)
    with gr.Row():
        gr.Button("Add 1", variant="primary").click(increment, state, [state, shown], api_name="increment")
        gr.Button("Reset").click(reset_counter, None, [state, shown], api_name="reset_counter")


def _share_chat_concurrency(blocks: gr.Blocks, limit: int | None) -> None:
    """Put every event that calls the model (the page's replies to a message, an example or a retry, and the
    /chat API) under one concurrency id and limit, so that LOCAL_CONCURRENCY bounds them together and the rest
    wait in the queue, seeing their position."""
    model_callers = (PageChat.chat_ui, chat)
    for block_fn in blocks.fns.values():
        if getattr(block_fn.fn, "__func__", block_fn.fn) in model_callers:
            block_fn.concurrency_id = "chat"
            block_fn.concurrency_limit = limit


with gr.Blocks(title=TITLE) as demo:
    gr.Markdown(f"# {TITLE}\n{DESCRIPTION}")
    with gr.Tabs():
        with gr.Tab("Chat", id="chat"):
            _build_chat_tab()
        with gr.Tab("Text tools", id="tools"):
            _build_tools_tab()
        with gr.Tab("Greeting", id="greeting"):
            _build_greeting_tab()
        with gr.Tab("Counter", id="counter"):
            _build_counter_tab()


# A model server takes many chats at once (CHAT_CONCURRENCY, no limit by default): one long reply must not block
# other visitors. The in-process model runs LOCAL_CONCURRENCY replies at a time: each one uses every core.
_share_chat_concurrency(demo, SETTINGS.local_concurrency if BACKEND.name == "local" else SETTINGS.chat_concurrency)
# max_size bounds how many calls may wait; past it callers get a "queue full" error instead of a hang.
demo.queue(max_size=SETTINGS.queue_max_size, default_concurrency_limit=None)
# Work Gradio 6.31 repeats on every update or session, done once instead (see gradio_tuning.py).
gradio_tuning.apply(demo)


def _force_theme_js(mode: str) -> str | None:
    """The seed's way to force a colour scheme: reload once with ?__theme=<mode>, which Gradio honours."""
    if mode == "system":
        return None
    return f"""
    () => {{
        const url = new URL(window.location);
        if (url.searchParams.get("__theme") !== "{mode}") {{
            url.searchParams.set("__theme", "{mode}");
            window.location.replace(url.href);
        }}
    }}
    """


def launch_options() -> dict[str, Any]:
    """Everything `launch()` takes from the settings (Gradio 6 moved theme, js and css from Blocks to launch)."""
    return {
        # Gradio runs at most max_threads jobs at once, async ones included (its queue has that many slots):
        # the default 40 would make the 41st streaming chat wait for a free slot.
        "max_threads": SETTINGS.max_jobs,
        "theme": gr.themes.Soft(),
        "js": _force_theme_js(SETTINGS.theme_mode),
        "auth": list(SETTINGS.app_auth) or None,
        "auth_message": "This Space is private: sign in with the account its owner gave you."
        if SETTINGS.app_auth
        else None,
    }


if __name__ == "__main__":
    assert ARGS is not None
    demo.launch(
        server_name=ARGS.host,
        server_port=ARGS.port,
        share=ARGS.share or None,
        inbrowser=ARGS.inbrowser,
        **launch_options(),
    )
