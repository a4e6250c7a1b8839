"""A transformers causal LM as a backend: loaded once per process, streamed as it writes, stopped on demand.

How a reply travels, and why each hop is there:

    model.generate (thread "local-generate") -> TextIteratorStreamer -> `_generate` (a sync generator, under
    `spaces.GPU`) -> thread "local-stream" -> asyncio.Queue -> `stream` (the async generator the chat awaits)

- `generate` blocks until the whole reply is done, so it runs on its own thread and hands text to a
  `TextIteratorStreamer`, the way transformers documents streaming (ours batches it: `_BatchingStreamer`).
- `spaces.GPU` takes plain functions and sync generators only (spaces/zero/decorator.py: a coroutine
  function raises NotImplementedError, and an async generator would be treated as a regular function).
  On ZeroGPU it runs the generator in a forked worker process that holds the GPU lease, and sends each yielded
  piece back by pickling it (spaces/zero/wrappers.py, `generator_function_wrapper`). So `_generate` takes and
  yields only picklable values, and builds its tensors, thread and stop event inside, inside the lease.
- One "local-stream" thread per reply drives that generator and posts each piece to the event loop with
  `call_soon_threadsafe`: one cheap callback per piece. Awaiting `asyncio.to_thread(next, ...)` per piece
  would cost an executor round trip per token, and its cancellation cannot interrupt a `next()` in flight.
- On ZeroGPU each reply asks for the lease it needs, not a fixed one: `spaces.GPU(duration=_lease_seconds)` sizes
  it from the prompt, max_tokens and the speed of earlier replies (services/llm/zerogpu.py). `_generate` measures
  that speed where it runs and yields it as a `Timing` before the finish; the driver learns from it. ZeroGPU's
  refusals (quota, no GPU free, a task aborted) reach the driver as gradio.Error and become one sentence each.

Stopping (the user pressed Stop, closed the tab, or a gradio_client job was cancelled): Gradio closes the
chat's async generator, `services.chat` closes ours (`aclosing`), and our `finally` sets a stop flag and waits
for the driver thread. The driver closes `_generate`, whose `finally` sets the `threading.Event` that the
`StoppingCriteria` checks after every token, then joins the generation thread. On ZeroGPU, closing the
wrapper in the main process sets the worker's stop event (wrappers.py: `except GeneratorExit:
worker.stop_event.set()`), and the worker closes our generator the next time it yields. `_generate` yields
the text as it is handed over (every token, or every 20 ms when tokens come faster), and "" every
`_POLL_SECONDS` while the model is silent (reading a long prompt): on both paths a stop is seen within
`_POLL_SECONDS`, and the model stops after the token in progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
import math
import queue
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import huggingface_hub
import spaces  # before torch: on ZeroGPU `spaces` must patch torch before anything can initialise CUDA
import torch
from jinja2 import TemplateError
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)

from services.config import DEFAULT_GPU_LOCAL_MODEL, DEFAULT_LOCAL_MODEL, Settings
from services.errors import (
    BackendError,
    BackendRequestError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigError,
    ServiceError,
    ValidationError,
    ZeroGPUError,
)
from services.llm import zerogpu
from services.llm.base import (
    BackendName,
    BackendStatus,
    ChatRequest,
    Delta,
    GenerationParams,
    Message,
    Usage,
    content_text,
)
from services.llm.zerogpu import Lease, LeasePlanner, Timing
from services.trimming import drop_oldest

__all__ = ["LoadedModel", "LocalBackend", "default_model", "load_model"]

logger = logging.getLogger(__name__)

# How often the streamer is polled while the model is silent, so a stop request is noticed within this long.
_POLL_SECONDS = 0.1
# Streamed text is handed over at most this often (see `_BatchingStreamer`).
_PIECE_INTERVAL_SECONDS = 0.02
# How long closing a stream waits for the generation thread to finish its current step; past it the thread
# is left to stop by itself (the stop flag is set, so it ends after that step) and a warning is logged.
_STOP_GRACE_SECONDS = 5.0
# Context window to assume when neither the model config nor the tokenizer states one.
_FALLBACK_CONTEXT = 2048
# transformers' `model_max_length` when the tokenizer does not know it (VERY_LARGE_INTEGER).
_UNKNOWN_LENGTH = int(1e29)
# A GPU task ZeroGPU aborts after its reply has run for this share of the lease outran the lease.
_OVERRUN_SHARE = 0.9


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model and its tokenizer on their device, with what `fit` and `stream` need to know about them."""

    name: str  # the LOCAL_MODEL value: a Hub id or a path
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    device: str  # "cuda" or "cpu"
    dtype: torch.dtype
    context_window: int  # prompt tokens + new tokens must fit in this many
    pad_token_id: int | None


