"""The local model's GPU path, checked in one run on a CUDA machine that cannot reach the Hub.

Steps, each printing one line of figures (or FAIL and why); the exit status is 1 when any step fails:

1. device:  what torch sees. Without CUDA the CPU stands in (float32) and every line says so: the run then
            checks everything up to the device itself.
2. load:    a tiny random-weight model built on this machine (tests/support/tiny_model.py: no download),
            loaded by the app's `load_model`: on CUDA in bf16 on `cuda`; `default_model()` names the GPU default.
3. stream:  a greedy reply through `LocalBackend.stream` (the generate thread, the streamer, the driver thread)
            equals `model.generate`'s; time to first token and tokens/s of both; the threads end with it.
4. stop:    a long reply closed after three pieces (Stop, a closed tab): both threads end within a second.
5. lease:   the speed the ZeroGPU lease planner learned from steps 3-4, and the leases it then asks for.
6. refusal: spaces' own ZeroGPU client, asking a fake device API, refuses a lease (quota spent): the chat gets
            the sentence (needs gradio, which spaces' client imports).
7. zerogpu: ZeroGPU emulated in a child process: SPACES_ZERO_GPU set and a fake device API that grants leases
            on this GPU. `import spaces` makes CUDA "available" before any lease, the model loads on `cuda`
            under spaces' emulation, each reply runs in the forked worker spaces starts on the real GPU, Stop
            reaches the worker, and a refusal reads as a sentence. Needs a CUDA build of torch (spaces reads
            torch.version.cuda when SPACES_ZERO_GPU is set) and gradio; skipped with the reason otherwise.
8. bench:   bench/local_model.py on this device (tokens/s of the app, the chat layer and the backend against
            `model.generate`); the app path needs gradio, and is left out (said so) without it.

    python bench/gpu_check.py                 # about a minute on a GPU, a few on two CPU cores
    python bench/gpu_check.py --no-bench      # steps 1-7 only

On a machine with no package index, carry the wheels the image lacks (README, "Local model", says which).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from services.llm.base import ChatRequest, Delta
    from services.llm.local_backend import LocalBackend

THREADS = {"local-generate", "local-stream"}
SYSTEM = "you are a helpful assistant"
MESSAGE = "tell me a story about a robot who learns to paint"


class Report:
    """Prints each step's line and remembers whether any failed."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def line(self, step: str, text: str) -> None:
        print(f"{step:8} {text}", flush=True)

    def check(self, step: str, ok: bool, text: str) -> bool:
        self.line(step, text if ok else f"FAIL: {text}")
        if not ok:
            self.failed.append(step)
        return ok

    def skip(self, step: str, why: str) -> None:
        self.line(step, f"skipped: {why}")


def _request(tokens: int) -> ChatRequest:
    from services.llm.base import ChatRequest, GenerationParams

    return ChatRequest(
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": MESSAGE}],
        GenerationParams(temperature=0, max_tokens=tokens),
    )


def _live_threads() -> set[str]:
    return {thread.name for thread in threading.enumerate() if thread.name in THREADS and thread.is_alive()}


def _wait_for_threads(seconds: float) -> float:
    """Seconds until the generation threads are gone (at most `seconds`)."""
    started = time.monotonic()
    while _live_threads() and time.monotonic() - started < seconds:
        time.sleep(0.005)
    return time.monotonic() - started


def _on_fresh_thread(fn: Callable[[], Any]) -> Any:
    # As the backend does on a CPU: a torch call on the main thread leaves it an OpenMP team (local_backend.py).
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(fn()))
    thread.start()
    thread.join()
    return result[0]


