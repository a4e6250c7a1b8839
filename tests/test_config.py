"""Tests for services/config.py: every variable parsed once, typed, and rejected with its name when malformed."""

from __future__ import annotations

import pytest

from services.config import Settings, load_settings
from services.errors import ConfigError


class TestDefaults:
    def test_nothing_set_gives_the_documented_defaults(self):
        """An empty environment is valid and equals Settings()."""
        assert load_settings({}) == Settings()

    def test_blank_values_mean_unset(self):
        """A Space shows an empty variable as unset; so does the app."""
        assert load_settings({"OPENAI_API_KEY": "  ", "LLM_TIMEOUT": ""}) == Settings()


class TestParsing:
    def test_values_are_typed(self):
        """Numbers, choices and URLs arrive parsed."""
        settings = load_settings(
            {
                "LLM_BACKEND": "OpenAI",
                "OPENAI_BASE_URL": "http://localhost:11434/v1/",
                "LLM_TIMEOUT": "2.5",
                "LLM_MAX_RETRIES": "0",
                "QUEUE_MAX_SIZE": "none",
                "CHAT_CONCURRENCY": "8",
                "STREAM_INTERVAL_MS": "0",
            }
        )
        assert settings.llm_backend == "openai"
        assert settings.openai_base_url == "http://localhost:11434/v1"
        assert settings.llm_timeout == 2.5
        assert settings.llm_max_retries == 0
        assert settings.queue_max_size is None
        assert settings.chat_concurrency == 8
        assert settings.stream_interval == 0

    BAD_VALUES = (
        ("LLM_BACKEND", "gpt"),  # not one of auto, openai, local
        ("LLM_TIMEOUT", "soon"),  # not a number
        ("LLM_TIMEOUT", "nan"),  # NaN passes no range check
        ("LLM_TIMEOUT", "0"),  # a zero timeout fails every request
        ("LLM_MAX_RETRIES", "2.5"),  # not a whole number
        ("LLM_MAX_RETRIES", "-1"),  # negative
        ("QUEUE_MAX_SIZE", "0"),  # a queue that takes nothing
        ("MAX_TOKENS_CAP", "lots"),  # not a number
        ("DEFAULT_TEMPERATURE", "3"),  # outside [0, 2]
        ("OPENAI_BASE_URL", "localhost:11434"),  # no scheme
        ("OPENAI_BASE_URL", "ftp://example.com"),  # not http(s)
        ("STREAM_INTERVAL_MS", "-5"),  # negative
        ("APP_AUTH", "admin"),  # no password
        ("APP_AUTH", "admin:pw,:pw2"),  # second entry has no user
        ("APP_AUTH", "admin:"),  # empty password
        ("APP_THEME_MODE", "blue"),  # not system, light or dark
    )

    @pytest.mark.parametrize(("variable", "value"), BAD_VALUES)
    def test_malformed_value_names_the_variable(self, variable, value):
        """The error starts with the variable's name, so the owner knows what to fix."""
        with pytest.raises(ConfigError) as info:
            load_settings({variable: value})
        assert str(info.value).startswith(f"{variable}:")
        assert info.value.variable == variable

    def test_default_above_cap_is_rejected(self):
        """A default the server would reject is the owner's mistake, caught at start-up."""
        with pytest.raises(ConfigError, match="DEFAULT_MAX_TOKENS"):
            load_settings({"DEFAULT_MAX_TOKENS": "900", "MAX_TOKENS_CAP": "800"})

    def test_url_with_credentials_is_not_echoed(self):
        """A malformed URL may hold a password: the message does not repeat it."""
        with pytest.raises(ConfigError) as info:
            load_settings({"OPENAI_BASE_URL": "user:hunter2@host"})
        assert "hunter2" not in str(info.value)


class TestStreamInterval:
    def test_default_depends_on_the_backend(self):
        """40 ms for a model server, 100 ms for the in-process model that shares the CPU."""
        settings = load_settings({})
        assert settings.stream_interval_for("openai") == 0.04
        assert settings.stream_interval_for("local") == 0.1

    def test_variable_applies_to_every_backend(self):
        """STREAM_INTERVAL_MS, in milliseconds, wins for all backends."""
        settings = load_settings({"STREAM_INTERVAL_MS": "25"})
        assert settings.stream_interval_for("openai") == settings.stream_interval_for("local") == 0.025


class TestAuth:
    def test_pairs_are_parsed(self):
        """Comma-separated user:password pairs; a password may contain ':'."""
        settings = load_settings({"APP_AUTH": "ada:pw1, bob:a:b"})
        assert settings.app_auth == (("ada", "pw1"), ("bob", "a:b"))

    def test_malformed_entry_does_not_echo_the_password(self):
        """The error says which entry is wrong without repeating it."""
        with pytest.raises(ConfigError) as info:
            load_settings({"APP_AUTH": "ada:pw1,bob-hunter2"})
        assert "entry 2" in str(info.value)
        assert "hunter2" not in str(info.value)


class TestSecrets:
    def test_repr_hides_secrets(self):
        """Logging the settings cannot leak a key."""
        settings = load_settings({"OPENAI_API_KEY": "sk-secret-1", "HF_TOKEN": "hf_secret_2", "APP_AUTH": "u:pw-3"})
        for secret in ("sk-secret-1", "hf_secret_2", "pw-3"):
            assert secret not in repr(settings)
        assert settings.secrets() == ("sk-secret-1", "hf_secret_2", "pw-3")
