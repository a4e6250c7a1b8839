"""Keeps secret values out of logs: every log record, from any library, is masked before a handler sees it."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

__all__ = ["install_log_redaction", "redact"]

MASK = "***"
# Shorter values would mask ordinary words in log lines ("abc"), and no real key or password is that short.
MIN_SECRET_LENGTH = 6


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret of useful length replaced by ***."""
    for secret in secrets:
        if len(secret) >= MIN_SECRET_LENGTH and secret in text:
            text = text.replace(secret, MASK)
    return text


def install_log_redaction(secrets: Iterable[str]) -> None:
    """Mask `secrets` in every log record created from now on, message and traceback alike.

    A record factory, rather than a handler filter, because uvicorn and Gradio add handlers of their own after
    start-up; every record of every logger is made by the factory.
    """
    values = tuple(s for s in secrets if len(s) >= MIN_SECRET_LENGTH)
    if not values:
        return
    make_record = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        message = record.getMessage()
        masked = redact(message, values)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info), values)
        return record

    logging.setLogRecordFactory(factory)
