"""Tests for services/signin.py: whether "Sign in with Hugging Face" can be offered at this start, and why not."""

from __future__ import annotations

import logging

import pytest

from services.config import Settings
from services.errors import ConfigError
from services.signin import MIN_SECRET_CHARS, SignInDecision, decide_sign_in

pytestmark = pytest.mark.unit

LONG_SECRET = "s" * MIN_SECRET_CHARS
NO_HOOK = "add `hf_oauth: true` to the Space's README front-matter, then restart it."
SHORT_SECRET = (
    "off Spaces, set OAUTH_CLIENT_SECRET to 32 or more random characters: Gradio signs the sign-in cookie with it, "
    "and without it anyone could forge one."
)
NO_TOKEN = "the local sign-in uses your own Hugging Face account: log in with `hf auth login` or set HF_TOKEN."


class Hub:
    """A stand-in for huggingface_hub's get_token and whoami, recording what was asked."""

    def __init__(self, token: str | None = "hf_dev_token", error: Exception | None = None) -> None:
        self.token = token
        self.error = error
        self.asked: list[str] = []

    def get_token(self) -> str | None:
        self.asked.append("get_token")
        return self.token

    def whoami(self, *, token: str) -> dict[str, str]:
        self.asked.append(f"whoami {token}")
        if self.error is not None:
            raise self.error
        return {"name": "ada"}


def decide(settings: Settings, hub: Hub, env: dict[str, str] | None = None) -> SignInDecision:
    """decide_sign_in with everything outside the process replaced; a Space (SPACE_ID) sets SYSTEM=spaces too."""
    env = dict(env or {})
    if settings.space_id:
        env.setdefault("SYSTEM", "spaces")
    return decide_sign_in(settings, env=env, get_token=hub.get_token, whoami=hub.whoami)


class TestOff:
    def test_off_is_never_offered(self):
        """SIGN_IN=off decides without looking at anything else, even on a Space with a client."""
        hub = Hub()
        settings = Settings(sign_in="off", space_id="ada/chat", oauth_client_secret=LONG_SECRET)
        assert decide(settings, hub, {"OAUTH_CLIENT_ID": "id"}) == SignInDecision(False, "SIGN_IN is off.")
        assert hub.asked == []

    def test_off_with_signin_only_chat_stops_start_up(self):
        """ANONYMOUS_CHAT=signin needs sign-in: with SIGN_IN=off that is a configuration error."""
        with pytest.raises(ConfigError) as info:
            decide(Settings(sign_in="off", anonymous_chat="signin"), Hub())
        assert info.value.variable == "ANONYMOUS_CHAT"
        assert str(info.value) == ("ANONYMOUS_CHAT: is 'signin', but sign-in cannot be offered here: SIGN_IN is off.")


class TestOnASpace:
    def test_space_id_alone_is_not_a_space_to_gradio(self):
        """SPACE_ID without SYSTEM=spaces: Gradio mocks the login there, so the rules off Spaces apply."""
        settings = Settings(space_id="ada/chat", oauth_client_secret="set-by-spaces")
        assert decide(settings, Hub(), {"OAUTH_CLIENT_ID": "client-id", "SYSTEM": ""}) == SignInDecision(
            False, SHORT_SECRET
        )

    def test_with_the_oauth_client(self):
        """A Space with `hf_oauth: true` has its OAuth client: sign-in is offered, without asking the Hub."""
        hub = Hub()
        settings = Settings(space_id="ada/chat", oauth_client_secret="set-by-spaces")
        assert decide(settings, hub, {"OAUTH_CLIENT_ID": "client-id"}) == SignInDecision(True, "")
        assert hub.asked == []

    @pytest.mark.parametrize(
        ("env", "secret"),
        [
            ({}, "set-by-spaces"),  # no client id
            ({"OAUTH_CLIENT_ID": ""}, "set-by-spaces"),  # an empty client id
            ({"OAUTH_CLIENT_ID": "client-id"}, None),  # no client secret
        ],
    )
    def test_without_the_oauth_client(self, env, secret):
        """Without OAUTH_CLIENT_ID and its secret, the owner is told what to add to the front-matter."""
        settings = Settings(space_id="ada/chat", oauth_client_secret=secret)
        assert decide(settings, Hub(), env) == SignInDecision(False, NO_HOOK)

    def test_a_short_secret_is_fine_on_a_space(self):
        """On a Space the secret is the platform's: its length is not checked."""
        settings = Settings(space_id="ada/chat", oauth_client_secret="x")
        assert decide(settings, Hub(), {"OAUTH_CLIENT_ID": "client-id"}).offered is True