# One model per LOCAL_MODEL value per process: loading takes seconds and a copy of the weights each time.
_LOADED: dict[str, LoadedModel] = {}
_LOAD_LOCK = threading.Lock()


def default_model() -> str:
    """LOCAL_MODEL's default here: a model worth the GPU where replies run on one, the small one on a CPU.

    On ZeroGPU (SPACES_ZERO_GPU) this is the GPU model at start-up already, before any GPU is leased: `import
    spaces` has replaced `torch.cuda.is_available` with `lambda: True` (spaces 0.51.3, zero/torch/patching.py
    `patch`), and the model is loaded on "cuda" and moved onto the leased GPU in the worker.
    """
    return DEFAULT_GPU_LOCAL_MODEL if torch.cuda.is_available() else DEFAULT_LOCAL_MODEL


def load_model(name: str) -> LoadedModel:
    """Load `name` (a Hub id or a local directory) once per process; later calls return the same object.

    Raises:
        ConfigError: naming LOCAL_MODEL, when the model cannot be loaded or cannot chat.
    """
    with _LOAD_LOCK:
        if name not in _LOADED:
            _LOADED[name] = _load_on_cpu_thread(name) if not torch.cuda.is_available() else _load(name)
        return _LOADED[name]


def _load_on_cpu_thread(name: str) -> LoadedModel:
    """Load on a short-lived thread, so that the main thread never starts an OpenMP thread team.

    torch's CPU kernels run on an OpenMP team per calling thread, and a team outlives its parallel region.
    With a team left on the main thread (loading copies big tensors in parallel) and another on each
    generation thread, there are more OpenMP threads than cores on a 2-vCPU Space; libgomp then stops
    spinning between parallel regions, and every token pays for futex wake-ups (README, "Local model", has the
    figures). A team dies with its thread. On a GPU, loading stays on the calling thread:
    ZeroGPU's CUDA emulation is a thread-local torch mode, entered by `import spaces` on the main thread.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-load") as pool:
        return pool.submit(_load, name).result()


def _load(name: str) -> LoadedModel:
    # ZeroGPU wants the model on `cuda` at start-up (spaces patches torch so that this works without a GPU,
    # and moves the weights onto the leased GPU in the worker). bf16 halves GPU memory; CPUs are fastest and
    # exact in float32.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    dtype_name = str(dtype).removeprefix("torch.")
    logger.info("Loading local model %s on %s (%s)…", name, device, dtype_name)
    started = time.perf_counter()
    _check_path(name)
    _check_reachable(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError("LOCAL_MODEL", f"could not load the tokenizer of {name!r}: {_summary(e)}") from e
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            "LOCAL_MODEL",
            f"{name!r} has no chat template, so it cannot hold a conversation. Use an instruct (chat) model, "
            f"such as {DEFAULT_LOCAL_MODEL}.",
        )
    try:
        loaded: Any = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, output_loading_info=True)
        model: PreTrainedModel = loaded[0]
        info: dict[str, list[str]] = loaded[1]
    except (OSError, ValueError, KeyError) as e:
        # ValueError: the config is not a causal LM (a seq2seq or vision model), or needs trust_remote_code,
        # which this Space never enables: it would run code from the model repository.
        raise ConfigError("LOCAL_MODEL", f"could not load {name!r} as a causal language model: {_summary(e)}") from e
    if info["missing_keys"]:
        # An encoder checkpoint (BERT) loads as a "causal LM" whose output layer is random: it would babble.
        missing = sorted(info["missing_keys"])
        raise ConfigError(
            "LOCAL_MODEL",
            f"{name!r} is not a causal language model checkpoint: {len(missing)} weights are missing "
            f"(such as {missing[0]!r}).",
        )
    model.to(device).eval()
    context = _context_window(model, tokenizer)
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    logger.info(
        "Loaded local model %s in %.1f s: %.1fM parameters, context window %d tokens",
        name,
        time.perf_counter() - started,
        model.num_parameters() / 1e6,
        context,
    )
    return LoadedModel(name, model, tokenizer, device, dtype, context, pad_token_id)


def _check_path(name: str) -> None:
    """A value written as a path must name a model directory; anything else is taken for a Hub id."""
    path = Path(name)
    if not name.startswith(("/", "./", "../")) and not path.exists():
        return
    if not path.exists():
        raise ConfigError("LOCAL_MODEL", f"{name!r} does not exist: give a model directory or a Hub model id.")
    if not path.is_dir():
        raise ConfigError("LOCAL_MODEL", f"{name!r} is a file: give the directory that holds the model's files.")


def _check_reachable(name: str, *, timeout: float = 3.0) -> None:
    """A Hub id that is not in this machine's cache needs the Hub: say so at once when it cannot be reached.

    Without this, huggingface_hub retries each file with backoff (most of a minute) before transformers gives up
    with a message about cached files.
    """
    if Path(name).exists():
        return
    try:
        cached = huggingface_hub.try_to_load_from_cache(name, "config.json")
    except ValueError:  # not a valid repo id: transformers' own message says what is wrong with it
        return
    if isinstance(cached, str):
        return
    where = "download it once (`hf download " + name + "`), or set LOCAL_MODEL to a folder that holds a model"
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        raise ConfigError(
            "LOCAL_MODEL", f"{name!r} is not in this machine's Hugging Face cache, and HF_HUB_OFFLINE is set: {where}."
        )
    endpoint = urlsplit(huggingface_hub.constants.ENDPOINT)
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        reason = type(error).__name__ if not error.strerror else error.strerror
        raise ConfigError(
            "LOCAL_MODEL",
            f"{name!r} is not in this machine's Hugging Face cache, and the Hub ({host}) cannot be reached from "
            f"here ({reason}): connect to the internet, {where}. On a Space, README's preload_from_hub puts it in "
            "the image.",
        ) from None


def _summary(error: Exception) -> str:
    """The first line of a transformers/huggingface_hub error: the rest is advice meant for code, not a Space."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _context_window(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> int:
    config = model.config.get_text_config()
    for attribute in ("max_position_embeddings", "n_positions"):
        value = getattr(config, attribute, None)
        if isinstance(value, int) and value > 0:
            return value
    if 0 < tokenizer.model_max_length < _UNKNOWN_LENGTH:
        return int(tokenizer.model_max_length)
    logger.warning("The model states no context window; assuming %d tokens", _FALLBACK_CONTEXT)
    return _FALLBACK_CONTEXT


