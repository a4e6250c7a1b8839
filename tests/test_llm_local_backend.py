"""The local transformers backend, on tiny random-weight models built on disk (no download, no mocks)."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import pickle
import time
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from transformers import BertConfig, BertModel

from services.chat import prepare_chat, stream_reply
from services.config import DEFAULT_GPU_LOCAL_MODEL, DEFAULT_LOCAL_MODEL, Settings
from services.conversation import Turn
from services.errors import (
    BackendError,
    BackendRequestError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigError,
    ValidationError,
    ZeroGPUError,
)
from services.llm import create_backend, local_backend, zerogpu
from services.llm.base import BackendStatus, ChatRequest, Delta, GenerationParams, Message, Usage
from services.llm.local_backend import LocalBackend, _as_backend_error, default_model, load_model
from services.llm.zerogpu import LeasePlanner, Timing
from services.redact import Scrubber
from tests.support.fake_openai import free_port
from tests.support.fake_zerogpu import FakeZeroGPU, schedule_like_spaces, visitor_request
from tests.support.tiny_model import THREAD_NAMES, build_tiny_model, live_threads, wait_for_threads

pytestmark = pytest.mark.e2e

GREEDY = GenerationParams(temperature=0, max_tokens=20)
LONG = GenerationParams(temperature=0, max_tokens=4000)  # many seconds of work on the slow model if not stopped
SYSTEM = "you are a helpful assistant"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small context window (256 tokens), so that a few messages overflow it."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), context=256)


@pytest.fixture(scope="module")
def slow_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Big enough, with a long enough context, that a full reply takes many seconds on a CPU."""
    return build_tiny_model(tmp_path_factory.mktemp("slow"), hidden_size=256, num_layers=4, context=4096)


