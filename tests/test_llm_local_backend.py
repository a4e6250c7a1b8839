"""The local transformers backend, on tiny random-weight models built on disk (no download, no mocks)."""

from __future__ import annotations

import asyncio
import inspect
import pickle
import threading
import time
from contextlib import aclosing
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from transformers import BertConfig, BertModel

from services.chat import prepare_chat, stream_reply
from services.config import Settings
from services.errors import (
    BackendError,
    BackendRequestError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigError,
    ValidationError,
)
from services.llm import create_backend
from services.llm.base import GenerationParams, Message
from services.llm.local_backend import LocalBackend, _as_backend_error, load_model
from tests.tiny_model import build_tiny_model

GREEDY = GenerationParams(temperature=0, max_tokens=20)
THREAD_NAMES = {"local-generate", "local-stream"}


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


def conversation(text: str = "tell me a story") -> list[Message]:
    return [
        {"role": "system", "content": "you are a helpful assistant"},
        {"role": "user", "content": text},
    ]


def collect(backend: LocalBackend, messages: list[Message], params: GenerationParams) -> list[str]:
    async def run() -> list[str]:
        return [piece async for piece in backend.stream(messages, params)]

    return asyncio.run(run())


def direct_greedy(backend: LocalBackend, messages: list[Message], max_new_tokens: int) -> str:
    tokenizer, model = backend.loaded.tokenizer, backend.loaded.model
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    output = model.generate(
        **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def live_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name in THREAD_NAMES and t.is_alive()]


class TestLoad:
    def test_loads_once_per_model(self, tiny_dir: Path, backend: LocalBackend):
        """A second backend on the same LOCAL_MODEL reuses the loaded model instead of loading it again."""
        again = LocalBackend.from_settings(Settings(local_model=str(tiny_dir)))
        assert again.loaded is backend.loaded
        assert load_model(str(tiny_dir)) is backend.loaded

    def test_create_backend_selects_local(self, tiny_dir: Path):
        """LLM_BACKEND=local with LOCAL_MODEL=<dir> gives the local backend, named by its path."""
        chosen = create_backend(Settings(llm_backend="local", local_model=str(tiny_dir)))
        assert isinstance(chosen, LocalBackend)
        assert (chosen.name, chosen.model) == ("local", str(tiny_dir))

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
        """A Hub id that is not in the cache, offline, names LOCAL_MODEL too."""
        # huggingface_hub reads HF_HUB_OFFLINE once, at import; the e2e tests set the variable itself.
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        with pytest.raises(ConfigError, match="LOCAL_MODEL: could not load") as caught:
            load_model("nobody-at-all/no-such-model")
        assert caught.value.variable == "LOCAL_MODEL"


