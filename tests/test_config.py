"""Tests for services/config.py: the VARIABLES table, every variable parsed once and typed, the rules across
variables, and secrets kept out of messages and `repr`."""

from __future__ import annotations

import dataclasses

import pytest

from services.config import (
    DEFAULT_GPU_LOCAL_MODEL,
    DEFAULT_LOCAL_MODEL,
    HF_ROUTER_URL,
    VARIABLES,
    Settings,
    load_settings,
)
from services.errors import ConfigError

pytestmark = pytest.mark.unit

SECRET_FIELDS = {
    "openai_api_key",
    "hf_token",
    "oauth_client_secret",
    "history_secret",
    "app_auth",
    "mcp_servers",
    "mcp_headers",
}


class TestTable:
    def test_every_settings_field_has_exactly_one_variable(self):
        """Each field of Settings is set by one row of VARIABLES, and no row names a field Settings lacks."""
        rows = [variable.field for variable in VARIABLES if variable.field is not None]
        assert sorted(rows) == sorted(field.name for field in dataclasses.fields(Settings))

    def test_names_are_unique_upper_case(self):
        """No variable is listed twice, and every name is an environment-variable name."""
        names = [variable.name for variable in VARIABLES]
        assert len(names) == len(set(names))
        assert all(name == name.upper() and name.replace("_", "").isalnum() for name in names)

    def test_only_gradios_own_variables_have_no_field(self):
        """The rows with no Settings field are Gradio's server address, documented and validated only."""
        assert {variable.name for variable in VARIABLES if variable.field is None} == {
            "GRADIO_SERVER_NAME",
            "GRADIO_SERVER_PORT",
        }

    def test_secret_rows_are_the_fields_hidden_from_repr(self):
        """A variable marked secret is exactly one whose field stays out of Settings' repr."""
        secret_rows = {variable.field for variable in VARIABLES if variable.secret}
        hidden = {field.name for field in dataclasses.fields(Settings) if not field.repr}
        assert secret_rows == hidden == SECRET_FIELDS

    def test_every_row_says_what_it_means(self):
        """README's table is built from the rows: each has a meaning and a known section."""
        sections = {"backend", "sign-in", "chat", "tools", "limits", "history", "access", "platform"}
        for variable in VARIABLES:
            assert variable.meaning.strip(), variable.name
            assert variable.section in sections, variable.name


class TestDefaults:
    def test_nothing_set_gives_the_documented_defaults(self):
        """An empty environment is valid and equals Settings()."""
        assert load_settings({}) == Settings()

    def test_default_values(self):
        """The defaults that other modules rely on."""
        settings = Settings()
        assert settings.llm_backend == "auto"
        assert settings.local_model is None  # the default for the hardware: services.llm.local_backend.default_model
        assert settings.local_gpu_duration == 60
        assert settings.hf_router_url == HF_ROUTER_URL == "https://router.huggingface.co/v1"
        assert settings.trusted_proxies == 0
        assert settings.rate_limit_session == 20
        assert settings.rate_limit_ip == 60
        assert settings.session_ttl == 3600.0
        assert settings.on_space is False

    def test_local_model_default_is_documented_for_both(self):
        """LOCAL_MODEL's row says which model each hardware gets, since the field's default (None) cannot."""
        (row,) = [variable for variable in VARIABLES if variable.name == "LOCAL_MODEL"]
        assert row.default == (
            "`Qwen/Qwen3-4B-Instruct-2507` on a GPU (ZeroGPU included), `HuggingFaceTB/SmolLM2-360M-Instruct` on a CPU"
        )
        assert (DEFAULT_GPU_LOCAL_MODEL, DEFAULT_LOCAL_MODEL) == (
            "Qwen/Qwen3-4B-Instruct-2507",
            "HuggingFaceTB/SmolLM2-360M-Instruct",
        )
        assert load_settings({"LOCAL_MODEL": "org/model"}).local_model == "org/model"

    def test_blank_values_mean_unset(self):
        """A Space shows an empty variable as unset; so does the app."""
        assert load_settings({"OPENAI_API_KEY": "  ", "LLM_TIMEOUT": "", "SPACE_ID": "\t"}) == Settings()

    def test_values_are_stripped(self):
        """Spaces around a value, as pasted into a Space's settings, do not count."""
        settings = load_settings({"LLM_MODEL": "  gpt-4o  ", "LLM_MAX_RETRIES": " 3 "})
        assert (settings.llm_model, settings.llm_max_retries) == ("gpt-4o", 3)

    def test_blank_system_prompt_is_kept(self):
        """SYSTEM_PROMPT set to blank means no system prompt, unlike every other variable."""
        assert load_settings({"SYSTEM_PROMPT": ""}).system_prompt == ""
        assert load_settings({"SYSTEM_PROMPT": "  "}).system_prompt == "  "

    def test_a_space_trusts_one_proxy(self):
        """On a Space (SPACE_ID set) the client address is read through its one reverse proxy."""
        settings = load_settings({"SPACE_ID": "ada/chat"})
        assert settings.on_space is True
        assert settings.space_id == "ada/chat"
        assert settings.trusted_proxies == 1

    def test_trusted_proxies_set_wins_on_a_space(self):
        """An explicit TRUSTED_PROXIES, even 0, is not replaced by the Space default."""
        assert load_settings({"SPACE_ID": "ada/chat", "TRUSTED_PROXIES": "0"}).trusted_proxies == 0
        assert load_settings({"TRUSTED_PROXIES": "2"}).trusted_proxies == 2

    def test_gradio_variables_are_validated_but_not_stored(self):
        """GRADIO_SERVER_PORT is checked at start-up; a valid one leaves Settings unchanged."""
        assert load_settings({"GRADIO_SERVER_PORT": "7861", "GRADIO_SERVER_NAME": "0.0.0.0"}) == Settings()
        with pytest.raises(ConfigError, match=r"^GRADIO_SERVER_PORT: must be at least 1 and at most 65535, got 0\.$"):
            load_settings({"GRADIO_SERVER_PORT": "0"})