@pytest.fixture(scope="module")
def unusable_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of models that cannot serve as LOCAL_MODEL, beside a good one ("tiny")."""
    root = tmp_path_factory.mktemp("unusable")
    build_tiny_model(root / "tiny")
    (build_tiny_model(root / "no-template") / "chat_template.jinja").unlink()
    encoder = build_tiny_model(root / "encoder")
    config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    BertModel(config).save_pretrained(encoder)
    return root


@pytest.fixture(scope="module")
def backend(tiny_dir: Path) -> LocalBackend:
    return LocalBackend.from_settings(Settings(llm_backend="local", local_model=str(tiny_dir)))


@pytest.fixture(scope="module")
def early_stop(tmp_path_factory: pytest.TempPathFactory, backend: LocalBackend) -> tuple[LocalBackend, str]:
    """The tiny model again (same seed, same weights), whose generation config also ends a reply at the 4th word
    of its greedy reply: a reply that ends by itself before max_tokens. Returns it and that shorter reply."""
    ids = greedy_ids(backend, conversation(), GREEDY.max_tokens)
    end = ids.index(ids[3])  # the first place that word is written
    path = build_tiny_model(tmp_path_factory.mktemp("early"), context=256)
    config_path = path / "generation_config.json"
    config = json.loads(config_path.read_text())
    config["eos_token_id"] = [config["eos_token_id"], ids[3]]
    config_path.write_text(json.dumps(config))
    expected = backend.loaded.tokenizer.decode(ids[: end + 1], skip_special_tokens=True)
    return LocalBackend(load_model(str(path))), expected


def conversation(text: str = "tell me a story") -> list[Message]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]


def chat(text: str = "tell me a story", params: GenerationParams = GREEDY) -> ChatRequest:
    return ChatRequest(conversation(text), params)


def collect(backend: LocalBackend, request: ChatRequest) -> list[Delta]:
    async def run() -> list[Delta]:
        return [delta async for delta in backend.stream(request)]

    return asyncio.run(run())


def collect_failing(backend: LocalBackend, request: ChatRequest) -> tuple[list[Delta], BackendError]:
    """The deltas that arrived before the stream failed, and the error it failed with."""
    received: list[Delta] = []

    async def run() -> None:
        async for delta in backend.stream(request):
            received.append(delta)

    with pytest.raises(BackendError) as caught:
        asyncio.run(run())
    return received, caught.value


def text_of(deltas: list[Delta]) -> str:
    return "".join(delta.text for delta in deltas)


def greedy_ids(backend: LocalBackend, messages: list[Message], max_new_tokens: int) -> list[int]:
    tokenizer, model = backend.loaded.tokenizer, backend.loaded.model
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    output = model.generate(
        **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    ids: list[int] = output[0, inputs["input_ids"].shape[1] :].tolist()
    return ids


def direct_greedy(backend: LocalBackend, messages: list[Message], max_new_tokens: int) -> str:
    text: str = backend.loaded.tokenizer.decode(greedy_ids(backend, messages, max_new_tokens), skip_special_tokens=True)
    return text


@pytest.mark.unit
class TestLoad:
    def test_loads_once_per_model(self, tiny_dir: Path, backend: LocalBackend):
        """A second backend on the same LOCAL_MODEL reuses the loaded model instead of loading it again."""
        again = LocalBackend.from_settings(Settings(local_model=str(tiny_dir)))
        assert again.loaded is backend.loaded
        assert load_model(str(tiny_dir)) is backend.loaded

    def test_create_backend_selects_local(self, tiny_dir: Path, backend: LocalBackend):
        """LLM_BACKEND=local with LOCAL_MODEL=<dir> gives the local backend, named by its path, on the CPU."""
        chosen = create_backend(Settings(llm_backend="local", local_model=str(tiny_dir)), Scrubber(()))
        assert isinstance(chosen, LocalBackend)
        assert chosen.loaded is backend.loaded
        assert chosen.name == "local"
        assert chosen.status() == BackendStatus("local", str(tiny_dir), "cpu")

    def test_from_settings_takes_the_limits(self, tiny_dir: Path):
        """LOCAL_CONCURRENCY and STREAM_INTERVAL_MS reach the backend; by default one reply at a time, 100 ms."""
        tuned = LocalBackend.from_settings(
            Settings(local_model=str(tiny_dir), local_concurrency=3, stream_interval=0.25)
        )
        default = LocalBackend.from_settings(Settings(local_model=str(tiny_dir)))
        assert (tuned.concurrency_limit, tuned.stream_interval) == (3, 0.25)
        assert (default.concurrency_limit, default.stream_interval) == (1, 0.1)

    def test_reads_the_context_window_from_the_config(self, backend: LocalBackend):
        """max_position_embeddings wins over the tokenizer's (deliberately huge) model_max_length."""
        assert backend.loaded.context_window == 256
        assert (backend.loaded.device, backend.loaded.dtype) == ("cpu", torch.float32)

    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("missing", "does not exist"),  # a path to nowhere
            ("tiny/config.json", "is a file"),  # a file, not the model's directory
            ("no-template", "no chat template"),  # a base model that cannot chat
            ("encoder", "not a causal language model"),  # BERT would load with a random LM head
        ],
    )
    def test_unusable_model_is_a_config_error(self, unusable_dir: Path, name: str, expected: str):
        """Every unusable LOCAL_MODEL is a ConfigError that names the variable, never a traceback."""
        with pytest.raises(ConfigError, match=expected) as caught:
            load_model(str(unusable_dir / name))
        assert caught.value.variable == "LOCAL_MODEL"
        assert str(caught.value).startswith("LOCAL_MODEL: ")

    def test_offline_hub_id_is_a_config_error(self, monkeypatch: pytest.MonkeyPatch):
        """A Hub id that is not in the cache, offline, names LOCAL_MODEL and says what to do, at once."""
        # huggingface_hub reads HF_HUB_OFFLINE once, at import; the e2e tests set the variable itself.
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        with pytest.raises(ConfigError) as caught:
            load_model("nobody-at-all/no-such-model")
        assert caught.value.variable == "LOCAL_MODEL"
        assert str(caught.value) == (
            "LOCAL_MODEL: 'nobody-at-all/no-such-model' is not in this machine's Hugging Face cache, and "
            "HF_HUB_OFFLINE is set: download it once (`hf download nobody-at-all/no-such-model`), or set "
            "LOCAL_MODEL to a folder that holds a model."
        )

    def test_an_unreachable_hub_fails_at_once(self, monkeypatch: pytest.MonkeyPatch):
        """Online, but with the Hub out of reach: a second, not a minute of retries, and the reason."""
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{free_port()}")
        started = time.monotonic()
        with pytest.raises(ConfigError, match="cannot be reached from here") as caught:
            load_model("nobody-at-all/no-such-model")
        assert time.monotonic() - started < 5
        assert caught.value.variable == "LOCAL_MODEL"


