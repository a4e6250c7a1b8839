"""A local OpenAI-compatible server for tests and benchmarks, speaking the real streaming protocol.

`POST /v1/chat/completions` answers `chat.completion.chunk` events over SSE (ending with `data: [DONE]`), or
one `chat.completion` without `stream`; `GET /v1/models` lists its models. Every request body is recorded (with
its Authorization header), and misbehaviour can be queued: an HTTP status, a stream cut or ended early, an SSE
error event, raw bytes in place of a chunk, a stall that only sends keep-alive comments. It can also stream a
reasoning model's thinking, in any of the delta fields servers use or as `<think>` tags, and stops with
`finish_reason: "length"` at `max_tokens` as servers do (or ignores it, and can stream forever). Like OpenAI,
vLLM and TGI, it ends a stream with a `usage` chunk when `stream_options.include_usage` asks for one; strict, it
refuses `stream_options` with a 400 as vLLM before 0.4.3 did. `disconnects` records when a client left mid-stream,
`streaming` counts the streams still open.

Runs in a thread (`FakeOpenAI`), or as a process for benchmarks:
`python -m tests.support.fake_openai --port 8001 --tokens 50 --delay 0.02`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MODEL = "fake-model"
ThinkingStyle = Literal["reasoning", "reasoning_content", "reasoning_text", "tags"]


@dataclass
class Fault:
    """One queued misbehaviour: answer `status` (with `message`); stream `cut_after` tokens and drop the
    connection; stream `end_after` tokens and end the body cleanly without a finish_reason or `[DONE]`; send an
    SSE `error` object (`message`) after `error_after` tokens; or send `raw` bytes as an event after `raw_after`
    tokens, then carry on."""

    status: int | None = None
    cut_after: int | None = None
    end_after: int | None = None
    error_after: int | None = None
    raw_after: int | None = None
    raw: bytes = b""
    message: str = "simulated failure"
    error_event: bool = False  # with error_after: as `event: error` + data, the way some servers send it
    # After `stall_after` tokens, send `stall_with` every `stall_every` seconds and nothing else, forever: a server
    # that keeps the connection busy (`: keep-alive` comments, empty chunks) while writing no reply.
    stall_after: int | None = None
    stall_with: bytes = b": keep-alive\n\n"
    stall_every: float = 0.05


@dataclass
class Behaviour:
    """What the server does. `reply=None` echoes: 'You said: <last user message>'; `tokens` repeats a word;
    `pieces` streams exactly those pieces (to cut a word, or a key, between two chunks).

    `thinking`: words of thinking streamed before the answer, in the delta field (or as tags) `thinking_style` says.

    Usage: sent in a last chunk when the request asks for it (`usage`), or on every chunk as vLLM's
    `continuous_usage_stats` does (`usage_every_chunk`); prompt tokens are the words of the messages plus 4 a
    message, completion tokens the pieces streamed. `strict` refuses `stream_options` with a 400, as vLLM did
    before 0.4.3. `ignore_max_tokens` streams past `max_tokens`, and `endless` keeps streaming `t<i> ` after the
    reply until the client leaves.
    """

    reply: str | None = None
    tokens: int | None = None
    pieces: tuple[str, ...] | None = None
    delay: float = 0.0
    faults: deque[Fault] = field(default_factory=deque)
    thinking: str | None = None
    thinking_style: ThinkingStyle = "reasoning"
    models: tuple[str, ...] = (MODEL,)
    # Models the listing marks as reading images (`architecture.input_modalities`, as Hugging Face's router does).
    vision_models: tuple[str, ...] = ()
    # Seconds the listing takes to answer (a router slow at start-up).
    listing_delay: float = 0.0
    usage: bool = True
    usage_every_chunk: bool = False
    strict: bool = False
    ignore_max_tokens: bool = False
    endless: bool = False
    # Tool calls, as (name, arguments JSON) pairs, that the model makes in one round when it is offered tools,
    # until the conversation holds a tool's answer (then it says what the tools said); `call_forever`: always.
    tool_calls: tuple[tuple[str, str], ...] = ()
    call_forever: bool = False


# What a strict server knows of a chat completion request: anything else is refused.
_KNOWN_FIELDS = frozenset(
    {"model", "messages", "temperature", "max_tokens", "stream", "top_p", "n", "stop", "seed", "user"}
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def split_tokens(text: str) -> list[str]:
    """Word-sized pieces that join back to `text` exactly (each keeps its leading space)."""
    pieces: list[str] = []
    for i, word in enumerate(text.split(" ")):
        pieces.append(word if i == 0 else " " + word)
    return [p for p in pieces if p]


def reply_for(body: dict[str, Any], behaviour: Behaviour) -> list[str]:
    if behaviour.pieces is not None:
        return list(behaviour.pieces)
    if behaviour.tokens is not None:
        return [f"t{i} " for i in range(behaviour.tokens)]
    if behaviour.reply is not None:
        return split_tokens(behaviour.reply)
    messages = body.get("messages", [])
    if messages and messages[-1].get("role") == "tool":
        answers = [text_of(m["content"]) for m in messages if m.get("role") == "tool"]
        return split_tokens(f"Tool said: {' | '.join(answers)}")
    users = [m for m in messages if m.get("role") == "user"]
    return split_tokens(f"You said: {text_of(users[-1]['content']) if users else ''}")


def calls_now(body: dict[str, Any], behaviour: Behaviour) -> bool:
    """Whether this request is answered with tool calls: it offers tools, and no tool has answered yet."""
    messages = body.get("messages", [])
    answered = bool(messages) and messages[-1].get("role") == "tool"
    return bool(body.get("tools")) and bool(behaviour.tool_calls) and (behaviour.call_forever or not answered)


def _call_events(body: dict[str, Any], behaviour: Behaviour, *, usage: bool) -> Iterator[bytes]:
    """A round of tool calls as servers stream them: each call's id and name, then its arguments in pieces."""
    round_number = sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")
    yield _event({"role": "assistant"})
    for index, (name, arguments) in enumerate(behaviour.tool_calls):
        call_id = f"call_{round_number}_{index}"
        first = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
        yield _event({"tool_calls": [first]})
        for start in range(0, len(arguments), 5):
            yield _event({"tool_calls": [{"index": index, "function": {"arguments": arguments[start : start + 5]}}]})
    yield _event({}, finish="tool_calls")
    if usage:
        yield _event(None, usage=_usage(body, 10))
    yield b"data: [DONE]\n\n"