class TestParsing:
    def test_values_are_typed(self):
        """Numbers, choices, limits, lists and URLs arrive parsed."""
        settings = load_settings(
            {
                "LLM_BACKEND": "OpenAI",
                "OPENAI_BASE_URL": "http://localhost:11434/v1/",
                "LLM_TIMEOUT": "2.5",
                "LLM_MAX_RETRIES": "0",
                "QUEUE_MAX_SIZE": "none",
                "CHAT_CONCURRENCY": "8",
                "STREAM_INTERVAL_MS": "0",
                "SESSION_TTL_MINUTES": "2",
                "LLM_MODELS": " a, b ,,a, c",
                "HF_ROUTER_MODELS": "x:fastest",
                "GRADIO_MCP_SERVER": "No",
                "APP_THEME_MODE": "DARK",
                "SIGN_IN": "off",
                "ANONYMOUS_CHAT": "local",
            }
        )
        assert settings.llm_backend == "openai"
        assert settings.openai_base_url == "http://localhost:11434/v1"
        assert settings.llm_timeout == 2.5
        assert settings.llm_max_retries == 0
        assert settings.queue_max_size is None
        assert settings.chat_concurrency == 8
        assert settings.stream_interval == 0
        assert settings.session_ttl == 120.0
        assert settings.llm_models == ("a", "b", "c")
        assert settings.hf_router_models == ("x:fastest",)
        assert settings.mcp_server is False
        assert settings.theme_mode == "dark"
        assert settings.sign_in == "off"
        assert settings.anonymous_chat == "local"

    @pytest.mark.parametrize("raw", ["none", "NONE", "unlimited", "Unlimited"])
    def test_limits_can_be_switched_off(self, raw):
        """'none' and 'unlimited', in any case, mean no limit."""
        settings = load_settings({"RATE_LIMIT_PER_IP": raw, "RATE_LIMIT_PER_SESSION": raw})
        assert settings.rate_limit_ip is None
        assert settings.rate_limit_session is None

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [("1", True), ("true", True), ("YES", True), ("on", True), ("0", False), ("False", False), ("off", False)],
    )
    def test_flags(self, raw, expected):
        """The usual spellings of true and false, in any case."""
        assert load_settings({"GRADIO_MCP_SERVER": raw}).mcp_server is expected

    def test_milliseconds_become_seconds(self):
        """STREAM_INTERVAL_MS is given in ms and kept in seconds."""
        assert load_settings({"STREAM_INTERVAL_MS": "5000"}).stream_interval == 5.0

    def test_range_bounds_are_inclusive(self):
        """The lowest and highest documented values are accepted."""
        settings = load_settings({"LLM_TIMEOUT": "0.1", "LLM_MAX_RETRIES": "10", "DEFAULT_TEMPERATURE": "2"})
        assert (settings.llm_timeout, settings.llm_max_retries, settings.default_temperature) == (0.1, 10, 2.0)

    BAD_VALUES = (
        ("LLM_BACKEND", "gpt"),  # not one of auto, openai, local
        ("LLM_TIMEOUT", "soon"),  # not a number
        ("LLM_TIMEOUT", "nan"),  # NaN passes no range check
        ("LLM_TIMEOUT", "inf"),  # infinite
        ("LLM_TIMEOUT", "0"),  # a zero timeout fails every request
        ("LLM_TIMEOUT", "3601"),  # above the hour
        ("LLM_CONNECT_TIMEOUT", "601"),  # above ten minutes
        ("LLM_MAX_RETRIES", "2.5"),  # not a whole number
        ("LLM_MAX_RETRIES", "-1"),  # negative
        ("LLM_MAX_RETRIES", "11"),  # above 10
        ("LOCAL_CONCURRENCY", "0"),  # nothing could ever run
        ("LOCAL_GPU_DURATION", "0"),  # a lease of no time
        ("QUEUE_MAX_SIZE", "0"),  # a queue that takes nothing
        ("QUEUE_MAX_SIZE", "many"),  # neither a number nor none
        ("CHAT_CONCURRENCY", "0"),  # no chat could stream
        ("MAX_TOKENS_CAP", "lots"),  # not a number
        ("DEFAULT_TEMPERATURE", "3"),  # outside [0, 2]
        ("DEFAULT_TEMPERATURE", "-0.5"),  # outside [0, 2]
        ("DEFAULT_MAX_TOKENS", "0"),  # a reply of no tokens
        ("MAX_HISTORY_MESSAGES", "1"),  # cannot hold a question and its answer
        ("OPENAI_BASE_URL", "localhost:11434"),  # no scheme
        ("OPENAI_BASE_URL", "ftp://example.com"),  # not http(s)
        ("OPENAI_BASE_URL", "http://"),  # no host
        ("HF_ROUTER_URL", "router.huggingface.co"),  # no scheme
        ("LLM_MODELS", " , ,"),  # only separators
        ("STREAM_INTERVAL_MS", "-5"),  # negative
        ("STREAM_INTERVAL_MS", "5001"),  # above 5 s
        ("TRUSTED_PROXIES", "11"),  # above 10
        ("MAX_REQUEST_BYTES", "16383"),  # below 16 KiB
        ("MAX_UPLOAD_BYTES", "1023"),  # below 1 KiB
        ("SESSION_CAPACITY", "9"),  # below 10
        ("SESSION_TTL_MINUTES", "0"),  # sessions gone at once
        ("SESSION_TTL_MINUTES", "10081"),  # above a week
        ("HISTORY_CONVERSATION_CHARS", "999"),  # below 1,000
        ("HISTORY_TOTAL_CHARS", "4000001"),  # above 4 million
        ("APP_AUTH", "admin"),  # no password
        ("APP_AUTH", "admin:pw,:pw2"),  # second entry has no user
        ("APP_AUTH", "admin:"),  # empty password
        ("APP_THEME_MODE", "blue"),  # not system, light or dark
        ("SIGN_IN", "maybe"),  # not auto, on or off
        ("ANONYMOUS_CHAT", "everyone"),  # not owner, local or signin
        ("GRADIO_MCP_SERVER", "perhaps"),  # not a flag
        ("GRADIO_SERVER_PORT", "65536"),  # above the last port
    )

    @pytest.mark.parametrize(("variable", "value"), BAD_VALUES)
    def test_malformed_value_names_the_variable(self, variable, value):
        """The error starts with the variable's name, so the owner knows what to fix."""
        with pytest.raises(ConfigError) as info:
            load_settings({variable: value})
        assert str(info.value).startswith(f"{variable}: ")
        assert info.value.variable == variable

    @pytest.mark.parametrize(
        ("env", "message"),
        [
            ({"LLM_TIMEOUT": "0"}, "LLM_TIMEOUT: must be between 0.1 and 3600, got '0'."),
            ({"LLM_MAX_RETRIES": "x"}, "LLM_MAX_RETRIES: expected a whole number, got 'x'."),
            ({"MAX_TOKENS_CAP": "0"}, "MAX_TOKENS_CAP: must be at least 1, got 0."),
            ({"LLM_BACKEND": "gpt"}, "LLM_BACKEND: must be one of auto, openai, local, got 'gpt'."),
            ({"GRADIO_MCP_SERVER": "x"}, "GRADIO_MCP_SERVER: expected true or false, got 'x'."),
        ],
    )
    def test_messages_say_what_is_allowed(self, env, message):
        """Each kind of malformed value gets its exact explanation."""
        with pytest.raises(ConfigError) as info:
            load_settings(env)
        assert str(info.value) == message

    def test_url_with_credentials_is_not_echoed(self):
        """A malformed URL may hold a password: the message does not repeat it."""
        with pytest.raises(ConfigError) as info:
            load_settings({"OPENAI_BASE_URL": "user:hunter2@host"})
        assert "hunter2" not in str(info.value)