def _direct(backend: LocalBackend, tokens: int) -> tuple[str, int, float, float]:
    """`model.generate` alone: the reply, its tokens, the seconds to the first token and in all."""
    import torch
    from transformers import TextStreamer

    from services.llm.base import content_text

    loaded = backend.loaded
    messages = [{"role": m["role"], "content": content_text(m["content"])} for m in _request(tokens).messages]
    prompt = loaded.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = loaded.tokenizer(prompt, add_special_tokens=False, return_tensors="pt").to(loaded.model.device)
    first: list[float] = []

    class FirstToken(TextStreamer):
        next_tokens_are_prompt: bool  # TextStreamer's own flag: the first put() is the prompt

        def put(self, value: torch.Tensor) -> None:
            if self.next_tokens_are_prompt:
                self.next_tokens_are_prompt = False
            elif not first:
                first.append(time.perf_counter())

    def run() -> tuple[str, int, float, float]:
        started = time.perf_counter()
        generate: Any = loaded.model.generate
        output = generate(
            **inputs,
            max_new_tokens=tokens,
            do_sample=False,
            pad_token_id=loaded.pad_token_id,
            streamer=FirstToken(loaded.tokenizer),
        )
        if loaded.device == "cuda":
            torch.cuda.synchronize()
        ended = time.perf_counter()
        new = output[0, inputs["input_ids"].shape[1] :]
        text = str(loaded.tokenizer.decode(new, skip_special_tokens=True))
        return text, len(new), first[0] - started, ended - started

    result: tuple[str, int, float, float] = _on_fresh_thread(run)
    return result


async def _stream(backend: LocalBackend, request: ChatRequest) -> tuple[list[Delta], float, float]:
    started = time.perf_counter()
    deltas: list[Delta] = []
    first = 0.0
    async for delta in backend.stream(request):
        if not deltas:
            first = time.perf_counter() - started
        deltas.append(delta)
    return deltas, first, time.perf_counter() - started


async def _stop_after(backend: LocalBackend, request: ChatRequest, pieces: int) -> float:
    """Seconds from closing a stream after `pieces` text pieces until both threads have ended."""
    stream = backend.stream(request)
    for _ in range(pieces):
        await anext(stream)
    started = time.monotonic()
    await stream.aclose()  # type: ignore[attr-defined]
    await asyncio.to_thread(_wait_for_threads, 5.0)
    return time.monotonic() - started


def step_device(report: Report) -> bool:
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        memory = torch.cuda.get_device_properties(0).total_memory / 2**30
        report.line("device", f"{name}, {memory:.0f} GiB; torch {torch.__version__} (CUDA {torch.version.cuda})")
        return True
    report.line("device", f"no CUDA device: the CPU stands in (float32); torch {torch.__version__}")
    return False


def step_load(report: Report, model_dir: Path, gpu: bool) -> LocalBackend:
    import torch

    from services.config import DEFAULT_GPU_LOCAL_MODEL, DEFAULT_LOCAL_MODEL, Settings
    from services.llm.local_backend import LocalBackend, default_model

    started = time.perf_counter()
    backend = LocalBackend.from_settings(Settings(local_model=str(model_dir)))
    loaded = backend.loaded
    where = f"{loaded.device} ({str(loaded.dtype).removeprefix('torch.')})"
    seconds = time.perf_counter() - started
    expected = ("cuda", torch.bfloat16, DEFAULT_GPU_LOCAL_MODEL) if gpu else ("cpu", torch.float32, DEFAULT_LOCAL_MODEL)
    placed = next(loaded.model.parameters()).device.type
    report.check(
        "load",
        (loaded.device, loaded.dtype, default_model()) == expected and placed == expected[0],
        f"{loaded.model.num_parameters() / 1e6:.1f}M parameters on {where} in {seconds:.1f} s; LOCAL_MODEL unset "
        f"would load {default_model()}",
    )
    return backend


def step_stream(report: Report, backend: LocalBackend, tokens: int) -> str:
    _direct(backend, 8)  # warm-up: the first `generate` of a process pays for setting up (kernels, caches)
    expected, new, first_direct, total_direct = _direct(backend, tokens)
    deltas, first, total = asyncio.run(_stream(backend, _request(tokens)))
    text = "".join(delta.text for delta in deltas)
    gone = _wait_for_threads(1.0)
    report.check(
        "stream",
        text == expected and not _live_threads(),
        f"{new} tokens in {len(deltas) - 1} pieces; first token after {first * 1000:.0f} ms "
        f"(generate alone: {first_direct * 1000:.0f} ms); {new / total:.0f} tokens/s (generate alone: "
        f"{new / total_direct:.0f}); same text as generate: {text == expected}; threads ended "
        f"{gone * 1000:.0f} ms after the last piece",
    )
    return expected


