"""Keeps secrets out of everything a person or a log sees, in the forms servers echo them back.

A model server's error text can quote the request that failed: the key exactly, but also base64-encoded (an
`Authorization: Basic` header), URL-encoded, or upper-cased. `Scrubber` masks each secret the app holds in all of
those forms, and anything else shaped like a credential, in every upstream text shown to a user and in every
log record. A signed-in visitor's token is masked too, in every text about that visitor's request. A reply that
streams in (`StreamMasker`) is masked of the secrets the app holds before any piece of it is shown.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

__all__ = ["MASK", "Scrubber", "StreamMasker", "install_log_redaction", "shorten"]

MASK = "***"
# Shorter values would mask ordinary words in log lines ("abc"), and no real key or password is that short.
MIN_SECRET_LENGTH = 6
# Folds a text as the regex's (?i) compares it with ASCII, keeping its length (positions in it are positions in
# the original): ASCII letters to lower case, and the four other letters (?i) matches to an ASCII one: the long
# s (U+017F), the Kelvin sign (U+212A), the dotless i (U+0131) and the capital I with a dot (U+0130).
_FOLD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ\u017f\u212a\u0131\u0130", "abcdefghijklmnopqrstuvwxyzskii")
# Anything shaped like a credential the app does not know of: API keys and tokens of the usual providers, and long
# runs of base64/hex alphabet (a key in an encoding not listed above).
# A key with a provider's prefix (sk-, hf_, ...) and a long random part with a digit in it; or a long run of the
# base64/hex alphabet with digits and letters. Model ids ("Qwen/Qwen3-235B-A22B-Instruct-2507-FP8") are made of
# short hyphenated parts, and stay.
_CREDENTIAL_SHAPED = re.compile(
    r"\b(?:sk|hf|pk|rk|gsk|xai|api|key|tok)[-_](?:[A-Za-z0-9]+[-_])*[A-Za-z0-9]{16,}[A-Za-z0-9_\-]*"
    r"|(?<![A-Za-z0-9+/_\-])(?=[A-Za-z0-9+/]*\d)(?=[A-Za-z0-9+/]*[A-Za-z])[A-Za-z0-9+/]{32,}={0,2}(?![A-Za-z0-9_\-])",
    re.IGNORECASE,
)


def _base64_forms(secret: bytes) -> set[str]:
    """The part of any base64 text that encodes `secret`, at each of the three byte alignments it can have.

    Inside a longer encoded string (a `user:password` header), the secret's own characters are only stable from
    the first whole 3-byte group it starts, to the last one it ends: that middle is what is searched for.
    """
    forms: set[str] = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + secret).decode()
        # Characters touched by the padding bytes before, or by whatever follows, vary with the surroundings.
        start, stop = (offset * 4 + 2) // 3, (4 * (offset + len(secret))) // 3
        middle = encoded[start:stop]
        if len(middle) >= MIN_SECRET_LENGTH:
            forms.add(middle)
            forms.add(middle.replace("+", "-").replace("/", "_"))  # the URL-safe alphabet
    return forms


def _forms(secret: str) -> tuple[set[str], set[str]]:
    """(forms matched in any case, forms matched exactly) of one secret."""
    raw = secret.encode()
    any_case = {secret, quote(secret, safe=""), quote_plus(secret), binascii.hexlify(raw).decode()}
    return {form for form in any_case if form}, _base64_forms(raw)


def _pattern(any_case: set[str], exact: set[str]) -> re.Pattern[str] | None:
    """One regex for all the forms, or None when there is nothing to mask."""
    if not any_case and not exact:
        return None
    # Longest first, so that a secret inside another's encoding is masked whole.
    alternatives = [f"(?i:{re.escape(form)})" for form in sorted(any_case, key=len, reverse=True)]
    alternatives += [re.escape(form) for form in sorted(exact, key=len, reverse=True)]
    return re.compile("|".join(alternatives))


class Scrubber:
    """Masks a fixed set of secrets in text, in every form above, plus those given for one text (`extra`)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = tuple(dict.fromkeys(s for s in secrets if len(s) >= MIN_SECRET_LENGTH))
        self._forms = self._all_forms(self._secrets)
        self._pattern = _pattern(*self._forms)

    @staticmethod
    def _all_forms(secrets: Iterable[str]) -> tuple[set[str], set[str]]:
        any_case: set[str] = set()
        exact: set[str] = set()
        for secret in secrets:
            loose, strict = _forms(secret)
            any_case |= loose
            exact |= strict
        return any_case, exact

    @classmethod
    def _compile(cls, secrets: Iterable[str]) -> re.Pattern[str] | None:
        return _pattern(*cls._all_forms(secrets))

    def scrub(self, text: str, *extra: str | None) -> str:
        """`text` with every secret (and `extra`, a visitor's token), in every form, and anything
        credential-shaped replaced by ***: for upstream text shown to a person."""
        return _CREDENTIAL_SHAPED.sub(MASK, self.scrub_known(text, *extra))

    def scrub_known(self, text: str, *extra: str | None) -> str:
        """Only the secrets the app holds, and `extra`: for log lines, where ids and hashes must stay readable."""
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        more = [s for s in extra if s and len(s) >= MIN_SECRET_LENGTH]
        if more and (pattern := self._compile(more)) is not None:
            text = pattern.sub(MASK, text)
        return text

    def masker(self, *extra: str | None) -> StreamMasker:
        """A `StreamMasker` for one streamed text, of the app's secrets and `extra` (the request's own token)."""
        any_case, exact = self._all_forms(s for s in extra if s and len(s) >= MIN_SECRET_LENGTH)
        return StreamMasker(self._forms[0] | any_case, self._forms[1] | exact)