class TestAcrossVariables:
    def test_default_above_cap_is_rejected(self):
        """A default the server would reject is the owner's mistake, caught at start-up."""
        with pytest.raises(ConfigError) as info:
            load_settings({"DEFAULT_MAX_TOKENS": "900", "MAX_TOKENS_CAP": "800"})
        assert info.value.variable == "DEFAULT_MAX_TOKENS"
        assert str(info.value) == "DEFAULT_MAX_TOKENS: must not exceed MAX_TOKENS_CAP (800), got 900."

    def test_default_equal_to_cap_is_accepted(self):
        """The cap itself is a valid default."""
        assert load_settings({"DEFAULT_MAX_TOKENS": "800", "MAX_TOKENS_CAP": "800"}).default_max_tokens == 800

    def test_system_prompt_longer_than_its_limit(self):
        """The default prompt must itself fit in MAX_SYSTEM_PROMPT_CHARS."""
        with pytest.raises(ConfigError) as info:
            load_settings({"SYSTEM_PROMPT": "x" * 11, "MAX_SYSTEM_PROMPT_CHARS": "10"})
        assert str(info.value) == "SYSTEM_PROMPT: is 11 characters; MAX_SYSTEM_PROMPT_CHARS allows 10."
        assert load_settings({"SYSTEM_PROMPT": "x" * 10, "MAX_SYSTEM_PROMPT_CHARS": "10"}).system_prompt == "x" * 10

    def test_llm_model_with_a_different_llm_models(self):
        """LLM_MODEL and LLM_MODELS together must agree on the default."""
        with pytest.raises(ConfigError) as info:
            load_settings({"LLM_MODEL": "a", "LLM_MODELS": "b,a"})
        assert info.value.variable == "LLM_MODEL"
        settings = load_settings({"LLM_MODEL": "a", "LLM_MODELS": "a,b"})
        assert (settings.llm_model, settings.llm_models) == ("a", ("a", "b"))

    def test_total_history_budget_below_one_conversation(self):
        """All conversations together cannot have less room than one."""
        with pytest.raises(ConfigError) as info:
            load_settings({"HISTORY_CONVERSATION_CHARS": "20000", "HISTORY_TOTAL_CHARS": "19999"})
        assert str(info.value) == (
            "HISTORY_TOTAL_CHARS: must be at least HISTORY_CONVERSATION_CHARS (20,000), got 19,999."
        )

    def test_request_must_fit_a_stored_conversation(self):
        """MAX_REQUEST_BYTES leaves room for 4 bytes per stored character plus 64 KiB."""
        env = {"HISTORY_CONVERSATION_CHARS": "1000"}
        assert load_settings({**env, "MAX_REQUEST_BYTES": "69536"}).max_request_bytes == 69_536
        with pytest.raises(ConfigError) as info:
            load_settings({**env, "MAX_REQUEST_BYTES": "69535"})
        assert info.value.variable == "MAX_REQUEST_BYTES"
        assert "must be at least 69,536" in str(info.value)

    def test_default_history_budget_fits_the_default_request_size(self):
        """The defaults together pass the rule of MAX_REQUEST_BYTES."""
        settings = Settings()
        assert settings.max_request_bytes >= 4 * settings.history_conversation_chars + 65_536


