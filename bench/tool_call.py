"""One MCP tool call through the registry against the same call on an open `ClientSession`, side by side.

    python bench/tool_call.py [--rounds 300] [--parallel 4]

Starts the test MCP server (tests/support/mcp_server.py) as a process of its own on 127.0.0.1, so that its CPU
is not this process's, and times its `add` tool three ways, taking turns round by round (the order rotated), so
that drift on a noisy machine hits them alike:

- raw:       `await session.call_tool("add", {...})` on a `ClientSession` opened once and kept, on the caller's
             loop: the SDK and the server alone (the SDK checks a structured answer against the tool's output
             schema with jsonschema);
- floor:     the same without that check, which the registry skips (the schema is the server's): the fair floor;
- registry:  `await registry.call("s__add", '{"a": ..., "b": ...}')` from another event loop, as the chat would:
             JSON arguments parsed and checked, the hop to the registry's loop and back, the result rendered,
             capped and masked.

First one call a round, then `--parallel` calls gathered (one round of a model's tool calls). It prints, per mode,
the p50 / p95 / mean latency of a round in ms and the CPU ms this process spent per call, then the registry's
overhead: the median over rounds of its latency minus the floor's in the same turn, against the issue's target (a
tool round adds at most 20 ms beyond the tool's own time). About a minute with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mcp import ClientSession  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.types import CallToolResult  # noqa: E402

from services.mcp_tools import ToolRegistry, ToolServer  # noqa: E402
from tests.support.fake_openai import free_port  # noqa: E402

TARGET_MS = 20.0


def start_server(port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "tests.support.mcp_server", "--port", str(port)]
    process = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the MCP test server did not start")


class _NoOutputCheck(ClientSession):
    """The SDK's session without its jsonschema check of a structured answer, as the registry's session: the
    fair floor for the registry's own overhead."""

    async def _validate_tool_result(self, name: str, result: CallToolResult) -> None:
        return None


Call = Callable[[int], Awaitable[str]]


def session_call(session: ClientSession) -> Call:
    async def one(number: int) -> str:
        result = await session.call_tool("add", {"a": number, "b": 1})
        return str(getattr(result.content[0], "text", ""))

    return one


def registry_call(registry: ToolRegistry) -> Call:
    async def one(number: int) -> str:
        return (await registry.call("s__add", f'{{"a": {number}, "b": 1}}')).text

    return one


async def one_round(one: Call, first: int, parallel: int) -> float:
    """Seconds for `parallel` calls gathered at once; checks every answer."""
    started = time.perf_counter()
    answers = await asyncio.gather(*(one(first + i) for i in range(parallel)))
    elapsed = time.perf_counter() - started
    expected = [str(first + i + 1) for i in range(parallel)]
    if list(answers) != expected:
        raise RuntimeError(f"wrong answers: {answers[:3]} for {expected[:3]}")
    return elapsed


async def measure(url: str, registry: ToolRegistry, rounds: int, parallel: int) -> dict[str, list[float]]:
    """Each mode's round latencies, the modes taking turns round by round (the order rotated), plus the CPU
    seconds per call this process spent in each mode."""
    async with (
        httpx.AsyncClient() as first_client,
        httpx.AsyncClient() as second_client,
        streamable_http_client(url, http_client=first_client) as (read, write, _),
        streamable_http_client(url, http_client=second_client) as (read2, write2, _),
        ClientSession(read, write) as raw,
        _NoOutputCheck(read2, write2) as floor,
    ):
        await raw.initialize()
        await floor.initialize()
        modes = {"raw": session_call(raw), "floor": session_call(floor), "registry": registry_call(registry)}
        latencies: dict[str, list[float]] = {mode: [] for mode in modes}
        cpu: dict[str, float] = dict.fromkeys(modes, 0.0)
        for one in modes.values():  # warm-up
            for number in range(10):
                await one_round(one, number, parallel)
        order = list(modes)
        for number in range(rounds):
            order = order[1:] + order[:1]
            for mode in order:
                spent = time.process_time()
                latencies[mode].append(await one_round(modes[mode], number * parallel, parallel))
                cpu[mode] += time.process_time() - spent
        for mode in modes:
            latencies[f"{mode} cpu"] = [cpu[mode] / (rounds * parallel)]
        return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def report(title: str, results: dict[str, list[float]]) -> float:
    """Prints the table; returns the registry's overhead in ms: the median, over rounds, of its latency minus
    the floor's latency in the same turn."""
    print(f"\n{title}")
    print(f"{'mode':<10} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8} {'CPU ms/call':>12}")
    for mode in ("raw", "floor", "registry"):
        latencies = results[mode]
        p50, p95 = percentile(latencies, 50) * 1000, percentile(latencies, 95) * 1000
        mean = statistics.mean(latencies) * 1000
        print(f"{mode:<10} {p50:8.2f} {p95:8.2f} {mean:8.2f} {results[mode + ' cpu'][0] * 1000:12.3f}")
    paired = [r - f for r, f in zip(results["registry"], results["floor"], strict=True)]
    overhead = statistics.median(paired) * 1000
    against_raw = statistics.median(r - f for r, f in zip(results["registry"], results["raw"], strict=True)) * 1000
    verdict = "ok" if overhead <= TARGET_MS else "MISS"
    print(
        f"registry overhead: {overhead:+.2f} ms a round against the floor ({against_raw:+.2f} ms against raw), "
        f"median of paired turns -> {verdict}"
    )
    return overhead


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300, help="timed rounds per mode (default 300)")
    parser.add_argument("--parallel", type=int, default=4, help="calls gathered at once in the second table")
    args = parser.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    server = start_server(port)
    registry = ToolRegistry([ToolServer("s", url)])
    try:
        registry.start(wait=10)
        worst = float("-inf")
        for parallel in (1, args.parallel):
            results = asyncio.run(measure(url, registry, args.rounds, parallel))
            label = "one call a round" if parallel == 1 else f"{parallel} calls gathered a round"
            worst = max(worst, report(f"{label}, {args.rounds} rounds per mode", results))
    finally:
        registry.close()
        server.terminate()
        server.wait(10)
    print(f"SUMMARY registry overhead at most {worst:+.2f} ms a round (target <= {TARGET_MS:g} ms)")
    return 0 if worst <= TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