def step_stop(report: Report, backend: LocalBackend) -> None:
    window = backend.loaded.context_window
    seconds = asyncio.run(_stop_after(backend, _request(window - 64), pieces=3))
    report.check(
        "stop",
        seconds < 1.0 and not _live_threads(),
        f"a {window - 64}-token reply closed after 3 pieces: both threads ended in {seconds * 1000:.0f} ms",
    )


def step_lease(report: Report, backend: LocalBackend) -> None:
    from services.llm.zerogpu import LeasePlanner

    learned = backend._lease
    fresh = LeasePlanner(ceiling=learned.ceiling)
    sizes = (16, 256, 512, 1024, 4096)

    def leases(planner: LeasePlanner) -> str:
        return ", ".join(f"{n}: {planner.plan(prompt_tokens=200, new_tokens=n).seconds} s" for n in sizes)

    report.line("lease", f"before any reply ({fresh.tokens_per_second:.0f} tokens/s assumed): {leases(fresh)}")
    report.check(
        "lease",
        learned.tokens_per_second != fresh.tokens_per_second,
        f"learned {learned.tokens_per_second:.0f} tokens/s, {learned.prompt_tokens_per_second:.0f} prompt "
        f"tokens/s: {leases(learned)} (tiny model: the real model writes slower)",
    )


def step_refusal(report: Report, backend: LocalBackend) -> None:
    if importlib.util.find_spec("gradio") is None:
        report.skip("refusal", "spaces' ZeroGPU client imports gradio, which is not installed")
        return
    import warnings

    from gradio.context import LocalContext
    from spaces.config import Config

    from services.errors import ZeroGPUError
    from services.llm.local_backend import LocalBackend
    from tests.support.fake_zerogpu import FakeZeroGPU, schedule_like_spaces, visitor_request

    api = FakeZeroGPU()
    Config.zero_device_api_url = api.url
    api.quota(left=8, wait=3725)
    refusing = LocalBackend(backend.loaded)
    refusing._generate_on_gpu = schedule_like_spaces(refusing._generate, refusing._lease_seconds)

    async def run() -> BaseException | None:
        LocalContext.request.set(visitor_request())  # type: ignore[arg-type]
        try:
            await _stream(refusing, _request(64))
        except Exception as error:
            return error
        return None

    try:
        with warnings.catch_warnings(action="ignore"):  # spaces cannot read the GPU model's name off ZeroGPU
            error = asyncio.run(run())
    finally:
        api.close()
    asked = ", ".join(f"{seconds} s" for seconds in api.asked)
    report.check("refusal", isinstance(error, ZeroGPUError), f"a lease of {asked} refused: {error}")


def step_zerogpu(report: Report, model_dir: Path, expected: str, tokens: int) -> None:
    import torch

    if torch.version.cuda is None:
        report.skip("zerogpu", "spaces' ZeroGPU mode needs a CUDA build of torch (it reads torch.version.cuda)")
        return
    if importlib.util.find_spec("gradio") is None:
        report.skip("zerogpu", "spaces' ZeroGPU wrappers import gradio, which is not installed")
        return
    uuid = f"GPU-{torch.cuda.get_device_properties(0).uuid}" if torch.cuda.is_available() else "GPU-none"
    command = [sys.executable, __file__, "--zerogpu-child", str(model_dir), "--uuid", uuid, "--tokens", str(tokens)]
    child = subprocess.run(
        command, cwd=ROOT, input=expected, capture_output=True, text=True, timeout=300, env={**os.environ}
    )
    lines = [line for line in child.stdout.splitlines() if line.startswith("{")]
    if child.returncode != 0 or not lines:
        tail = (child.stdout + child.stderr).strip().splitlines()[-15:]
        report.check("zerogpu", False, "the emulated ZeroGPU run failed:\n  " + "\n  ".join(tail))
        return
    result = json.loads(lines[-1])
    report.check(
        "zerogpu",
        result["ok"],
        f"cuda available at start-up: {result['available']}; model on {result['device']}; leases asked "
        f"{result['asked']} s; reply in the worker: {result['tokens']} tokens in {result['seconds']:.1f} s (the "
        f"worker's start included), same text: {result['same']}; stop took {result['stop_ms']:.0f} ms and the "
        f"next reply ran: {result['after_stop']}; refusal: {result['refusal']}",
    )