class _StopOnEvent(StoppingCriteria):
    """Ends generation after the current token once `event` is set; `generate` asks after every token."""

    def __init__(self, event: threading.Event, *, device: torch.device) -> None:
        self.event = event
        # Made once: a new tensor per token would be a host-to-device copy per token on a GPU.
        self._yes = torch.ones(1, dtype=torch.bool, device=device)
        self._no = torch.zeros(1, dtype=torch.bool, device=device)

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor | None, **kwargs: Any
    ) -> torch.BoolTensor:
        return (self._yes if self.event.is_set() else self._no).expand(input_ids.shape[0])  # type: ignore[return-value]


class _BatchingStreamer(TextIteratorStreamer):
    """A `TextIteratorStreamer` that decodes and hands text over at most once per `interval` seconds.

    `TextStreamer.put` decodes the whole line so far at every token, and each hand-over wakes the reading
    thread (a GIL switch); at hundreds of tokens a second that was most of the streaming overhead
    (README, "Local model"), and on ZeroGPU each hand-over is also a pickle through a pipe between processes.
    Here tokens that arrive within `interval` of the last hand-over wait, and go through the parent's own
    decoding in one batch: the text is the same, in fewer pieces. The first visible text goes at once, so time
    to first token is untouched, and `end` flushes the rest. The chat coalesces its updates to 40 ms anyway
    (STREAM_INTERVAL_MS), so nobody sees the difference.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, *, interval: float, **kwargs: Any) -> None:
        super().__init__(tokenizer, **kwargs)
        self._interval = interval
        self._waiting: list[int] = []
        self._handed_at = -math.inf
        self._shown = False
        self.generated = 0  # tokens written after the prompt, to tell a reply cut at max_new_tokens
        # When the first and the last new token arrived (time.monotonic), for the speed the next leases follow.
        self.first_at: float | None = None
        self.last_at = 0.0

    def put(self, value: torch.Tensor) -> None:
        if self.skip_prompt and self.next_tokens_are_prompt:
            super().put(value)  # the prompt: the parent notes it has gone by
            return
        if value.dim() > 1:
            if value.shape[0] > 1:
                raise ValueError("_BatchingStreamer only supports batch size 1")
            value = value[0]
        tokens = value.tolist()
        self.generated += len(tokens)
        self._waiting.extend(tokens)
        now = time.monotonic()
        self.first_at = now if self.first_at is None else self.first_at
        self.last_at = now
        if not self._shown or now - self._handed_at >= self._interval:
            self._hand_over()
            self._handed_at = now

    def end(self) -> None:
        self._hand_over()
        super().end()

    def _hand_over(self) -> None:
        if self._waiting:
            super().put(torch.tensor(self._waiting))
            self._waiting.clear()

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        self._shown = self._shown or bool(text)
        super().on_finalized_text(text, stream_end=stream_end)

    def timing(self, *, started: float, prompt_tokens: int) -> Timing | None:
        """How fast this reply went, `generate` having started at `started`; None when it wrote nothing."""
        if self.first_at is None:
            return None
        return Timing(prompt_tokens, self.first_at - started, self.generated, self.last_at - self.first_at)


def _sampling_arguments(params: GenerationParams) -> dict[str, Any]:
    """`generate` arguments for the exposed sampling settings, with the meaning the OpenAI API gives them.

    Temperature 0 is greedy decoding (sampling at temperature 0 would divide by zero). Any other temperature
    samples from the whole distribution: top-p 1 and no top-k, since the UI exposes neither; otherwise
    transformers would silently apply its own default top-k of 50. The sampling values are None when greedy,
    so transformers does not warn that they are unused.
    """
    if params.temperature == 0:
        return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    return {"do_sample": True, "temperature": params.temperature, "top_p": 1.0, "top_k": 0}


def _is_gradio_error(error: BaseException) -> bool:
    # spaces.GPU reports ZeroGPU's own failures (quota exceeded, no GPU free, worker aborted) as gradio.Error,
    # whose text is written for users. services/ never imports gradio, so the class is recognised by module.
    return any(cls.__module__ == "gradio.exceptions" for cls in type(error).__mro__)


def _as_backend_error(error: Exception) -> BackendError:
    """The one place where a failure while generating becomes a `BackendError` a person can act on."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return BackendUnavailableError(
            "The local model ran out of GPU memory. Try a shorter conversation or a lower max_tokens."
        )
    if _is_gradio_error(error):
        title = getattr(error, "title", None)
        message = str(getattr(error, "message", error))
        # ZeroGPU's own refusals become one sentence each; any other gradio.Error keeps its text.
        return zerogpu.refusal(title, message) or BackendUnavailableError(f"{title}: {message}" if title else message)
    return BackendError(f"The local model failed while writing the reply ({type(error).__name__}). Try again.")