def text_of(content: Any) -> str:
    """A message's text: its content, or its text parts joined (a message with images is a list of parts)."""
    if isinstance(content, list):
        return "\n\n".join(part.get("text", "") for part in content if part.get("type") == "text")
    return str(content)


def images_of(content: Any) -> list[str]:
    """The image URLs (data: URLs) of a message's content parts."""
    if not isinstance(content, list):
        return []
    return [part["image_url"]["url"] for part in content if part.get("type") == "image_url"]


def prompt_tokens(body: dict[str, Any]) -> int:
    """The fake's prompt token count: the words of every message, and 4 a message."""
    return sum(len(str(m.get("content", "")).split()) + 4 for m in body.get("messages", []))


def _usage(body: dict[str, Any], completion: int) -> dict[str, int]:
    prompt = prompt_tokens(body)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _event(delta: dict[str, Any] | None, finish: str | None = None, *, usage: dict[str, int] | None = None) -> bytes:
    """One chunk; `delta` None is a usage chunk, whose choices are empty."""
    event: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        event["usage"] = usage
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def _strict_refusal(field: str) -> Response:
    """A 400 as vLLM before 0.4.3 answered a field it did not know (pydantic's `extra="forbid"`)."""
    detail = [{"type": "extra_forbidden", "loc": ("body", field), "msg": "Extra inputs are not permitted"}]
    body = {"object": "error", "message": str(detail), "type": "BadRequestError", "param": None, "code": 400}
    return JSONResponse(body, status_code=400)


class _CutStream(Exception):
    """Raised inside the response body: uvicorn then drops the connection mid-body, as a crashed server would."""


def _pieces(body: dict[str, Any], behaviour: Behaviour) -> list[tuple[str, str]]:
    """(field, text) pieces in order: thinking, then the answer; each counts as one token."""
    out: list[tuple[str, str]] = []
    if behaviour.thinking:
        words = split_tokens(behaviour.thinking)
        if behaviour.thinking_style == "tags":
            out += [("content", "<think>")] + [("content", w) for w in words] + [("content", "</think>\n\n")]
        else:
            out += [(behaviour.thinking_style, w) for w in words]
    out += [("content", piece) for piece in reply_for(body, behaviour)]
    return out


