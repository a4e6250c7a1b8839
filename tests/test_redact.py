"""Tests for services/redact.py: secrets never reach a log line."""

from __future__ import annotations

import logging

import pytest

from services.redact import install_log_redaction, redact


@pytest.fixture
def restore_factory():
    factory = logging.getLogRecordFactory()
    yield
    logging.setLogRecordFactory(factory)


class TestRedact:
    def test_masks_every_secret(self):
        """Each secret of useful length becomes ***."""
        assert redact("key sk-123456 and hf_abcdef", ["sk-123456", "hf_abcdef"]) == "key *** and ***"

    def test_short_values_are_left_alone(self):
        """A 3-letter 'secret' would mask ordinary words; it is not a real credential anyway."""
        assert redact("abc abc", ["abc"]) == "abc abc"


class TestLogRedaction:
    def test_messages_args_and_tracebacks_are_masked(self, restore_factory, caplog):
        """Message, %-args and exception text of any logger are masked."""
        install_log_redaction(["sk-canary-42"])
        logger = logging.getLogger("some.library")
        with caplog.at_level(logging.INFO):
            logger.info("calling with key %s", "sk-canary-42")
            try:
                raise RuntimeError("bad key sk-canary-42")
            except RuntimeError:
                logger.exception("failed")
        text = caplog.text
        assert "sk-canary-42" not in text
        assert "calling with key ***" in text
        assert "RuntimeError: bad key ***" in text