class LocalBackend:
    """Streams replies from a transformers model loaded in this process (on ZeroGPU, on a leased GPU)."""

    name: BackendName = "local"

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        concurrency: int = 1,
        gpu_duration: int = 60,
        timeout: float = 60.0,
        piece_interval: float = _PIECE_INTERVAL_SECONDS,
        stream_interval: float = 0.1,
    ) -> None:
        """
        Args:
            loaded: the model, from `load_model`.
            concurrency: replies generated at once (LOCAL_CONCURRENCY); more wait their turn.
            gpu_duration: the longest ZeroGPU lease one reply may ask for, in seconds (LOCAL_GPU_DURATION).
            timeout: seconds without a new token before a reply fails (LLM_TIMEOUT).
            piece_interval: text is handed over at most once per this many seconds; 0 gives every token.
            stream_interval: seconds between two updates sent to a client (STREAM_INTERVAL_MS).
        """
        self.loaded = loaded
        self.stream_interval = stream_interval
        # The page's replies, /chat and the MCP tool share this limit (one concurrency group in the queue).
        self.concurrency_limit: int | None = concurrency
        self._timeout = timeout
        self._piece_interval = piece_interval
        # Generations running at once (LOCAL_CONCURRENCY). Each one already uses every CPU core, or the GPU;
        # more at once only makes each slower. A threading semaphore, because it is taken on the driver thread.
        self._slots = threading.BoundedSemaphore(concurrency)
        # Off ZeroGPU, spaces.GPU returns the function itself; on ZeroGPU, each call asks for the lease
        # `_lease_seconds` sizes (at most `gpu_duration`) and runs the generator in the leased worker.
        self._lease = LeasePlanner(ceiling=gpu_duration)
        self._asked = threading.local()  # the lease the reply of the driver thread asked for
        self._generate_on_gpu = spaces.GPU(duration=self._lease_seconds)(self._generate)

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalBackend:
        """Load LOCAL_MODEL now (start-up), once per process; raises `ConfigError` when it cannot be used."""
        return cls(
            load_model(settings.local_model or default_model()),
            concurrency=settings.local_concurrency,
            gpu_duration=settings.local_gpu_duration,
            timeout=settings.llm_timeout,
            stream_interval=settings.stream_interval_for("local"),
        )

    @property
    def models(self) -> tuple[str, ...]:
        """The one loaded model, which no caller picks."""
        return ()

    def status(self) -> BackendStatus:
        return BackendStatus("local", self.loaded.name, self.loaded.device)

    def calls_tools(self, model: str | None) -> bool:
        """Offered no tools: the small in-process model calls none reliably."""
        return False

    def sees_images(self, model: str | None) -> bool:
        """The in-process model reads text only."""
        return False

    async def start(self) -> None:
        """Loaded already (`load_model`, at start-up)."""

    async def aclose(self) -> None:
        """Nothing to close: the model stays loaded for the life of the process."""

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Tokens of the prompt the model would read: the chat template applied, with the assistant's cue."""
        return len(self._prompt_ids(messages))

    def estimate_prompt_tokens(self, request: ChatRequest) -> int:
        """Exact here: the model's tokenizer counts the prompt as the chat template writes it."""
        return self.count_tokens(request.messages)

    def _prompt_ids(self, messages: Sequence[Message]) -> list[int]:
        tokenizer = self.loaded.tokenizer
        try:
            # Text only: `Assistant.plan` sends no image to a model that cannot see.
            conversation = [
                {"role": message["role"], "content": content_text(message["content"])} for message in messages
            ]
            prompt = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        except TemplateError as e:
            # Some templates reject a conversation shape, e.g. "System role not supported".
            raise BackendRequestError(f"The local model's chat template rejected the conversation: {e}") from e
        # The template already writes the special tokens (BOS and the like): adding them again would double them.
        ids: list[int] = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return ids

    def fit(self, request: ChatRequest) -> tuple[ChatRequest, int]:
        """The request with its oldest turns dropped until prompt tokens + max_tokens fit the context window."""
        messages, dropped = self.fit_messages(request.messages, request.params)
        return (dataclasses.replace(request, messages=messages) if dropped else request), dropped

    def fit_messages(self, messages: Sequence[Message], params: GenerationParams) -> tuple[list[Message], int]:
        """Drop the oldest turns until prompt tokens + max_tokens fit the context window.

        Keeps the system message (when first) and the last message; drops whole user/assistant exchanges,
        oldest first, so the model never sees an answer without its question.

        Returns:
            The messages that fit, and how many were dropped.

        Raises:
            ValidationError: when max_tokens leaves no room, or the system prompt and the last message alone
                do not fit.
        """
        window = self.loaded.context_window
        if params.max_tokens >= window:
            raise ValidationError(
                "max_tokens",
                f"must be less than the model's context window ({window:,} tokens), which also holds the "
                f"conversation; got {params.max_tokens:,}.",
            )
        room = window - params.max_tokens
        messages = list(messages)
        if not messages:
            return messages, 0
        head = messages[:1] if messages[0]["role"] == "system" and len(messages) > 1 else []
        body, last = messages[len(head) : -1], messages[-1:]

        def fits(gone: int) -> bool:
            return self.count_tokens(head + body[gone:] + last) <= room

        cut = drop_oldest(body, fits=fits, can_start=lambda message: message["role"] == "user")
        if cut == len(body) and not fits(cut):
            raise self._too_long(head, last, room=room, params=params)
        return head + body[cut:] + last, cut

    def _too_long(
        self, head: list[Message], last: list[Message], *, room: int, params: GenerationParams
    ) -> ValidationError:
        system = self.count_tokens(head) if head else 0
        message = self.count_tokens(head + last) - system
        limit = max(room - system, 0)
        system_note = f" and the system prompt takes {system:,}" if head else ""
        return ValidationError(
            "message",
            f"is {message:,} tokens, but at most {limit:,} fit: the model's context window is "
            f"{self.loaded.context_window:,} tokens, max_tokens keeps {params.max_tokens:,} for the reply"
            f"{system_note}. Shorten the message or lower max_tokens.",
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        messages, params = list(request.messages), request.params
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()
        # The copied context carries Gradio's request to spaces.GPU, which bills the ZeroGPU lease to the
        # visitor's quota; a bare Thread would start with an empty context.
        context = contextvars.copy_context()
        driver = threading.Thread(
            target=context.run,
            args=(self._drive, messages, params, loop, pieces, stop),
            name="local-stream",
            daemon=True,
        )
        driver.start()
        try:
            while True:
                kind, value = await pieces.get()
                if kind == "piece":
                    yield Delta(text=value)
                elif kind == "error":
                    raise value
                else:
                    reason, usage = value if isinstance(value, tuple) else (value, None)
                    yield Delta(finish_reason=reason, usage=usage)
                    return
        finally:
            # Runs on normal end, on error, and when the consumer closes us early (aclose, GeneratorExit,
            # cancellation): the generation must stop with the reply, not keep a CPU or the GPU lease busy.
            stop.set()
            if driver.is_alive():
                await asyncio.to_thread(driver.join, _STOP_GRACE_SECONDS + 1)

    def _lease_seconds(self, messages: list[Message], params: GenerationParams) -> int:
        """Seconds of ZeroGPU lease for one reply: its prompt to read and max_tokens to write, at the speed seen.

        spaces calls it with exactly the arguments the wrapped function gets (spaces 0.51.3, zero/wrappers.py:
        `static_duration(duration, *args, **kwargs)` in `gradio_handler`): `(messages, params)`, `self` being bound
        on both. It runs on the driver thread, which keeps the lease in case ZeroGPU aborts the task.
        """
        try:
            prompt = self.count_tokens(messages)
        except BackendError:
            prompt = 0  # `_generate` says what is wrong with the conversation, within the shortest lease
        room = max(self.loaded.context_window - prompt, 0)
        lease = self._lease.plan(prompt_tokens=prompt, new_tokens=min(params.max_tokens, room))
        self._asked.lease = lease
        return lease.seconds

    def _overrun(self, error: BackendError, first_item_at: float | None) -> BackendError:
        """An aborted GPU task whose reply had run for its whole lease outran it: say so, and ask for more next
        time when the lease was short of what the speed promised (not when LOCAL_GPU_DURATION capped it)."""
        lease: Lease | None = getattr(self._asked, "lease", None)
        if not isinstance(error, ZeroGPUError) or error.reason != "aborted" or lease is None or first_item_at is None:
            return error
        if time.monotonic() - first_item_at < _OVERRUN_SHARE * lease.seconds:
            return error
        if not lease.capped:
            self._lease.overran()
        return zerogpu.overrun(lease)

    def _drive(
        self,
        messages: list[Message],
        params: GenerationParams,
        loop: asyncio.AbstractEventLoop,
        pieces: asyncio.Queue[tuple[str, Any]],
        stop: threading.Event,
    ) -> None:
        """Thread body: pull pieces from the (possibly GPU-leased) generator and post them to the event loop."""

        def send(kind: str, value: object = None) -> None:
            # RuntimeError: the event loop is closed, so nobody is waiting for this reply any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(pieces.put_nowait, (kind, value))

        # Wait for a free slot, but give up as soon as the consumer leaves.
        while not self._slots.acquire(timeout=_POLL_SECONDS):
            if stop.is_set():
                return
        # Whatever happens below, the consumer gets exactly one last message: "end" or an error.
        outcome: tuple[str, object] = ("error", BackendError("The local model stopped unexpectedly. Try again."))
        first_item_at: float | None = None  # by then, a ZeroGPU lease has begun
        try:
            generator = self._generate_on_gpu(messages, params)
            try:
                for item in generator:
                    if first_item_at is None:
                        first_item_at = time.monotonic()
                    if stop.is_set():
                        break
                    if isinstance(item, BackendError):
                        outcome = ("error", item)
                        break
                    if isinstance(item, Timing):
                        self._lease.learn(item)
                        continue
                    if isinstance(item, tuple):
                        outcome = ("end", item[1:])  # ("finish", reason, usage): the last item
                        break
                    if item:
                        send("piece", item)
                else:
                    outcome = ("end", "stop")
            finally:
                # Ends the generation; on ZeroGPU, also tells the worker to stop, and returns once it has.
                generator.close()
            if stop.is_set():
                outcome = ("end", "stop")  # the consumer left; nobody reads this
        except ServiceError as e:
            outcome = ("error", e)
        except Exception as e:
            # On ZeroGPU, spaces.GPU's own refusals and failures (quota, no GPU free, worker died) arrive here.
            error = _as_backend_error(e)
            if _is_gradio_error(e):
                error = self._overrun(error, first_item_at)
                logger.warning("ZeroGPU: %s", error)
            else:
                logger.exception("Local generation failed")
            outcome = ("error", error)
        finally:
            self._slots.release()
            send(*outcome)

    def _generate(
        self, messages: list[Message], params: GenerationParams
    ) -> Iterator[str | BackendError | Timing | tuple[str, str, Usage]]:
        """Yield the reply's text pieces, "" while the model is silent, its `Timing`, and last ("finish", reason,
        usage); runs inside the GPU lease.

        A failure is yielded, not raised: on ZeroGPU an exception raised in the worker reaches the main process
        as its class name only (wrappers.py, `exception_result` and `error("ZeroGPU worker error",
        res.error_cls)`), while a yielded `BackendError` is pickled whole. Closing this generator stops the
        generation after the current token and joins its thread.
        """
        loaded = self.loaded
        try:
            prompt_ids = self._prompt_ids(messages)
        except BackendError as e:
            yield e
            return
        room = loaded.context_window - len(prompt_ids)
        if room < 1:
            yield BackendRequestError(
                f"The conversation is {len(prompt_ids):,} tokens, and the model's context window is "
                f"{loaded.context_window:,}: start a new conversation."
            )
            return
        input_ids = torch.tensor([prompt_ids], device=loaded.model.device)
        stop = threading.Event()
        streamer = _BatchingStreamer(
            loaded.tokenizer,
            interval=self._piece_interval,
            skip_prompt=True,
            timeout=_POLL_SECONDS,
            skip_special_tokens=True,
        )
        arguments = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            # `fit` has made room for max_tokens; a caller that skipped it gets what still fits.
            "max_new_tokens": (max_new_tokens := min(params.max_tokens, room)),
            "pad_token_id": loaded.pad_token_id,
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([_StopOnEvent(stop, device=input_ids.device)]),
            **_sampling_arguments(params),
        }
        failures: list[Exception] = []

        def run() -> None:
            try:
                generate: Any = loaded.model.generate
                generate(**arguments)
            except Exception as e:
                failures.append(e)

        thread = threading.Thread(target=run, name="local-generate", daemon=True)
        started = time.monotonic()
        thread.start()
        last_progress = time.monotonic()
        try:
            while True:
                try:
                    piece = next(streamer)
                except StopIteration:
                    break
                except queue.Empty:
                    if not thread.is_alive() and streamer.text_queue.empty():
                        break  # generate failed before ending the stream
                    if time.monotonic() - last_progress > self._timeout:
                        yield BackendTimeoutError(
                            f"The local model wrote nothing for {self._timeout:g} s (LLM_TIMEOUT). Try a shorter "
                            "conversation or a lower max_tokens, or raise LLM_TIMEOUT."
                        )
                        return
                    yield ""  # a heartbeat: whoever drives this generator can stop it now
                    continue
                last_progress = time.monotonic()
                yield piece  # "" too (a word still being spelled): each yield is a chance to stop
        finally:
            stop.set()
            thread.join(_STOP_GRACE_SECONDS)
            if thread.is_alive():
                logger.warning("Generation still running %g s after stop; it ends after its step", _STOP_GRACE_SECONDS)
        if failures:
            logger.error("Local generation failed", exc_info=failures[0])
            yield _as_backend_error(failures[0])
            return
        if (timing := streamer.timing(started=started, prompt_tokens=len(prompt_ids))) is not None:
            yield timing
        # Counted by the model's own tokenizer: the prompt as the chat template wrote it, the tokens generated.
        usage = Usage(len(prompt_ids), streamer.generated)
        yield ("finish", "length" if streamer.generated >= max_new_tokens else "stop", usage)