def build_app(
    behaviour: Behaviour,
    requests: list[dict[str, Any]],
    disconnects: list[float],
    streaming: set[object] | None = None,
    listings: list[float] | None = None,
) -> Starlette:
    open_streams = set() if streaming is None else streaming
    listed = [] if listings is None else listings

    async def completions(request: Request) -> Response:
        body = await request.json()
        body["_headers"] = {"authorization": request.headers.get("authorization", "")}
        requests.append(body)
        fault = behaviour.faults.popleft() if behaviour.faults else None
        if fault and fault.status:
            error = {"error": {"message": fault.message, "type": "fake_error", "code": fault.status}}
            return JSONResponse(error, status_code=fault.status)
        if behaviour.strict and (unknown := sorted(set(body) - _KNOWN_FIELDS - {"_headers"})):
            return _strict_refusal(unknown[0])
        pieces = _pieces(body, behaviour)
        finish = "stop"
        max_tokens = body.get("max_tokens")
        if max_tokens and len(pieces) > int(max_tokens) and not behaviour.ignore_max_tokens:
            pieces, finish = pieces[: int(max_tokens)], "length"
        if not body.get("stream"):
            text = "".join(text for name, text in pieces if name == "content")
            message = {"role": "assistant", "content": text}
            choice = {"index": 0, "message": message, "finish_reason": finish}
            return JSONResponse(
                {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": MODEL,
                 "choices": [choice], "usage": _usage(body, len(pieces))}
            )  # fmt: skip
        options = body.get("stream_options")
        wants_usage = behaviour.usage and isinstance(options, dict) and options.get("include_usage") is True
        every_chunk = behaviour.usage_every_chunk
        if calls_now(body, behaviour):
            return StreamingResponse(
                iter(list(_call_events(body, behaviour, usage=wants_usage))), media_type="text/event-stream"
            )

        def written(pieces: Iterator[tuple[str, str]]) -> Iterator[tuple[int, str, str]]:
            count = 0
            for name, text in pieces:
                yield count, name, text
                count += 1
            while behaviour.endless:
                yield count, "content", f"t{count} "
                count += 1

        async def events() -> AsyncIterator[bytes]:
            sent = 0
            key = object()
            open_streams.add(key)
            try:
                yield _event({"role": "assistant"}, usage=_usage(body, 0) if every_chunk else None)
                for i, name, text in written(iter(pieces)):
                    if fault and fault.cut_after is not None and i >= fault.cut_after:
                        raise _CutStream("connection dropped by the fake server")
                    if fault and fault.end_after is not None and i >= fault.end_after:
                        return
                    if fault and fault.error_after is not None and i >= fault.error_after:
                        error = {"error": {"message": fault.message, "type": "server_error", "code": 500}}
                        prefix = b"event: error\n" if fault.error_event else b""
                        yield prefix + b"data: " + json.dumps(error).encode() + b"\n\n"
                        return
                    if fault and fault.raw_after is not None and i == fault.raw_after:
                        yield fault.raw
                    if fault and fault.stall_after is not None and i >= fault.stall_after:
                        break
                    if behaviour.delay:
                        await asyncio.sleep(behaviour.delay)
                    elif behaviour.endless and i % 100 == 0:
                        await asyncio.sleep(0)  # lets the server notice a client that left
                    sent += 1
                    yield _event({name: text}, usage=_usage(body, sent) if every_chunk else None)
                while fault and fault.stall_after is not None:
                    yield fault.stall_with
                    await asyncio.sleep(fault.stall_every)
                yield _event({}, finish=finish, usage=_usage(body, sent) if every_chunk else None)
                if wants_usage:
                    yield _event(None, usage=_usage(body, sent))
                yield b"data: [DONE]\n\n"
            except asyncio.CancelledError:
                # Starlette cancels the body when the client goes away: the caller stopped reading.
                disconnects.append(time.monotonic())
                raise
            finally:
                open_streams.discard(key)

        return StreamingResponse(events(), media_type="text/event-stream")

    async def models(request: Request) -> Response:
        listed.append(time.monotonic())
        await asyncio.sleep(behaviour.listing_delay)
        data = [
            {
                "id": model,
                "object": "model",
                "owned_by": "tests",
                "architecture": {
                    "input_modalities": ["text", "image"] if model in behaviour.vision_models else ["text"]
                },
            }
            for model in behaviour.models
        ]
        return JSONResponse({"object": "list", "data": data})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
        ]
    )


class FakeOpenAI:
    """The server on 127.0.0.1 in a background thread; use as a context manager."""

    def __init__(self, behaviour: Behaviour | None = None, *, port: int | None = None) -> None:
        self.behaviour = behaviour or Behaviour()
        self._default = Behaviour(**{**vars(self.behaviour), "faults": deque()})
        self.requests: list[dict[str, Any]] = []
        # time.monotonic() of each stream whose client hung up before the end
        self.disconnects: list[float] = []
        self.streaming: set[object] = set()  # streams still being sent
        self.listings: list[float] = []  # time.monotonic() of each GET /models
        self.port = port or free_port()
        config = uvicorn.Config(
            build_app(self.behaviour, self.requests, self.disconnects, self.streaming, self.listings),
            host="127.0.0.1",
            port=self.port,
            log_level="critical",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def wait_for_disconnect(self, timeout: float) -> float | None:
        """The time.monotonic() at which a client first left mid-stream, waiting up to `timeout` s; None if none."""
        deadline = time.monotonic() + timeout
        while not self.disconnects and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.disconnects[0] if self.disconnects else None

    def wait_until_idle(self, timeout: float) -> bool:
        """Wait up to `timeout` s for every stream to end (a test's leftovers must not end during the next)."""
        deadline = time.monotonic() + timeout
        while self.streaming and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self.streaming

    def reset(self) -> None:
        """Forget the recorded requests and go back to the behaviour it started with."""
        self.requests.clear()
        self.disconnects.clear()
        self.listings.clear()
        for name, value in vars(self._default).items():
            setattr(self.behaviour, name, deque() if name == "faults" else value)

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake OpenAI server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--tokens", type=int, default=None, help="reply with this many tokens (default: echo)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between two tokens")
    args = parser.parse_args()
    behaviour = Behaviour(tokens=args.tokens, delay=args.delay)
    uvicorn.run(build_app(behaviour, [], []), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