class TestStreamInterval:
    def test_default_depends_on_the_backend(self):
        """40 ms for a model server, 100 ms for the in-process model that shares the CPU."""
        settings = load_settings({})
        assert settings.stream_interval_for("openai") == 0.04
        assert settings.stream_interval_for("local") == 0.1

    def test_variable_applies_to_every_backend(self):
        """STREAM_INTERVAL_MS, in milliseconds, wins for all backends, 0 included."""
        settings = load_settings({"STREAM_INTERVAL_MS": "25"})
        assert settings.stream_interval_for("openai") == settings.stream_interval_for("local") == 0.025
        assert load_settings({"STREAM_INTERVAL_MS": "0"}).stream_interval_for("local") == 0.0


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
        assert "pw1" not in str(info.value)


class TestSecrets:
    ENV = {  # noqa: RUF012 - read only
        "OPENAI_API_KEY": "sk-secret-1",
        "HF_TOKEN": "hf_secret_2",
        "HISTORY_SECRET": "history-secret-3",
        "OAUTH_CLIENT_SECRET": "oauth-secret-4",
        "APP_AUTH": "u:pw-5,v:pw-6",
    }

    def test_repr_hides_secrets(self):
        """Logging the settings cannot leak a key, a token or a password."""
        settings = load_settings(self.ENV)
        text = repr(settings)
        for secret in ("sk-secret-1", "hf_secret_2", "history-secret-3", "oauth-secret-4", "pw-5", "pw-6"):
            assert secret not in text
        assert "llm_backend='auto'" in text

    def test_secrets_lists_every_value_in_use(self):
        """Every secret value, passwords included, in a fixed order, for the scrubber."""
        assert load_settings(self.ENV).secrets() == (
            "sk-secret-1",
            "hf_secret_2",
            "history-secret-3",
            "oauth-secret-4",
            "pw-5",
            "pw-6",
        )

    def test_no_secret_set_gives_none(self):
        """Unset secrets are not listed as empty values."""
        assert Settings().secrets() == ()
        assert load_settings({"HF_TOKEN": "hf_only"}).secrets() == ("hf_only",)