class TestStream:
    def test_streams_token_by_token(self, backend: LocalBackend):
        """With no batching interval, every token is its own piece (one word per token here)."""
        unbatched = LocalBackend(backend.loaded, piece_interval=0)
        pieces = collect(unbatched, conversation(), GREEDY)
        assert len(pieces) == GREEDY.max_tokens
        assert all(len(piece.split()) == 1 for piece in pieces)

    def test_batches_fast_tokens_but_sends_the_first_at_once(self, backend: LocalBackend):
        """By default tokens faster than 20 ms are joined, except the first, which is not kept waiting."""
        params = GenerationParams(temperature=0, max_tokens=100)
        pieces = collect(backend, conversation(), params)
        assert 1 < len(pieces) < params.max_tokens
        assert len(pieces[0].split()) == 1
        assert "".join(pieces) == "".join(
            collect(LocalBackend(backend.loaded, piece_interval=0), conversation(), params)
        )

    def test_greedy_equals_generate(self, backend: LocalBackend):
        """At temperature 0 the streamed text is exactly what greedy `model.generate` decodes to."""
        pieces = collect(backend, conversation(), GREEDY)
        expected = direct_greedy(backend, conversation(), GREEDY.max_tokens)
        assert expected.strip()
        assert "".join(pieces) == expected

    def test_max_tokens_is_max_new_tokens(self, backend: LocalBackend):
        """max_tokens counts new tokens only (one word per token with this tokenizer)."""
        text = "".join(collect(backend, conversation(), GenerationParams(temperature=0, max_tokens=7)))
        assert len(text.split()) == 7

    def test_sampling_streams_text(self, backend: LocalBackend):
        """A temperature above 0 samples, and still streams words of the vocabulary."""
        text = "".join(collect(backend, conversation(), GenerationParams(temperature=1.5, max_tokens=20)))
        vocabulary = backend.loaded.tokenizer.get_vocab()
        assert text.split()
        assert all(word in vocabulary for word in text.split())

    def test_over_the_context_without_fit_is_a_backend_error(self, backend: LocalBackend):
        """A caller that skips fit() and overflows the context gets a BackendRequestError, not a crash."""
        with pytest.raises(BackendRequestError, match="context window"):
            collect(backend, conversation("the " * 400), GREEDY)
        assert live_threads() == []

    def test_generating_function_is_a_sync_generator(self, backend: LocalBackend):
        """spaces.GPU accepts sync generators only; off ZeroGPU it returns the function unchanged."""
        assert inspect.isgeneratorfunction(LocalBackend._generate)
        assert backend._generate_on_gpu == backend._generate

    def test_what_crosses_the_zerogpu_process_boundary_pickles(self):
        """On ZeroGPU the arguments and every yielded value (errors included) are pickled between processes."""
        for value in (
            conversation(),
            GREEDY,
            "a piece",
            BackendRequestError("too long"),
            BackendTimeoutError("silent for 60 s"),
        ):
            copy = pickle.loads(pickle.dumps(value))
            assert type(copy) is type(value)
            assert str(copy) == str(value)