@pytest.mark.unit
class TestStream:
    def test_streams_token_by_token(self, backend: LocalBackend):
        """With no batching interval, every token is its own text Delta (one word per token here), and a last
        Delta says the reply stopped at max_tokens."""
        deltas = collect(LocalBackend(backend.loaded, piece_interval=0), chat())
        assert len(deltas) == GREEDY.max_tokens + 1
        assert deltas[-1].finish_reason == "length"
        assert all(len(delta.text.split()) == 1 for delta in deltas[:-1])
        assert all((delta.thinking, delta.finish_reason) == ("", None) for delta in deltas[:-1])

    def test_batches_fast_tokens_but_sends_the_first_at_once(self, backend: LocalBackend):
        """By default tokens faster than 20 ms are joined, except the first, which is not kept waiting."""
        request = chat(params=GenerationParams(temperature=0, max_tokens=100))
        deltas = collect(backend, request)
        assert 1 < len(deltas) - 1 < request.params.max_tokens
        assert len(deltas[0].text.split()) == 1
        assert text_of(deltas) == text_of(collect(LocalBackend(backend.loaded, piece_interval=0), request))

    def test_greedy_equals_generate(self, backend: LocalBackend):
        """At temperature 0 the streamed text is exactly what greedy `model.generate` decodes to."""
        deltas = collect(backend, chat())
        expected = direct_greedy(backend, conversation(), GREEDY.max_tokens)
        assert expected.strip()
        assert text_of(deltas) == expected
        assert deltas[-1].finish_reason == "length"

    def test_max_tokens_is_max_new_tokens(self, backend: LocalBackend):
        """max_tokens counts new tokens only (one word per token with this tokenizer)."""
        deltas = collect(backend, chat(params=GenerationParams(temperature=0, max_tokens=7)))
        assert len(text_of(deltas).split()) == 7
        assert deltas[-1].finish_reason == "length"

    def test_the_last_delta_counts_tokens_with_the_tokenizer(self, backend: LocalBackend):
        """The last Delta carries the reply's usage, counted, not estimated: the prompt as the chat template
        writes it, and the tokens generated; the prompt's count is what `estimate_prompt_tokens` says before."""
        request = chat(params=GenerationParams(temperature=0, max_tokens=7))
        prompt = backend.estimate_prompt_tokens(request)
        assert prompt == backend.count_tokens(request.messages) > len(request.messages)
        deltas = collect(backend, request)
        assert deltas[-1].usage == Usage(prompt, 7)
        assert all(delta.usage is None for delta in deltas[:-1])

    def test_a_reply_that_ends_by_itself_stops(self, early_stop: tuple[LocalBackend, str]):
        """A reply that reaches an end token before max_tokens ends with finish_reason "stop"."""
        stopping, expected = early_stop
        deltas = collect(stopping, chat())
        assert text_of(deltas) == expected
        assert 0 < len(expected.split()) < GREEDY.max_tokens
        assert deltas[-1].finish_reason == "stop"

    def test_sampling_streams_text(self, backend: LocalBackend):
        """A temperature above 0 samples, and still streams words of the vocabulary."""
        deltas = collect(backend, chat(params=GenerationParams(temperature=1.5, max_tokens=20)))
        vocabulary = backend.loaded.tokenizer.get_vocab()
        assert text_of(deltas).split()
        assert all(word in vocabulary for word in text_of(deltas).split())
        assert deltas[-1].finish_reason in ("length", "stop")

    def test_only_the_last_delta_ends_the_reply(self, backend: LocalBackend):
        """Exactly one Delta carries a finish_reason, and it carries no text."""
        deltas = collect(backend, chat())
        assert [delta.finish_reason is not None for delta in deltas] == [False] * (len(deltas) - 1) + [True]
        assert deltas[-1].text == ""

    def test_over_the_context_without_fit_is_a_backend_error(self, backend: LocalBackend):
        """A caller that skips fit() and overflows the context gets a BackendRequestError, not a crash; the
        threads end, and the slot is free for the next reply."""
        request = chat("the " * 400)
        deltas, error = collect_failing(backend, request)
        assert deltas == []
        assert type(error) is BackendRequestError
        assert str(error) == (
            f"The conversation is {backend.count_tokens(request.messages):,} tokens, and the model's context "
            "window is 256: start a new conversation."
        )
        assert live_threads() == []
        assert collect(backend, chat())[-1].finish_reason == "length"

    def test_without_fit_the_reply_ends_at_the_window(self, backend: LocalBackend):
        """A caller that skips fit() gets the tokens that still fit, and finish_reason "length"."""
        request = chat("the " * 233)
        room = backend.loaded.context_window - backend.count_tokens(request.messages)
        assert room == 10  # fewer than GREEDY.max_tokens
        deltas = collect(backend, request)
        assert len(text_of(deltas).split()) == room
        assert deltas[-1].finish_reason == "length"

    def test_a_failure_inside_generate_is_a_backend_error(self, backend: LocalBackend):
        """generate raising (here on a negative temperature, which the chat layer never lets through) becomes
        a BackendError naming its type only, and both threads end."""
        deltas, error = collect_failing(backend, chat(params=GenerationParams(temperature=-1.0, max_tokens=5)))
        assert deltas == []
        assert type(error) is BackendError
        assert str(error) == "The local model failed while writing the reply (ValueError). Try again."
        assert live_threads() == []

    def test_generating_function_is_a_sync_generator(self, backend: LocalBackend):
        """spaces.GPU accepts sync generators only; off ZeroGPU it returns the function unchanged."""
        assert inspect.isgeneratorfunction(LocalBackend._generate)
        assert backend._generate_on_gpu == backend._generate

    def test_what_crosses_the_zerogpu_process_boundary_pickles(self):
        """On ZeroGPU the arguments and every yielded value (errors and the finish included) are pickled between
        processes."""
        finishes = (("finish", "length", Usage(17, 20)), ("finish", "stop", Usage(17, 4)))
        for value in (conversation(), GREEDY, "a piece", Timing(12, 0.01, 20, 0.2), *finishes):
            assert pickle.loads(pickle.dumps(value)) == value
        for error in (
            BackendRequestError("too long"),
            BackendTimeoutError("silent for 60 s"),
            BackendUnavailableError("out of memory"),
        ):
            copy = pickle.loads(pickle.dumps(error))
            assert type(copy) is type(error)
            assert str(copy) == str(error)


