"""The one place where a service error becomes the message a person sees."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import gradio as gr

from services.errors import RateLimitedError, ServiceError, ValidationError

__all__ = ["as_user_error", "user_errors"]

logger = logging.getLogger("app")
F = TypeVar("F", bound=Callable[..., Any])


def as_user_error(error: ServiceError) -> gr.Error:
    """A service error as a `gr.Error`, logged here as one line instead of Gradio's traceback.

    Gradio prints the traceback of a gr.Error, causes included, straight to stderr (not through logging, so not
    redacted), and an upstream error's text can quote a key. The services write their messages to be shown.
    """
    # A caller's mistake (bad input, too fast) is worth a line, not a warning: a flood of them is no incident.
    level = logging.INFO if isinstance(error, (ValidationError, RateLimitedError)) else logging.WARNING
    logger.log(level, "%s: %s", type(error).__name__, error)
    return gr.Error(str(error), print_exception=False)


def user_errors(fn: F) -> F:
    """Turn the `ServiceError`s `fn` raises into `gr.Error`s; anything else is a bug and stays Gradio's generic
    error. Works on functions, coroutines and (async) generators, and keeps `fn`'s name, signature and docstring
    (`functools.wraps`), which the API docs and the MCP server read."""
    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def async_gen(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            try:
                async for value in fn(*args, **kwargs):
                    yield value
            except ServiceError as error:
                raise as_user_error(error) from error

        return async_gen  # type: ignore[return-value]
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def coroutine(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except ServiceError as error:
                raise as_user_error(error) from error

        return coroutine  # type: ignore[return-value]
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(*args, **kwargs)
            except ServiceError as error:
                raise as_user_error(error) from error

        return generator  # type: ignore[return-value]

    @functools.wraps(fn)
    def function(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ServiceError as error:
            raise as_user_error(error) from error

    return function  # type: ignore[return-value]
