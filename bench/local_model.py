"""Tokens per second of the local backend, and of the app on it, against `model.generate` called directly.

Paths, alternated in one process, in an order rotated every round, so that drift (CPU frequency, other
load) hits them alike:

- direct:  chat template, `model.generate` (greedy, same max_new_tokens), decode: the ceiling;
- backend: `LocalBackend.stream`, the async generator the chat reads (threads, streamer, stop criterion);
- chat:    `services.chat.prepare_chat` + `stream_reply`, what the app's handler runs (fitting, coalescing);
- app:     `app.build_demo` on the same backend, launched on 127.0.0.1, called over HTTP
           (`/gradio_api/call/chat`): queue, SSE, JSON.

Greedy decoding makes every path write the very same text (checked), so each is credited the token count of
the direct call. Printed: tokens/s, best and median of --rounds, and the share of direct three ways: "paired"
(the median, over rounds, of direct time / path time within the round: steady on a shared machine), best
over best, and median over median. The app must keep at least --min-ratio (0.90) of direct: the last line
printed is the paired share of the slowest path, and the exit status is 1 when it is below.
Run from the repository root:

    python bench/local_model.py                          # tiny random model: hidden 256, 4 layers
    python bench/local_model.py --hidden 512 --layers 8
    python bench/local_model.py --model HuggingFaceTB/SmolLM2-360M-Instruct --tokens 128   # if cached

The Space's default model for this machine (SmolLM2-360M-Instruct on a CPU, Qwen3-4B-Instruct-2507 on a GPU) is
measured too, with --default-tokens, when it is in the Hugging Face cache; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from services.llm.base import GenerationParams, Message
    from services.llm.local_backend import LoadedModel, LocalBackend
    from ui.launch import SpaceBlocks

T = TypeVar("T")
MESSAGE = "tell me a story about a robot who learns to paint"
SYSTEM = "you are a helpful assistant"


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a model directory or cached Hub id (default: build a tiny random model)")
    parser.add_argument("--hidden", type=int, default=256, help="tiny model width (default 256)")
    parser.add_argument("--layers", type=int, default=4, help="tiny model depth (default 4)")
    parser.add_argument("--tokens", type=int, default=512, help="new tokens per reply (default 512)")
    parser.add_argument("--default-tokens", type=int, default=64, help="the same, for the default model if cached")
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds per path (default 10)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, one per core)")
    parser.add_argument("--no-app", action="store_true", help="skip the path through the app and HTTP")
    parser.add_argument("--min-ratio", type=float, default=0.90, help="ratio to reach (default 0.90)")
    return parser.parse_args()


def _is_cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def _messages() -> list[Message]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": MESSAGE}]


def _direct(loaded: LoadedModel, tokens: int) -> tuple[str, int]:
    """The reply and its number of new tokens, with transformers alone."""
    from services.llm.base import content_text

    tokenizer = loaded.tokenizer
    messages = [{"role": m["role"], "content": content_text(m["content"])} for m in _messages()]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").to(loaded.model.device)
    generate: Any = loaded.model.generate  # transformers types it as a Tensor attribute of the module
    output = generate(**inputs, max_new_tokens=tokens, do_sample=False, pad_token_id=loaded.pad_token_id)
    new = output[0, inputs["input_ids"].shape[1] :]
    return str(tokenizer.decode(new, skip_special_tokens=True)), len(new)


def _on_fresh_thread(fn: Callable[[], T]) -> T:
    """Run `fn` on a new thread and return its result; the thread, and any OpenMP team it made, then ends."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn).result()


def _params(tokens: int) -> GenerationParams:
    from services.llm.base import GenerationParams

    return GenerationParams(temperature=0, max_tokens=tokens)


async def _backend(backend: LocalBackend, tokens: int) -> str:
    from services.llm.base import ChatRequest

    request = ChatRequest(messages=_messages(), params=_params(tokens))
    return "".join([delta.text async for delta in backend.stream(request)])


async def _chat(backend: LocalBackend, tokens: int) -> str:
    from services.chat import Reply, prepare_chat, stream_reply
    from services.config import Settings
    from services.conversation import Turn

    settings = Settings(max_tokens_cap=max(tokens, 4096))
    prepared = prepare_chat(
        backend,
        Turn("user", MESSAGE),
        [],
        system_prompt=SYSTEM,
        params=_params(tokens),
        model=None,
        api_key=None,
        settings=settings,
    )
    reply = Reply()
    async for reply in stream_reply(backend, prepared.request, interval=settings.stream_interval_for("local")):  # noqa: B007
        pass  # each value is the reply so far; the last is the reply
    return reply.text


def _call_app(url: str, tokens: int) -> str:
    """One chat turn through the app's HTTP API (`/gradio_api/call/chat`, server-sent events); the reply.

    A bare urllib client rather than gradio_client, which costs this process more CPU per event than the
    server does, and keeps one conversation per Client (history would grow from call to call).
    """
    body = json.dumps({"data": [MESSAGE, SYSTEM, 0, tokens]}).encode()
    request = urllib.request.Request(
        url + "gradio_api/call/chat", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request) as response:
        event_id = json.load(response)["event_id"]
    event, reply = "", None
    with urllib.request.urlopen(f"{url}gradio_api/call/chat/{event_id}") as events:
        for raw in events:
            line = raw.decode().rstrip("\n")
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                if event == "error":
                    raise SystemExit(f"the app answered with an error: {line}")
                if event in ("generating", "complete"):
                    reply = json.loads(line.removeprefix("data:"))[0]
                if event == "complete":
                    break
    if not isinstance(reply, str):
        raise SystemExit(f"unexpected reply from the app: {reply!r}")
    return reply