class StreamMasker:
    """Masks secrets in a text that arrives in pieces, without ever showing the start of one before it is whole.

    Only the known secrets, not credential-shaped text: a reply may rightly hold hashes and base64. A piece's end
    that could begin a secret is held back, unmasked, until the next piece says whether it does; the rest is
    masked and passes at once, so an ordinary reply streams exactly as it came. What is shown is what masking the
    whole text at once would show. The work a piece costs is bounded by the piece and the longest form, never the
    reply so far.
    """

    def __init__(self, any_case: set[str], exact: set[str]) -> None:
        forms = [(form.translate(_FOLD), True) for form in any_case] + [(form, False) for form in exact]
        self._forms = sorted(forms, key=lambda item: len(item[0]), reverse=True)
        self._longest = len(self._forms[0][0]) if self._forms else 0
        self._pattern = _pattern(any_case, exact)
        self._held = ""

    def feed(self, piece: str) -> str:
        """What of the text so far can be shown now, masked."""
        if self._pattern is None or not (piece or self._held):
            return piece
        text = self._held + piece
        cut = self._unsure_from(text)
        for match in self._pattern.finditer(text):  # the matches masking the whole text would make, here
            if match.start() < cut < match.end():
                cut = match.start()  # a whole secret across the cut: held whole, so it is masked whole
                break
            if match.start() >= cut:
                break
        self._held = text[cut:]
        return self._pattern.sub(MASK, text[:cut])

    def flush(self) -> str:
        """The rest, masked, at the end of the text."""
        rest, self._held = self._held, ""
        return self._pattern.sub(MASK, rest) if self._pattern is not None else rest

    def _unsure_from(self, text: str) -> int:
        """Where the longest end of `text` that could begin some secret's form starts (len(text) if none does)."""
        start = max(0, len(text) - self._longest + 1)
        tail = text[start:]
        folded = tail.translate(_FOLD)
        best = len(tail)
        for form, any_case in self._forms:
            hay = folded if any_case else tail
            first = max(0, len(hay) - len(form) + 1)
            if any_case and not form.isascii():
                # (?i) matches some letters outside ASCII with others (e acute with E acute): any such letter of
                # the form could be matched by a letter here, so each position is tried with those as wildcards.
                at = next((i for i in range(first, best) if _loosely_begins(form, hay[i:])), -1)
                best = at if at != -1 else best
                continue
            at = hay.find(form[0], first)
            while at != -1 and at < best:
                if form.startswith(hay[at:]):
                    best = at
                    break
                at = hay.find(form[0], at + 1)
        return start + best


def _loosely_begins(form: str, text: str) -> bool:
    """Whether `text` could be how `form` begins, a non-ASCII letter of the form standing for any character."""
    return len(text) < len(form) and all(a == b or not a.isascii() for a, b in zip(form, text, strict=False))


def shorten(text: str, limit: int = 200) -> str:
    """One line of at most `limit` characters: what an upstream detail may take in a message."""
    line = " ".join(text[: limit * 20].split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def install_log_redaction(scrubber: Scrubber) -> None:
    """Mask secrets in every log record created from now on, message and traceback alike.

    A record factory, rather than a handler filter, because uvicorn and Gradio add handlers of their own after
    start-up; every record of every logger is made by the factory. Installing again replaces the last one.
    """
    base = getattr(logging.getLogRecordFactory(), "_unredacted", logging.getLogRecordFactory())

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        message = record.getMessage()
        masked = scrubber.scrub_known(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info:
            record.exc_text = scrubber.scrub_known(logging.Formatter().formatException(record.exc_info))
        return record

    factory._unredacted = base  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