class TestToolServers:
    def test_defaults(self):
        """No MCP server; a call may take 30 s, a result 20,000 characters; tool lists are read every 5 minutes."""
        settings = Settings()
        assert (settings.mcp_servers, settings.mcp_headers) == ((), ())
        assert (settings.tool_timeout, settings.max_tool_result_chars, settings.mcp_refresh) == (30.0, 20_000, 300.0)

    def test_servers_named_or_named_after_their_host(self):
        """`name=url` keeps the name; a bare URL is named after its host (and port); blanks are skipped."""
        raw = " search=https://a.example/mcp ,, https://MCP.b-example.com:8443/mcp?key=k1234567 ,calc=http://c/mcp"
        assert load_settings({"MCP_SERVERS": raw}).mcp_servers == (
            ("search", "https://a.example/mcp"),
            ("mcp_b_example_com_8443", "https://MCP.b-example.com:8443/mcp?key=k1234567"),
            ("calc", "http://c/mcp"),
        )

    def test_headers_by_server(self):
        """MCP_HEADERS gives each named server its own headers, in the order written."""
        env = {
            "MCP_SERVERS": "search=https://a.example/mcp,calc=https://b.example/mcp",
            "MCP_HEADERS": '{"search": {"Authorization": "Bearer tok-123456", "X-Team": "blue"}}',
        }
        settings = load_settings(env)
        assert settings.mcp_headers == (("search", (("Authorization", "Bearer tok-123456"), ("X-Team", "blue"))),)

    BAD_SERVERS = (
        ("ftp://a.example/mcp", "entry 1 is not an http:// or https:// URL"),  # not HTTP
        ("a=https://x/mcp, b=/mcp", "entry 2 is not an http:// or https:// URL"),  # no host
        ("-a=https://x/mcp", "entry 1 is not an http:// or https:// URL"),  # a name must start with a letter or digit
        ("a=https://x/mcp,a=https://y/mcp", "two servers are named 'a'"),  # the same name twice
        ("https://x/mcp,https://x/other", "two servers are named 'x'"),  # two bare URLs of one host
        ("n" * 25 + "=https://x/mcp", "must be 1 to 24 letters"),  # too long for a tool name's prefix
        (" , ", "expected comma-separated URLs"),  # nothing but commas
    )

    @pytest.mark.parametrize(("raw", "message"), BAD_SERVERS)
    def test_malformed_servers(self, raw, message):
        """Each malformed list is refused at start-up, saying which entry and why."""
        with pytest.raises(ConfigError, match=r"^MCP_SERVERS: ") as info:
            load_settings({"MCP_SERVERS": raw})
        assert message in str(info.value)

    def test_url_credentials_are_refused_and_not_echoed(self):
        """user:password@ is refused (headers are the place for credentials), and the message repeats neither
        the password nor the URL."""
        with pytest.raises(ConfigError) as info:
            load_settings({"MCP_SERVERS": "s=https://ada:hunter22@x.example/mcp"})
        assert "put credentials in MCP_HEADERS" in str(info.value)
        assert "hunter22" not in str(info.value)
        assert "x.example" not in str(info.value)

    BAD_HEADERS = (
        ('{"s": {"X-Key": "v1"', "is not valid JSON at character 20"),  # cut short
        ('["s"]', "expected a JSON object"),  # not an object
        ('{"s": "Bearer v1"}', "the headers of 's' must be a JSON object of strings"),  # no header name
        ('{"s": {"X-Key": 12345678}}', "the headers of 's' must be a JSON object of strings"),  # not a string
        ('{"s": {"Host": "evil.example"}}', "'Host' (for 's') is not a header name that may be set"),  # reserved
        ('{"s": {"Mcp-Session-Id": "x"}}', "is not a header name that may be set"),  # the transport's own
        ('{"s": {"Bad Name": "x"}}', "is not a header name that may be set"),  # a space in the name
        ('{"s": {"X-Key": "v1\\r\\nX-Other: v2"}}', "printable ASCII on one line"),  # a forged second header
        ('{"other": {"X-Key": "v1"}}', "names 'other', which is not a server of MCP_SERVERS"),  # unknown server
        ("[" * 60_000, "is not valid JSON"),  # nested past the parser's depth
        ('{"s": {"X-Key": "' + "k" * 70_000 + '"}}', "is 70,020 characters; at most 65,536"),  # too long to parse
    )

    @pytest.mark.parametrize(("raw", "message"), BAD_HEADERS)
    def test_malformed_headers(self, raw, message):
        """Each malformed MCP_HEADERS is refused, naming the server and header, never a value."""
        with pytest.raises(ConfigError, match=r"^MCP_HEADERS: ") as info:
            load_settings({"MCP_SERVERS": "s=https://x/mcp", "MCP_HEADERS": raw})
        assert message in str(info.value)
        assert "v1" not in str(info.value)
        assert "v2" not in str(info.value)

    def test_headers_are_secrets_with_their_token(self):
        """The scrubber gets each header value, the token after `Bearer ` alone, and the servers' URLs with
        the values of their queries (a key may sit there)."""
        settings = load_settings(
            {
                "MCP_SERVERS": "s=https://x.example/mcp?api_key=qkey-123456",
                "MCP_HEADERS": '{"s": {"Authorization": "Bearer tok-123456", "X-Key": "raw-key-7890"}}',
            }
        )
        assert settings.secrets() == (
            "https://x.example/mcp?api_key=qkey-123456",
            "qkey-123456",
            "Bearer tok-123456",
            "tok-123456",
            "raw-key-7890",
            "raw-key-7890",
        )
        assert "tok-123456" not in repr(settings)
        assert "x.example" not in repr(settings)

    @pytest.mark.parametrize(
        ("env", "message"),
        [
            ({"TOOL_TIMEOUT": "0"}, "TOOL_TIMEOUT: must be between 0.1 and 600, got '0'."),
            ({"MAX_TOOL_RESULT_CHARS": "999"}, "MAX_TOOL_RESULT_CHARS: must be at least 1000 and at most 200000"),
            ({"MCP_REFRESH_MINUTES": "0"}, "MCP_REFRESH_MINUTES: must be at least 1 and at most 1440, got 0."),
        ],
    )
    def test_limits(self, env, message):
        """The tool limits are bounded."""
        with pytest.raises(ConfigError) as info:
            load_settings(env)
        assert str(info.value).startswith(message)