class TestErrors:
    def test_zerogpu_refusal_keeps_its_text(self):
        """spaces.GPU raises gradio.Error (quota, no GPU); the user sees its title and message."""
        import gradio as gr

        error = _as_backend_error(gr.Error("You have exceeded your GPU quota.", title="ZeroGPU quota exceeded"))
        assert isinstance(error, BackendUnavailableError)
        assert str(error) == "ZeroGPU quota exceeded: You have exceeded your GPU quota."

    def test_out_of_memory_says_what_to_change(self):
        """CUDA out of memory becomes advice, not a traceback."""
        error = _as_backend_error(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
        assert isinstance(error, BackendUnavailableError)
        assert "max_tokens" in str(error)

    def test_anything_else_is_a_backend_error_without_internals(self):
        """An unexpected failure names its type only: its text may hold paths or tensor dumps."""
        error = _as_backend_error(RuntimeError("shape mismatch at /opt/venv/lib/python3.11/torch"))
        assert type(error) is BackendError
        assert "RuntimeError" in str(error)
        assert "/opt" not in str(error)


class TestStop:
    def test_closing_mid_stream_ends_generation_within_a_second(self, slow_dir: Path):
        """aclose() (Stop pressed, tab closed, job cancelled) ends both threads within a second."""
        backend = LocalBackend.from_settings(Settings(local_model=str(slow_dir)))
        params = GenerationParams(temperature=0, max_tokens=4000)  # many seconds of work if not stopped

        async def run() -> float:
            stream = backend.stream(conversation(), params)
            for _ in range(3):
                assert await stream.__anext__()
            assert set(live_threads()) == THREAD_NAMES
            started = time.monotonic()
            await stream.aclose()
            return time.monotonic() - started

        assert asyncio.run(run()) < 1.0
        assert live_threads() == []

    def test_cancelled_chat_task_ends_generation(self, slow_dir: Path):
        """Cancelling the task that reads the chat's stream (as Gradio does) stops the generation too."""
        backend = LocalBackend.from_settings(Settings(local_model=str(slow_dir)))
        settings = Settings(max_tokens_cap=4000)
        request = prepare_chat(backend, "tell me a story", [], temperature=0, max_tokens=4000, settings=settings)
        seen: list[str] = []

        async def read() -> None:
            async with aclosing(stream_reply(backend, request)) as replies:
                async for text in replies:
                    seen.append(text)

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
        assert seen[-1].startswith(seen[0])

    def test_concurrency_limit_queues_the_second_reply(self, slow_dir: Path):
        """With LOCAL_CONCURRENCY=1 a second reply waits for the first, and leaving while waiting is clean."""
        backend = LocalBackend.from_settings(Settings(local_model=str(slow_dir), local_concurrency=1))
        params = GenerationParams(temperature=0, max_tokens=4000)

        async def run() -> None:
            first = backend.stream(conversation(), params)
            assert await first.__anext__()
            second = backend.stream(conversation(), params)
            waiting = asyncio.create_task(second.__anext__())
            done, _ = await asyncio.wait({waiting}, timeout=0.5)
            assert not done  # still waiting for the slot
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            await second.aclose()
            await first.aclose()

        asyncio.run(run())
        assert live_threads() == []


class TestFit:
    @staticmethod
    def long_conversation(pairs: int) -> list[Message]:
        messages: list[Message] = [{"role": "system", "content": "you are a helpful assistant"}]
        for i in range(pairs):
            messages.append({"role": "user", "content": f"tell me a story about {'the sea ' * (i % 3 + 1)}"})
            messages.append({"role": "assistant", "content": "the quick brown fox jumps over the lazy dog"})
        messages.append({"role": "user", "content": "why is the sky blue"})
        return messages

    def test_short_conversation_is_untouched(self, backend: LocalBackend):
        """A conversation that fits comes back as it was, with nothing dropped."""
        assert backend.fit(conversation(), GREEDY) == (conversation(), 0)

    def test_drops_the_oldest_pairs_to_fit(self, backend: LocalBackend):
        """The system message and the newest message stay; the oldest exchanges go, and no more than needed."""
        messages = self.long_conversation(20)
        params = GenerationParams(temperature=0, max_tokens=50)
        window = backend.loaded.context_window
        assert backend.count_tokens(messages) + 50 > window
        fitted, dropped = backend.fit(messages, params)
        assert fitted[0] == messages[0]
        assert fitted[-1] == messages[-1]
        assert fitted[1]["role"] == "user"
        assert fitted[1:] == messages[1 + dropped :]
        assert dropped > 0
        assert dropped % 2 == 0  # whole exchanges
        assert backend.count_tokens(fitted) + 50 <= window
        one_more = [messages[0], *messages[dropped - 1 :]]
        assert backend.count_tokens(one_more) + 50 > window

    def test_a_leading_greeting_goes_with_the_first_exchange(self, backend: LocalBackend):
        """History may start with an assistant greeting; the kept history still starts with a user message."""
        messages = self.long_conversation(20)
        messages.insert(1, {"role": "assistant", "content": "hello"})
        fitted, dropped = backend.fit(messages, GenerationParams(temperature=0, max_tokens=50))
        assert fitted[1]["role"] == "user"
        assert dropped % 2 == 1

    def test_message_too_long_for_the_window(self, backend: LocalBackend):
        """When even the newest message cannot fit, the error gives its size and the limit, in tokens."""
        messages = conversation("the " * 300)
        with pytest.raises(ValidationError, match=r"^message: is \d+ tokens, but at most \d+ fit") as caught:
            backend.fit(messages, GREEDY)
        assert caught.value.field == "message"
        assert "context window is 256 tokens" in str(caught.value)

    def test_max_tokens_must_leave_room(self, backend: LocalBackend):
        """max_tokens as large as the whole window leaves no room for the conversation."""
        with pytest.raises(ValidationError, match="max_tokens") as caught:
            backend.fit(conversation(), GenerationParams(temperature=0, max_tokens=256))
        assert caught.value.field == "max_tokens"

    def test_prepare_chat_reports_what_was_dropped(self, backend: LocalBackend):
        """Through the chat layer, the dropped count reaches the request so the UI can say so."""
        history = [{"role": m["role"], "content": m["content"]} for m in self.long_conversation(20)[1:-1]]
        request = prepare_chat(backend, "why is the sky blue", history, max_tokens=50, settings=Settings())
        assert request.dropped > 0
        assert backend.count_tokens(request.messages) + 50 <= backend.loaded.context_window
        assert "".join(collect(backend, request.messages, request.params)).strip()