def zerogpu_child(model_dir: str, uuid: str, tokens: int) -> int:
    """The emulated ZeroGPU Space: fake device API first, then SPACES_ZERO_GPU, then `import spaces`."""
    from tests.support.fake_zerogpu import FakeZeroGPU, visitor_request

    api = FakeZeroGPU()
    api.grant(uuid=uuid)
    os.environ["SPACES_ZERO_GPU"] = "true"
    os.environ["SPACES_ZERO_DEVICE_API_URL"] = api.url
    import torch

    from services.config import Settings
    from services.llm.local_backend import LocalBackend  # imports spaces: it patches torch before CUDA starts

    available = torch.cuda.is_available()
    backend = LocalBackend.from_settings(Settings(local_model=model_dir))
    expected = sys.stdin.read()
    from gradio.context import LocalContext

    async def reply(max_tokens: int) -> tuple[str, float]:
        LocalContext.request.set(visitor_request())  # type: ignore[arg-type]
        deltas, _, total = await _stream(backend, _request(max_tokens))
        return "".join(delta.text for delta in deltas), total

    async def stop() -> float:
        LocalContext.request.set(visitor_request())  # type: ignore[arg-type]
        stream = backend.stream(_request(backend.loaded.context_window - 64))
        for _ in range(3):
            await anext(stream)
        started = time.monotonic()
        await stream.aclose()  # type: ignore[attr-defined]
        return time.monotonic() - started

    text, seconds = asyncio.run(reply(tokens))
    new = len(backend.loaded.tokenizer(text, add_special_tokens=False)["input_ids"])
    stop_seconds = asyncio.run(stop())
    after, _ = asyncio.run(reply(16))
    api.quota(left=5, wait=600)
    try:
        asyncio.run(reply(16))
        refusal = "none (FAIL)"
    except Exception as error:
        refusal = str(error)
    result = {
        "available": available,
        "device": backend.loaded.device,
        "asked": api.asked,
        "tokens": new,
        "seconds": seconds,
        "same": text == expected,
        "stop_ms": stop_seconds * 1000,
        "after_stop": bool(after),
        "refusal": refusal,
    }
    result["ok"] = bool(available and text == expected and stop_seconds < 1.0 and after and "(FAIL)" not in refusal)
    print(json.dumps(result), flush=True)
    api.close()
    return 0


def step_bench(report: Report, rounds: int, tokens: int) -> None:
    command = [sys.executable, "bench/local_model.py", "--rounds", str(rounds), "--tokens", str(tokens)]
    if importlib.util.find_spec("gradio") is None:
        command.append("--no-app")
        report.line("bench", "gradio is not installed: the path through the app is left out")
    report.line("bench", " ".join(command[1:]))
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=540)
    for line in result.stdout.strip().splitlines():
        print(f"         {line}")
    verdict = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr.strip()[-500:]
    report.check("bench", result.returncode == 0, verdict)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=256, help="tokens of the measured reply (default 256)")
    parser.add_argument("--rounds", type=int, default=5, help="bench/local_model.py rounds (default 5)")
    parser.add_argument("--no-bench", action="store_true", help="skip step 8 (bench/local_model.py)")
    parser.add_argument("--zerogpu-child", metavar="MODEL_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--uuid", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.zerogpu_child:
        return zerogpu_child(args.zerogpu_child, args.uuid, args.tokens)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may need the Hub
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    report = Report()
    gpu = step_device(report)
    from tests.support.tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        model_dir = _on_fresh_thread(
            lambda: build_tiny_model(Path(tmp) / "tiny", hidden_size=256, num_layers=4, context=4096)
        )
        backend = step_load(report, model_dir, gpu)
        expected = step_stream(report, backend, args.tokens)
        step_stop(report, backend)
        step_lease(report, backend)
        step_refusal(report, backend)
        step_zerogpu(report, model_dir, expected, args.tokens)
    if not args.no_bench:
        step_bench(report, args.rounds, args.tokens)
    where = "on the GPU" if gpu else "on the CPU (no CUDA device: the GPU itself was not checked)"
    failed = f"FAILED: {', '.join(report.failed)}" if report.failed else "all steps passed"
    print(f"\nran {where}: {failed}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
