"""Shared fixtures: a fake OpenAI-compatible server, and the real app launched as a process on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Iterator

import gradio.queueing
import gradio.utils
import pytest
from hypothesis import settings

from tests.support.apps import ROOT, RunningApp, app_env, fake_backed, running_app, start_app, stop_app
from tests.support.fake_openai import Behaviour, FakeOpenAI

__all__ = ["ROOT", "RunningApp", "app_env", "fake_backed", "running_app", "start_app", "stop_app"]

# Property tests check what is computed, not how fast (the linear-time tests time the same functions on purpose),
# and a run must pass or fail the same way each time: the examples follow from the test itself, and none wait on a
# deadline that a busy machine can miss. `pytest --hypothesis-profile=explore` searches new examples.
settings.register_profile("repeatable", deadline=None, derandomize=True, database=None)
settings.register_profile("explore", deadline=None)
settings.load_profile("repeatable")


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(Behaviour(delay=0.02)) as server:
        yield server


@pytest.fixture
def fake(fake_openai: FakeOpenAI) -> FakeOpenAI:
    """The module's fake server, with a clean slate of recorded requests and default behaviour."""
    fake_openai.reset()
    return fake_openai


@pytest.fixture(scope="module")
def app(fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """The app on 127.0.0.1, chatting with the module's fake OpenAI server (no retries, so faults show)."""
    # Every test client comes from 127.0.0.1: the rate limits are tested on an app of their own.
    env = fake_backed(fake_openai, LLM_MAX_RETRIES="0", RATE_LIMIT_PER_IP="none", RATE_LIMIT_PER_SESSION="none")
    with running_app(tmp_path_factory.mktemp("app"), **env) as running:
        yield running


KINDS = ("unit", "e2e", "browser")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test says what kind it is (pyproject.toml's markers), so that `pytest -m unit` is the fast set;
    a unit test also fails on a leaked socket, file or event loop (a ResourceWarning)."""
    unmarked = [item.nodeid for item in items if not any(item.get_closest_marker(kind) for kind in KINDS)]
    if unmarked:
        raise pytest.UsageError(f"tests without a kind marker ({', '.join(KINDS)}): {', '.join(unmarked[:10])}")
    for item in items:
        if item.get_closest_marker("unit"):
            item.add_marker(pytest.mark.filterwarnings("error::ResourceWarning"))
            item.add_marker(pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"))


def pytest_collection_finish(session: pytest.Session) -> None:
    """What exists once the tests are collected (gradio, torch and transformers imported, the test items made)
    lives for the whole run: frozen, the collector no longer walks it at each full collection, which made every
    collection, and so the tests that run one and pytest's own at the end, take a large part of a second."""
    gc.freeze()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """One collection, whose leaks pytest still reports, then what is left is frozen too: pytest's repeated
    collections after the session and the interpreter's at exit then have nothing left to walk."""
    gc.collect()
    gc.freeze()


_last_was_unit = True


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before the first unit test after other kinds, what those left for the collector (a client that a library
    never closes, such as spaces' per-call httpx client) is collected with its ResourceWarnings ignored: the
    leak is not the unit test's, which fails on its own leaks only."""
    global _last_was_unit
    unit = item.get_closest_marker("unit") is not None
    if unit and not _last_was_unit:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
    _last_was_unit = unit


@pytest.fixture(autouse=True, scope="session")
def gradio_makes_no_event_loops() -> Iterator[None]:
    """Outside a running event loop, Gradio makes a new loop for each lock or event it creates
    (gradio/utils.py, `safe_get_lock`, `safe_get_stop_event`: for Pythons before 3.10, whose locks needed one), sets
    it as the thread's loop and never closes it. Each was a ResourceWarning (the loop and its self-pipe sockets)
    in whatever test was running when it was collected. On the Pythons this project runs, a lock needs no loop."""
    with pytest.MonkeyPatch.context() as patch:
        for module in (gradio.utils, gradio.queueing):
            if hasattr(module, "safe_get_lock"):
                patch.setattr(module, "safe_get_lock", asyncio.Lock)
        patch.setattr(gradio.utils, "safe_get_stop_event", asyncio.Event)
        yield