def _app_on(backend: LocalBackend, model: str) -> SpaceBlocks:
    """The Space's Blocks (app.build_demo) chatting with `backend`, which holds this process's loaded model."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    from app import build_demo
    from services.access import Access
    from services.config import Settings

    # No rate limit: the benchmark is one client sending many messages on purpose.
    settings = Settings(local_model=model, rate_limit_session=None, rate_limit_ip=None)
    return build_demo(settings, Access(owner=backend))


async def _measure(model: str, tokens: int, args: argparse.Namespace, *, with_app: bool) -> tuple[float, str]:
    """Print the figures for one model; returns the ratio of the slowest path to direct, and that path."""
    from services.config import Settings
    from services.llm.local_backend import LocalBackend

    backend = LocalBackend.from_settings(Settings(local_model=model))
    loaded = backend.loaded
    print(f"\n== {model}: {loaded.model.num_parameters() / 1e6:.1f}M parameters on {loaded.device} ({loaded.dtype})")

    async def direct() -> str:
        # On a fresh thread, as the backend does: a torch call on this (main) thread would leave it an OpenMP
        # team that slows every other thread's kernels (see `_load_on_cpu_thread` in local_backend.py).
        return _on_fresh_thread(lambda: _direct(loaded, tokens))[0]

    paths: dict[str, Callable[[], Awaitable[str]]] = {
        "direct": direct,
        "backend": lambda: _backend(backend, tokens),
        "chat": lambda: _chat(backend, tokens),
    }
    demo = None
    if with_app:
        demo = _app_on(backend, model)
        _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)

        async def through_app() -> str:
            # Blocking on purpose: the server runs on its own threads, and nothing else runs meanwhile.
            return _call_app(url, tokens)

        paths["app"] = through_app

    try:
        expected, new_tokens = _on_fresh_thread(lambda: _direct(loaded, tokens))
        for name, run in paths.items():  # warm-up, and the check that every path writes the same reply
            text = await run()
            if text != expected:
                raise SystemExit(f"{name} wrote another reply than model.generate:\n{text!r}\n{expected!r}")
        times: dict[str, list[float]] = {name: [] for name in paths}
        names = list(paths)
        for round_number in range(args.rounds):
            # Rotated, so that no path always runs right after the same other one.
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                run = paths[name]
                started = time.perf_counter()
                text = await run()
                times[name].append(time.perf_counter() - started)
                if text != expected:
                    raise SystemExit(f"{name} wrote another reply in a timed round: not the same work")
    finally:
        if demo is not None:
            demo.close()

    best = {name: new_tokens / min(seconds) for name, seconds in times.items()}
    median = {name: new_tokens / statistics.median(seconds) for name, seconds in times.items()}
    # Each round's direct time over the path's time, in the same round: drift and bursts of load from other
    # processes hit both sides of a pair alike, and the median of the pairs ignores the worst bursts.
    paired = {
        name: statistics.median(d / p for d, p in zip(times["direct"], seconds, strict=True))
        for name, seconds in times.items()
    }
    print(f"{new_tokens} new tokens per reply, {args.rounds} rounds. Tokens/s, best and median; share of direct:")
    print(f"  {'path':8} {'best':>8} {'median':>8}   {'paired':>6} {'best':>6} {'median':>6}")
    for name in times:
        print(
            f"  {name:8} {best[name]:8.1f} {median[name]:8.1f}   {paired[name]:6.3f} "
            f"{best[name] / best['direct']:6.3f} {median[name] / median['direct']:6.3f}"
        )
    slowest = min((name for name in paired if name != "direct"), key=paired.__getitem__)
    return paired[slowest], slowest


def main() -> int:
    args = _parse_args()
    from services.llm.local_backend import default_model

    default = default_model()

    if args.threads:
        import torch

        # 1 makes figures steadier on a shared machine: an OpenMP barrier waits for its slowest thread, and
        # a thread the OS has preempted for another process stalls every token.
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="tiny-model-") as tmp:
        if args.model:
            first = args.model
        else:
            from tests.support.tiny_model import build_tiny_model

            context = max(4096, args.tokens + 256)
            first = str(
                _on_fresh_thread(
                    lambda: build_tiny_model(
                        Path(tmp), hidden_size=args.hidden, num_layers=args.layers, context=context
                    )
                )
            )
        results = [asyncio.run(_measure(first, args.tokens, args, with_app=not args.no_app))]
        if first != default:
            if _is_cached(default):
                results.append(asyncio.run(_measure(default, args.default_tokens, args, with_app=False)))
            else:
                print(f"\n{default}: not in the Hugging Face cache, not measured")
    ratio, path = min(results)
    verdict = "OK" if ratio >= args.min_ratio else "BELOW TARGET"
    print(f"\nratio {path}/direct = {ratio:.3f} (paired median; target >= {args.min_ratio:.2f}): {verdict}")
    return 0 if ratio >= args.min_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
