"""Tests for services/redact.py: secrets masked in every form servers echo them in, in texts and in log lines."""

from __future__ import annotations

import base64
import itertools
import logging
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from services.redact import MASK, MIN_SECRET_LENGTH, Scrubber, install_log_redaction, shorten

pytestmark = pytest.mark.unit

SECRET = "hunter2-Xyzzy"  # not credential-shaped: only the known-secret rules can mask it


@pytest.fixture
def restore_factory():
    """Put back the log record factory a test replaced."""
    factory = logging.getLogRecordFactory()
    yield
    logging.setLogRecordFactory(factory)


def masked_base64(encoded: str, start: int, length: int) -> str:
    """`encoded` (base64 of bytes holding a secret of `length` bytes at byte `start`) as it should come out.

    Every character made only of the secret's bits is replaced by the mask; those it shares with its neighbours
    are kept, since they depend on the surroundings too.
    """
    first = -(-8 * start // 6)  # the first character wholly inside the secret
    last = 8 * (start + length) // 6  # the character after the last wholly inside
    return encoded[:first] + MASK + encoded[last:]


class TestKnownSecrets:
    def test_exact(self):
        """The secret as it is, anywhere in the text."""
        scrubber = Scrubber([SECRET])
        assert scrubber.scrub(f"key={SECRET}; again {SECRET}.") == "key=***; again ***."

    @pytest.mark.parametrize("form", [SECRET.upper(), SECRET.lower(), SECRET.swapcase()])
    def test_any_case(self, form):
        """A server that upper- or lower-cases what it echoes does not unmask it."""
        assert Scrubber([SECRET]).scrub(f"got {form}") == "got ***"

    def test_url_encoded(self):
        """Percent-encoded, with %20 or + for a space, in either case of hex digits."""
        secret = "p@ss w/rd+1"
        scrubber = Scrubber([secret])
        assert quote(secret, safe="") == "p%40ss%20w%2Frd%2B1"
        assert scrubber.scrub("u=p%40ss%20w%2Frd%2B1&x") == "u=***&x"
        assert scrubber.scrub("u=p%40ss+w%2Frd%2B1&x") == "u=***&x"
        assert scrubber.scrub(f"u={quote_plus(secret).lower()}&x") == "u=***&x"

    def test_hex(self):
        """Hex-encoded, in either case."""
        secret = "abc-123"
        encoded = secret.encode().hex()
        scrubber = Scrubber([secret])
        assert scrubber.scrub(f"dump {encoded} end") == "dump *** end"
        assert scrubber.scrub(f"dump {encoded.upper()} end") == "dump *** end"

    def test_regex_characters_are_literal(self):
        """A secret with regex metacharacters is matched as text, not as a pattern."""
        scrubber = Scrubber(["pa$$.w0rd*"])
        assert scrubber.scrub("pa$$.w0rd* and paXX.w0rd") == "*** and paXX.w0rd"

    def test_a_secret_inside_another_is_masked_whole(self):
        """The longest form is tried first, so no tail of a longer secret is left showing."""
        scrubber = Scrubber(["abcdefgh", "abcdefgh-ijkl"])
        assert scrubber.scrub("x abcdefgh-ijkl y abcdefgh z") == "x *** y *** z"

    def test_short_values_are_left_alone(self):
        """A 'secret' shorter than MIN_SECRET_LENGTH would mask ordinary words; it is no real credential anyway."""
        short = "a" * (MIN_SECRET_LENGTH - 1)
        assert Scrubber([short, ""]).scrub(f"{short} abc") == f"{short} abc"
        assert Scrubber(["a" * MIN_SECRET_LENGTH]).scrub("aaaaaa.") == "***."

    def test_no_secrets(self):
        """A scrubber with nothing to hide leaves ordinary text alone."""
        assert Scrubber([]).scrub("nothing here") == "nothing here"
        assert Scrubber([]).scrub_known("nothing here") == "nothing here"


class TestBase64:
    @pytest.mark.parametrize("prefix", ["", "u", "us", "usr", "user:", "a-much-longer-prefix:"])
    @pytest.mark.parametrize("suffix", ["", "x", "xy", "xyz", "@host"])
    def test_at_every_byte_alignment(self, prefix, suffix):
        """In base64 of a longer value, every character made only of the secret's bits goes, at any alignment."""
        encoded = base64.b64encode(f"{prefix}{SECRET}{suffix}".encode()).decode()
        expected = masked_base64(encoded, len(prefix), len(SECRET))
        assert Scrubber([SECRET]).scrub_known(f"Basic {encoded}") == f"Basic {expected}"

    @pytest.mark.parametrize("prefix", ["", "u", "us"])
    def test_shortest_secret_at_every_byte_alignment(self, prefix):
        """A secret of exactly MIN_SECRET_LENGTH is masked in base64 at every alignment too."""
        secret = "hunter"
        assert len(secret) == MIN_SECRET_LENGTH
        encoded = base64.b64encode(f"{prefix}{secret}".encode()).decode()
        assert Scrubber([secret]).scrub_known(encoded) == masked_base64(encoded, len(prefix), len(secret))

    @pytest.mark.parametrize("user", ["ada", "admin", "bob-the-builder"])
    def test_basic_auth_header(self, user):
        """An `Authorization: Basic` header of `user:password` does not show the password, whatever the user."""
        password = "correct horse battery staple"
        encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
        scrubber = Scrubber([password])
        expected = masked_base64(encoded, len(user) + 1, len(password))
        assert scrubber.scrub_known(f"Authorization: Basic {encoded}") == f"Authorization: Basic {expected}"

    def test_url_safe_alphabet(self):
        """Base64 in the URL-safe alphabet (- and _ for + and /) is masked as well."""
        secret = "~~~???>>>~~~"
        standard = base64.b64encode(secret.encode()).decode()
        url_safe = base64.urlsafe_b64encode(secret.encode()).decode()
        assert standard != url_safe  # the secret's encoding does use + or /
        scrubber = Scrubber([secret])
        assert scrubber.scrub_known(f"t={standard}") == "t=***"
        assert scrubber.scrub_known(f"t={url_safe}") == "t=***"


class TestCredentialShaped:
    CASES = (
        "sk-proj-abcdefgh12345678",  # an OpenAI key
        "hf_AbCdEfGhIjKlMnOpQrStUv",  # a Hugging Face token
        "gsk_0123456789abcdef",  # a Groq key
        "xai-abcdefgh12345678",  # an xAI key
        "0123456789abcdef0123456789abcdef01234567",  # 40 hex characters
        "QWxhZGRpbjpvcGVuIHNlc2FtZSBhbmQgbW9yZQ==",  # a long run of base64, padding included
    )

    @pytest.mark.parametrize("credential", CASES)
    def test_masked_without_being_known(self, credential):
        """Anything shaped like an API key or token is masked even when the app does not hold it."""
        assert Scrubber([]).scrub(f"invalid key '{credential}' given") == "invalid key '***' given"

    @pytest.mark.parametrize("credential", CASES)
    def test_left_in_log_lines(self, credential):
        """scrub_known masks only the app's own secrets: ids and hashes in log lines stay readable."""
        assert Scrubber([]).scrub_known(f"id {credential}") == f"id {credential}"

    ORDINARY = (
        "The model HuggingFaceTB/SmolLM2-360M-Instruct is not available (HTTP 404).",  # a model id
        "meta-llama/Llama-3.1-8B-Instruct and openai/gpt-oss-20b:fastest",  # more model ids
        "Error code: 429 - {'error': {'message': 'Rate limit reached', 'type': 'requests'}}",  # an error body
        "Pneumonoultramicroscopicsilicovolcanoconiosis is one long word",  # long, but no digit
        "https://router.huggingface.co/v1/chat/completions",  # a URL
        "sk-short and hf_tiny",  # prefixes without a key's length
    )

    @pytest.mark.parametrize("text", ORDINARY)
    def test_ordinary_text_is_untouched(self, text):
        """Model ids, error bodies, URLs and words come through as they are."""
        assert Scrubber([SECRET]).scrub(text) == text


class TestExtraSecrets:
    def test_a_visitor_token_is_masked_only_in_its_own_text(self):
        """A token given with one text is masked there, in every form, and is not remembered for the next."""
        scrubber = Scrubber([])
        token = "visitor-token-1"
        assert scrubber.scrub(f"t {token}", token) == "t ***"
        assert scrubber.scrub_known(f"t {token.upper()}", token) == "t ***"
        assert scrubber.scrub(f"t {token}") == f"t {token}"

    def test_with_the_known_ones(self):
        """The app's own secrets and the extra one are both masked."""
        assert Scrubber(["outer-secret"]).scrub("outer-secret inner-secret", "inner-secret") == "*** ***"

    def test_short_or_missing_values_are_ignored(self):
        """None, empty and too-short values add nothing."""
        assert Scrubber([]).scrub("abc def", None, "", "abc") == "abc def"


def _forms_of(secret: str) -> list[str]:
    """The forms of `secret` a server echoes, as TestKnownSecrets and TestBase64 check them."""
    return [
        secret,
        secret.upper(),
        quote(secret, safe=""),
        secret.encode().hex(),
        base64.b64encode(secret.encode()).decode(),
        base64.b64encode(f"user:{secret}".encode()).decode(),
    ]


def _streamed(scrubber: Scrubber, text: str, cuts: list[int], *extra: str) -> list[str]:
    """`text` cut at `cuts` and fed piece by piece: what each piece shows, and the flush at the end last."""
    bounds = sorted({0, len(text), *(min(cut, len(text)) for cut in cuts)})
    masker = scrubber.masker(*extra)
    return [masker.feed(text[a:b]) for a, b in itertools.pairwise(bounds)] + [masker.flush()]


class TestStreamMasker:
    @given(
        st.text(max_size=30),
        st.sampled_from(_forms_of(SECRET)),
        st.text(max_size=30),
        st.lists(st.integers(min_value=0, max_value=120), max_size=8),
    )
    @example("hunter2-Xy", _forms_of(SECRET)[0], "", [3, 14])  # a false start of the secret right before it
    def test_however_it_is_cut_the_whole_text_is_masked_as_one(self, before, form, after, cuts):
        """Pieces shown one after another never hold any part of the secret beyond what it shares with the
        surroundings, and together they are exactly the whole text masked at once."""
        scrubber = Scrubber([SECRET])
        text = f"{before}{form}{after}"
        shown = _streamed(scrubber, text, cuts)
        assert "".join(shown) == scrubber.scrub_known(text)
        assert SECRET.lower() not in "".join(shown).lower()

    @pytest.mark.parametrize(
        ("secrets", "text", "cuts"),
        [
            # Letters outside ASCII that the regex's (?i) matches with ASCII ones, or with other letters.
            (["sk-abcdef1234567890"], "here: \u017fk-abcdef1234567890 ok", [7]),
            (["key1234567890"], "here: \u212aey1234567890 ok", [7]),
            (["Épassword123"], "here: épassword123 ok", [7]),
            (["admin-İpsum42"], "here: admin-ipsum42 ok", [13]),
            # One secret inside another, and one that holds the mask's own character.
            (["abcdefghij", "cdefgh"], "x abcdefghij y", [10]),
            (["**abc123", "zzzzzz"], "zzzzzzabc123", [6]),
            # A secret that begins its own URL-encoded form.
            (["2bB22%"], "x 2bB22%251B y", [8]),
        ],
    )
    def test_cuts_that_once_let_a_secret_through(self, secrets, text, cuts):
        scrubber = Scrubber(secrets)
        assert "".join(_streamed(scrubber, text, cuts)) == scrubber.scrub_known(text)
        assert MASK in scrubber.scrub_known(text)

    def test_a_visitors_token_is_masked_too(self):
        token = "visitor-Tok3n-42"
        shown = _streamed(Scrubber([SECRET]), f"a {token} and {SECRET} b", [5, 12, 20], token)
        assert "".join(shown) == "a *** and *** b"

    def test_what_cannot_begin_a_secret_is_shown_at_once(self):
        """Only an end that could begin a form is held; it shows with the next piece, or at the flush."""
        scrubber = Scrubber([SECRET])
        assert _streamed(scrubber, "one two three", [4, 8]) == ["one ", "two ", "three", ""]
        assert _streamed(scrubber, "say hun", [4]) == ["say ", "", "hun"]
        assert _streamed(scrubber, "say hunt and", [4, 8]) == ["say ", "", "hunt and", ""]

    def test_with_no_secret_nothing_is_held(self):
        masker = Scrubber([]).masker()
        assert [masker.feed("h"), masker.feed("unter2"), masker.flush()] == ["h", "unter2", ""]


class TestLogRedaction:
    def test_messages_args_and_tracebacks_are_masked(self, restore_factory, caplog):
        """Message, %-args and exception text of any logger are masked."""
        install_log_redaction(Scrubber(["sk-canary-42"]))
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
        assert caplog.records[0].getMessage() == "calling with key ***"

    def test_other_messages_keep_their_args(self, restore_factory, caplog):
        """A record with nothing to mask is left as it was made."""
        install_log_redaction(Scrubber(["sk-canary-42"]))
        with caplog.at_level(logging.INFO):
            logging.getLogger("x").info("hello %s", "world")
        record = caplog.records[0]
        assert (record.msg, record.args) == ("hello %s", ("world",))

    def test_installing_again_replaces_the_last(self, restore_factory, caplog):
        """A second install masks with the new scrubber only, not through a chain of both."""
        install_log_redaction(Scrubber(["first-secret"]))
        install_log_redaction(Scrubber(["second-secret"]))
        with caplog.at_level(logging.INFO):
            logging.getLogger("x").info("first-secret second-secret")
        assert caplog.records[0].getMessage() == "first-secret ***"


class TestShorten:
    def test_one_line(self):
        """White space, newlines included, collapses to single spaces."""
        assert shorten("  a\n\n b\tc  ") == "a b c"

    def test_the_limit_itself_fits(self):
        """A text of exactly `limit` characters is kept whole."""
        assert shorten("x" * 200) == "x" * 200

    def test_longer_text_ends_with_an_ellipsis(self):
        """Past the limit, the text is cut to `limit` characters, the last one an ellipsis."""
        assert shorten("x" * 201) == "x" * 199 + "…"
        assert shorten("word " * 10, 12) == "word word w…"
        assert shorten("word " * 10, 11) == "word word…"  # no space left before the ellipsis
        assert len(shorten("y" * 10_000, 50)) == 50