class TestOffSpaces:
    @pytest.mark.parametrize(
        "secret",
        [
            None,  # unset: Gradio would sign the cookie with a fixed, public string
            "",  # empty
            "s" * (MIN_SECRET_CHARS - 1),  # one character short
        ],
    )
    def test_a_missing_or_short_secret(self, secret):
        """Off Spaces, sign-in needs a long OAUTH_CLIENT_SECRET; the Hub is not asked."""
        hub = Hub()
        assert decide(Settings(oauth_client_secret=secret), hub) == SignInDecision(False, SHORT_SECRET)
        assert hub.asked == []

    def test_a_long_secret_and_a_working_token(self):
        """With a long secret and a token the Hub accepts, the mocked local sign-in is offered."""
        hub = Hub()
        assert decide(Settings(oauth_client_secret=LONG_SECRET), hub) == SignInDecision(True, "")
        assert hub.asked == ["get_token", "whoami hf_dev_token"]

    @pytest.mark.parametrize(
        "token",
        [
            None,  # not logged in
            "",  # an empty HF_TOKEN
        ],
    )
    def test_no_token(self, token):
        """Without the developer's own token the local sign-in cannot start; whoami is not called."""
        hub = Hub(token=token)
        assert decide(Settings(oauth_client_secret=LONG_SECRET), hub) == SignInDecision(False, NO_TOKEN)
        assert hub.asked == ["get_token"]

    @pytest.mark.parametrize(
        "error",
        [
            ConnectionError("offline"),  # the Hub out of reach
            PermissionError("401"),  # a token the Hub refuses
            RuntimeError("?"),  # anything else huggingface_hub raises
        ],
    )
    def test_whoami_failing(self, error):
        """A token the Hub does not accept, or a Hub out of reach, gives the reason by the error's type only."""
        decision = decide(Settings(oauth_client_secret=LONG_SECRET), Hub(error=error))
        assert decision == SignInDecision(
            False,
            f"the local sign-in could not check your Hugging Face token with the Hub ({type(error).__name__}).",
        )


class TestInsisted:
    def test_sign_in_on_raises_when_not_offered(self):
        """SIGN_IN=on stops start-up with the reason it cannot be offered."""
        with pytest.raises(ConfigError) as info:
            decide(Settings(sign_in="on"), Hub())
        assert info.value.variable == "SIGN_IN"
        assert str(info.value) == f"SIGN_IN: is on, but sign-in cannot be offered here: {SHORT_SECRET}"

    def test_sign_in_on_on_a_space_without_the_hook(self):
        """On a Space, SIGN_IN=on without `hf_oauth: true` says to add it."""
        with pytest.raises(ConfigError) as info:
            decide(Settings(sign_in="on", space_id="ada/chat"), Hub())
        assert str(info.value) == f"SIGN_IN: is on, but sign-in cannot be offered here: {NO_HOOK}"

    def test_signin_only_chat_raises_when_not_offered(self):
        """ANONYMOUS_CHAT=signin with sign-in impossible stops start-up, naming ANONYMOUS_CHAT."""
        with pytest.raises(ConfigError) as info:
            decide(Settings(anonymous_chat="signin", oauth_client_secret=LONG_SECRET), Hub(token=None))
        assert info.value.variable == "ANONYMOUS_CHAT"
        assert str(info.value) == f"ANONYMOUS_CHAT: is 'signin', but sign-in cannot be offered here: {NO_TOKEN}"

    @pytest.mark.parametrize(("sign_in", "anonymous"), [("on", "owner"), ("auto", "signin"), ("on", "signin")])
    def test_insisting_is_fine_when_offered(self, sign_in, anonymous):
        """When sign-in can be offered, insisting on it changes nothing."""
        settings = Settings(sign_in=sign_in, anonymous_chat=anonymous, oauth_client_secret=LONG_SECRET)
        assert decide(settings, Hub()) == SignInDecision(True, "")

    def test_auto_only_logs_why_not(self, caplog):
        """SIGN_IN=auto that cannot offer sign-in starts anyway, and says why in the log."""
        with caplog.at_level(logging.INFO, logger="services.signin"):
            assert decide(Settings(), Hub()) == SignInDecision(False, SHORT_SECRET)
        assert [record.getMessage() for record in caplog.records] == [
            f"Sign in with Hugging Face is not offered: {SHORT_SECRET}"
        ]