@pytest.mark.unit
class TestErrors:
    def test_zerogpu_refusal_is_a_sentence(self):
        """spaces.GPU raises gradio.Error (quota, no GPU); the user reads one sentence of the app's, with when the
        quota comes back (here ZeroGPU did not say) and that signing in gives more."""
        import gradio as gr

        error = _as_backend_error(gr.Error("You have exceeded your GPU quota.", title="ZeroGPU quota exceeded"))
        assert isinstance(error, ZeroGPUError)
        assert isinstance(error, BackendUnavailableError)
        assert str(error) == (
            "Your ZeroGPU quota (the GPU time Hugging Face gives each visitor) is used up: it comes back within a "
            "day, and signing in to Hugging Face gives more (5 minutes a day instead of 2, 40 with PRO)."
        )

    def test_another_gradio_error_keeps_its_text(self):
        """A gradio.Error that is not ZeroGPU's keeps its title and message."""
        import gradio as gr

        error = _as_backend_error(gr.Error("The disk is full.", title="Storage"))
        assert type(error) is BackendUnavailableError
        assert str(error) == "Storage: The disk is full."

    def test_out_of_memory_says_what_to_change(self):
        """CUDA out of memory becomes advice, not a traceback."""
        error = _as_backend_error(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
        assert isinstance(error, BackendUnavailableError)
        assert str(error) == (
            "The local model ran out of GPU memory. Try a shorter conversation or a lower max_tokens."
        )

    def test_anything_else_is_a_backend_error_without_internals(self):
        """An unexpected failure names its type only: its text may hold paths or tensor dumps."""
        error = _as_backend_error(RuntimeError("shape mismatch at /opt/venv/lib/python3.11/torch"))
        assert type(error) is BackendError
        assert str(error) == "The local model failed while writing the reply (RuntimeError). Try again."

    def test_a_silent_model_times_out(self, slow_dir: Path):
        """A model that writes nothing for LLM_TIMEOUT (here: reading a long prompt) fails with a timeout that
        names the setting, and its threads end."""
        backend = LocalBackend.from_settings(Settings(local_model=str(slow_dir), llm_timeout=0.1))
        request = chat("the " * 4000, GenerationParams(temperature=0, max_tokens=5))  # near the whole window
        started = time.monotonic()
        deltas, error = collect_failing(backend, request)
        assert deltas == []
        assert type(error) is BackendTimeoutError
        assert str(error) == (
            "The local model wrote nothing for 0.1 s (LLM_TIMEOUT). Try a shorter conversation or a lower "
            "max_tokens, or raise LLM_TIMEOUT."
        )
        assert time.monotonic() - started < 10
        assert live_threads() == []


@pytest.mark.unit
class TestStop:
    def test_closing_mid_stream_ends_generation_within_a_second(self, slow_dir: Path):
        """aclose() (Stop pressed, tab closed, job cancelled) ends both threads within a second."""
        backend = LocalBackend.from_settings(Settings(local_model=str(slow_dir)))

        async def run() -> float:
            stream = backend.stream(chat(params=LONG))
            for _ in range(3):
                assert (await anext(stream)).text
            assert set(live_threads()) == THREAD_NAMES
            started = time.monotonic()
            await stream.aclose()  # type: ignore[attr-defined]
            return time.monotonic() - started

        assert asyncio.run(run()) < 1.0
        assert live_threads() == []

    def test_cancelled_chat_task_ends_generation(self, slow_dir: Path):
        """Cancelling the task that reads the chat's stream (as Gradio does) stops the generation too."""
        backend = LocalBackend.from_settings(Settings(local_model=str(slow_dir)))
        prepared = prepare_chat(
            backend,
            Turn("user", "tell me a story"),
            [],
            system_prompt=SYSTEM,
            params=LONG,
            model=None,
            api_key=None,
            settings=Settings(),
        )
        seen: list[str] = []

        async def read() -> None:
            async with aclosing(stream_reply(backend, prepared.request)) as replies:
                async for reply in replies:
                    seen.append(reply.text)

        async def run() -> float:
            task = asyncio.create_task(read())
            while len(seen) < 3:
                await asyncio.sleep(0.01)
            started = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            deadline = started + 1.0
            while live_threads() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            return time.monotonic() - started

        assert asyncio.run(run()) < 1.0
        assert live_threads() == []
        assert seen[0]
        assert seen[-1].startswith(seen[0])

    def test_concurrency_limit_queues_the_second_reply(self, slow_dir: Path):
        """With LOCAL_CONCURRENCY=1 a second reply waits for the first, and leaving while waiting is clean: the
        slot is free again afterwards."""
        backend = LocalBackend.from_settings(Settings(local_model=str(slow_dir), local_concurrency=1))

        async def run() -> list[Delta]:
            first = backend.stream(chat(params=LONG))
            assert (await anext(first)).text
            second = backend.stream(chat(params=LONG))
            waiting = asyncio.create_task(anext(second))
            done, _ = await asyncio.wait({waiting}, timeout=0.5)
            assert not done  # still waiting for the slot
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            await second.aclose()  # type: ignore[attr-defined]
            await first.aclose()  # type: ignore[attr-defined]
            return [delta async for delta in backend.stream(chat(params=GenerationParams(0, 3)))]

        deltas = asyncio.run(run())
        assert len(text_of(deltas).split()) == 3
        assert deltas[-1].finish_reason == "length"
        assert live_threads() == []

    def test_two_slots_stream_two_replies_at_once(self, slow_dir: Path):
        """With LOCAL_CONCURRENCY=2 a second reply streams while the first is still open."""
        backend = LocalBackend.from_settings(Settings(local_model=str(slow_dir), local_concurrency=2))

        async def run() -> None:
            first = backend.stream(chat(params=LONG))
            second = backend.stream(chat(params=LONG))
            try:
                assert (await anext(first)).text
                assert (await asyncio.wait_for(anext(second), timeout=10)).text
                assert (await anext(first)).text
            finally:
                await second.aclose()  # type: ignore[attr-defined]
                await first.aclose()  # type: ignore[attr-defined]

        asyncio.run(run())
        wait_for_threads(time.monotonic() + 1.0)
        assert live_threads() == []


@pytest.mark.unit
class TestFit:
    @staticmethod
    def long_conversation(pairs: int) -> list[Message]:
        messages: list[Message] = [{"role": "system", "content": SYSTEM}]
        for i in range(pairs):
            messages.append({"role": "user", "content": f"tell me a story about {'the sea ' * (i % 3 + 1)}"})
            messages.append({"role": "assistant", "content": "the quick brown fox jumps over the lazy dog"})
        messages.append({"role": "user", "content": "why is the sky blue"})
        return messages

    def test_short_conversation_is_untouched(self, backend: LocalBackend):
        """A conversation that fits comes back as it was: the very same request, nothing dropped."""
        request = chat()
        fitted, dropped = backend.fit(request)
        assert fitted is request
        assert dropped == 0
        assert backend.fit_messages(conversation(), GREEDY) == (conversation(), 0)

    def test_drops_the_oldest_pairs_to_fit(self, backend: LocalBackend):
        """The system message and the newest message stay; the oldest exchanges go, and no more than needed."""
        messages = self.long_conversation(20)
        params = GenerationParams(temperature=0, max_tokens=50)
        window = backend.loaded.context_window
        assert backend.count_tokens(messages) + 50 > window
        fitted, dropped = backend.fit_messages(messages, params)
        assert fitted[0] == messages[0]
        assert fitted[-1] == messages[-1]
        assert fitted[1]["role"] == "user"
        assert fitted[1:] == messages[1 + dropped :]
        assert dropped > 0
        assert dropped % 2 == 0  # whole exchanges
        assert backend.count_tokens(fitted) + 50 <= window
        one_more = [messages[0], *messages[dropped - 1 :]]
        assert backend.count_tokens(one_more) + 50 > window

    def test_fit_keeps_the_rest_of_the_request(self, backend: LocalBackend):
        """fit() trims the messages only: the parameters, model and credentials of the request stay."""
        params = GenerationParams(temperature=0.3, max_tokens=50)
        request = ChatRequest(self.long_conversation(20), params, model="picked", api_key="visitor-token")
        fitted, dropped = backend.fit(request)
        messages, expected_dropped = backend.fit_messages(request.messages, params)
        assert dropped == expected_dropped > 0
        assert fitted == dataclasses.replace(request, messages=messages)
        assert (fitted.params, fitted.model, fitted.api_key) == (params, "picked", "visitor-token")

    def test_a_leading_greeting_goes_with_the_first_exchange(self, backend: LocalBackend):
        """History may start with an assistant greeting; the kept history still starts with a user message."""
        messages = self.long_conversation(20)
        messages.insert(1, {"role": "assistant", "content": "hello"})
        fitted, dropped = backend.fit_messages(messages, GenerationParams(temperature=0, max_tokens=50))
        assert fitted[1]["role"] == "user"
        assert dropped % 2 == 1

    def test_message_too_long_for_the_window(self, backend: LocalBackend):
        """When even the newest message cannot fit, the error gives its size and the limit, in tokens."""
        with pytest.raises(ValidationError, match=r"^message: is \d+ tokens, but at most \d+ fit") as caught:
            backend.fit(chat("the " * 300))
        assert caught.value.field == "message"
        assert "context window is 256 tokens" in str(caught.value)

    def test_max_tokens_must_leave_room(self, backend: LocalBackend):
        """max_tokens as large as the whole window leaves no room for the conversation."""
        with pytest.raises(ValidationError, match="max_tokens") as caught:
            backend.fit(chat(params=GenerationParams(temperature=0, max_tokens=256)))
        assert caught.value.field == "max_tokens"

    def test_prepare_chat_reports_what_was_dropped(self, backend: LocalBackend):
        """Through the chat layer, the dropped count reaches the prepared chat so the UI can say so."""
        messages = self.long_conversation(20)
        history = [Turn(role=m["role"], text=m["content"]) for m in messages[1:-1]]
        params = GenerationParams(temperature=0, max_tokens=50)
        prepared = prepare_chat(
            backend,
            Turn("user", messages[-1]["content"]),
            history,
            system_prompt=SYSTEM,
            params=params,
            model=None,
            api_key=None,
            settings=Settings(),
        )
        fitted, dropped = backend.fit_messages(messages, params)
        assert prepared.dropped == dropped > 0
        assert list(prepared.request.messages) == fitted
        assert backend.count_tokens(prepared.request.messages) + 50 <= backend.loaded.context_window
        assert text_of(collect(backend, prepared.request)).strip()


@pytest.mark.unit
class TestDefaultModel:
    def test_a_cpu_keeps_the_small_model(self):
        """With LOCAL_MODEL unset, a machine without a GPU (this one) gets SmolLM2-360M-Instruct."""
        assert Settings().local_model is None
        assert not torch.cuda.is_available()
        assert default_model() == DEFAULT_LOCAL_MODEL == "HuggingFaceTB/SmolLM2-360M-Instruct"

    def test_a_gpu_gets_the_model_worth_the_quota(self, monkeypatch: pytest.MonkeyPatch):
        """A CUDA device, or ZeroGPU, where `import spaces` makes torch.cuda.is_available() true at start-up."""
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        assert default_model() == DEFAULT_GPU_LOCAL_MODEL == "Qwen/Qwen3-4B-Instruct-2507"

    def test_unset_loads_the_default(self, monkeypatch: pytest.MonkeyPatch, tiny_dir: Path, backend: LocalBackend):
        """LOCAL_MODEL unset loads `default_model()` (stood in for here by the tiny model)."""
        monkeypatch.setattr(local_backend, "default_model", lambda: str(tiny_dir))
        assert LocalBackend.from_settings(Settings()).loaded is backend.loaded

    def test_local_model_overrides_the_gpu_default(
        self, monkeypatch: pytest.MonkeyPatch, tiny_dir: Path, backend: LocalBackend
    ):
        """On a GPU too, LOCAL_MODEL is what loads."""
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        assert LocalBackend.from_settings(Settings(local_model=str(tiny_dir))).loaded is backend.loaded


def on_zerogpu(backend: LocalBackend) -> LocalBackend:
    """`backend` with its generator behind the step spaces.GPU(duration=backend._lease_seconds) takes on ZeroGPU
    before the worker: the lease sized from the call's arguments, asked for with the visitor's request."""
    backend._generate_on_gpu = schedule_like_spaces(backend._generate, backend._lease_seconds)
    return backend


def as_visitor(backend: LocalBackend, request: ChatRequest) -> tuple[list[Delta], BackendError | None]:
    """Stream `request` as a visitor's Gradio request would (spaces reads it from Gradio's context)."""
    from gradio.context import LocalContext

    received: list[Delta] = []

    async def run() -> None:
        LocalContext.request.set(visitor_request())  # type: ignore[arg-type]
        async for delta in backend.stream(request):
            received.append(delta)

    try:
        asyncio.run(run())
    except BackendError as error:
        return received, error
    return received, None


@pytest.fixture
def fake_zerogpu(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeZeroGPU]:
    """spaces' ZeroGPU client pointed at a fake device API on 127.0.0.1."""
    from spaces.config import Config

    api = FakeZeroGPU()
    monkeypatch.setattr(Config, "zero_device_api_url", api.url)
    yield api
    api.close()


# spaces warns, from the driver thread, that it cannot read the GPU's model here (no driver).
@pytest.mark.e2e
@pytest.mark.filterwarnings("ignore:Error while reading infos from Nvidia driver FS")
class TestZeroGPULease:
    """The backend's reply through spaces' own ZeroGPU client, asking a fake device API for each lease."""

    def test_a_short_reply_asks_for_a_short_lease(self, backend: LocalBackend, fake_zerogpu: FakeZeroGPU):
        """16 tokens ask for 10 s (the floor), 200 for 18 s (5 s to start, 200 tokens at the prior 20 tokens/s,
        25 % margin); the reply is the same as off ZeroGPU."""
        short = on_zerogpu(LocalBackend(backend.loaded))
        deltas, error = as_visitor(short, chat(params=GenerationParams(temperature=0, max_tokens=16)))
        assert error is None
        assert text_of(deltas) == direct_greedy(backend, conversation(), 16)
        longer = on_zerogpu(LocalBackend(backend.loaded))
        deltas, error = as_visitor(longer, chat(params=GenerationParams(temperature=0, max_tokens=200)))
        assert error is None
        assert fake_zerogpu.asked == [10, 18]
        prompt = backend.count_tokens(conversation())
        assert LeasePlanner(ceiling=60).plan(prompt_tokens=prompt, new_tokens=200).seconds == 18

    def test_the_lease_learns_the_speed_of_this_process(self, backend: LocalBackend, fake_zerogpu: FakeZeroGPU):
        """After one reply the tiny model's real speed (hundreds of tokens a second here) sizes the next lease."""
        learning = on_zerogpu(LocalBackend(backend.loaded))
        request = chat(params=GenerationParams(temperature=0, max_tokens=200))
        for _ in range(2):
            assert as_visitor(learning, request)[1] is None
        assert fake_zerogpu.asked == [18, 10]
        assert learning._lease.tokens_per_second > 50

    def test_the_lease_stays_within_local_gpu_duration(self, backend: LocalBackend, fake_zerogpu: FakeZeroGPU):
        """LOCAL_GPU_DURATION is the ceiling, even for the longest reply the window holds."""
        capped = on_zerogpu(LocalBackend(backend.loaded, gpu_duration=12))
        assert as_visitor(capped, chat(params=GenerationParams(temperature=0, max_tokens=200)))[1] is None
        assert fake_zerogpu.asked == [12]

    def test_a_quota_refusal_reaches_the_chat_as_one_sentence(self, backend: LocalBackend, fake_zerogpu: FakeZeroGPU):
        """ZeroGPU refuses before anything is written: no text, the sentence, the threads gone, the slot free."""
        refusing = on_zerogpu(LocalBackend(backend.loaded))
        fake_zerogpu.quota(left=8, wait=3600)
        deltas, error = as_visitor(refusing, chat())
        assert deltas == []
        assert isinstance(error, ZeroGPUError)
        assert (error.reason, error.retry_after) == ("quota", 3600.0)
        assert str(error) == (
            "This reply asks for 10 s of GPU time and 8 s of your ZeroGPU quota are left: a lower max tokens asks "
            "for less, the quota comes back in 1 h, and signing in to Hugging Face gives more (5 minutes a day "
            "instead of 2, 40 with PRO)."
        )
        assert live_threads() == []
        fake_zerogpu.grant()
        assert as_visitor(refusing, chat())[0][-1].finish_reason == "length"


def failing_on_gpu(backend: LocalBackend, error: Exception, *, pieces: int, pause: float = 0.0) -> LocalBackend:
    """`backend` whose GPU task, after `pieces` text pieces (and `pause` seconds), fails with spaces' `error`, as
    a ZeroGPU worker that dies midway (or outruns its lease) does."""

    def task(messages: list[Message], params: GenerationParams) -> Iterator[object]:
        backend._lease_seconds(messages, params)  # spaces sizes the lease first, on this thread
        generator = backend._generate(messages, params)
        try:
            for _ in range(pieces):
                yield next(generator)
        finally:
            generator.close()
        time.sleep(pause)
        raise error

    backend._generate_on_gpu = task  # type: ignore[assignment]
    return backend


@pytest.mark.unit
class TestZeroGPUFailures:
    """spaces' own gradio.Error objects (zero/gradio.py `error`, as zero/wrappers.py raises them) through the
    backend's path, off ZeroGPU."""

    def test_a_task_aborted_midway_keeps_its_text(self, backend: LocalBackend):
        """The pieces written before the abort arrive; then the sentence."""
        from spaces.zero.gradio import error as spaces_error

        aborted = spaces_error("ZeroGPU worker error", "GPU task aborted")
        deltas, error = collect_failing(
            failing_on_gpu(LocalBackend(backend.loaded, piece_interval=0), aborted, pieces=3), chat()
        )
        assert len(deltas) == 3
        assert text_of(deltas) == direct_greedy(backend, conversation(), 3)
        assert isinstance(error, ZeroGPUError)
        assert error.reason == "aborted"
        assert str(error).startswith("ZeroGPU stopped the reply before it was finished")
        assert live_threads() == []

    def test_a_task_that_ran_its_whole_capped_lease_is_told_to_be_shorter(self, backend: LocalBackend):
        """Aborted after its whole lease, capped by LOCAL_GPU_DURATION: the reply needs less max tokens; the
        speed estimate is left alone (the lease was short by choice, not by a wrong speed)."""
        from spaces.zero.gradio import error as spaces_error

        capped = LocalBackend(backend.loaded, gpu_duration=1)
        aborted = spaces_error("ZeroGPU worker error", "GPU task aborted")
        deltas, error = collect_failing(failing_on_gpu(capped, aborted, pieces=1, pause=1.0), chat())
        assert len(deltas) == 1
        assert str(error) == (
            "The reply needed more than the 1 s of GPU time one reply may ask for here (LOCAL_GPU_DURATION), so "
            "ZeroGPU stopped it: ask for a shorter reply (a lower max tokens)."
        )
        assert capped._lease.tokens_per_second == 20.0

    def test_an_estimate_that_proved_short_asks_for_more_next_time(
        self, backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
    ):
        """Aborted after a whole lease the speed had promised was enough: the speed is halved for the next ones."""
        from spaces.zero.gradio import error as spaces_error

        # A 1 s lease that is not capped: no start-up allowance, no floor, a fast speed learned.
        monkeypatch.setattr(zerogpu, "START_SECONDS", 0.0)
        short = LocalBackend(backend.loaded)
        short._lease = LeasePlanner(ceiling=60, floor=1)
        short._lease.learn(Timing(12, 0.01, 1001, 2.0))
        assert short._lease_seconds(conversation(), GREEDY) == 1
        aborted = spaces_error("ZeroGPU worker error", "GPU task aborted")
        _, error = collect_failing(failing_on_gpu(short, aborted, pieces=1, pause=1.0), chat())
        assert str(error) == (
            "The reply took longer than the 1 s of GPU time it asked for, so ZeroGPU stopped it: try again, and the "
            "next reply asks for more."
        )
        assert short._lease.tokens_per_second == 250.0

    def test_a_worker_exception_names_its_class(self, backend: LocalBackend):
        """An exception in the worker reaches the main process as its class name; so it reaches the visitor."""
        from spaces.zero.gradio import error as spaces_error

        failed = spaces_error("ZeroGPU worker error", "RuntimeError")
        deltas, error = collect_failing(failing_on_gpu(LocalBackend(backend.loaded), failed, pieces=0), chat())
        assert deltas == []
        assert str(error) == "The GPU worker failed (RuntimeError) before the reply was finished: try again."
        assert live_threads() == []
