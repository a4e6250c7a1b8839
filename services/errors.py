"""Contains all errors raised by the services.

Every error is a `ServiceError`, and its text is written for the person using the Space: it says what went
wrong and what to change, and never carries a secret. `ui.errors` shows that text with `gr.Error`; anything that
is not a `ServiceError` is a bug and reaches the user as Gradio's generic error.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "AttachmentError",
    "BackendAuthError",
    "BackendError",
    "BackendNotConfiguredError",
    "BackendRateLimitError",
    "BackendRequestError",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "BudgetExceededError",
    "ConfigError",
    "ConversationError",
    "RateLimitedError",
    "ReplyOverrunError",
    "ReplyTimeoutError",
    "ServiceError",
    "SignInRequiredError",
    "SnapshotError",
    "StoredConversationError",
    "StreamInterruptedError",
    "ValidationError",
    "ZeroGPUError",
    "ZeroGPUReason",
]


class ServiceError(Exception):
    """Root of the errors whose message is safe and useful to show to a user."""


# CONFIGURATION AND INPUT ERRORS


class ConfigError(ServiceError, ValueError):
    """Raised when an environment variable is malformed; the message names the variable."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


class ValidationError(ServiceError, ValueError):
    """Raised when a request's input is out of range; the message names the field and the allowed range."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class ConversationError(ValidationError):
    """Raised when a conversation from a client (an API history, a stored or imported chat) is not one the app
    could have produced: wrong shape, unknown fields, too many messages or characters."""


class AttachmentError(ValidationError):
    """Raised when an uploaded file is refused: its kind, size or content, or the time it takes to read. The
    message is one sentence that names the file and says what to do; `name` is the file's name as shown."""

    def __init__(self, name: str, message: str) -> None:
        # The sentence names the file itself, so it goes out without ValidationError's "field: " prefix.
        ServiceError.__init__(self, message)
        self.field = "files"
        self.name = name


class StoredConversationError(ServiceError):
    """Raised when a conversation kept in the browser fails its signature: tampered with, or signed with another
    HISTORY_SECRET."""


class SnapshotError(ServiceError):
    """Raised when what a browser sends of its saved chats is not the shape the page's script sends."""


class SignInRequiredError(ServiceError, PermissionError):
    """Raised when a visitor who has not signed in asks for a chat that only signed-in visitors get."""


class RateLimitedError(ServiceError):
    """Raised when a caller sends more chat messages than the configured rate allows; `retry_after` in seconds."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BudgetExceededError(RateLimitedError):
    """Raised when a chat on the owner's account would go past a daily token budget; `budget` says which one
    ("owner" or "address") and `retry_after` when it resets, in seconds."""

    def __init__(self, message: str, *, budget: str, retry_after: float) -> None:
        super().__init__(message, retry_after=retry_after)
        self.budget = budget


# BACKEND ERRORS


class BackendError(ServiceError):
    """Raised when the language model backend fails; `status_code` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class BackendNotConfiguredError(BackendError):
    """Raised when no backend can answer: nothing is configured and the local model cannot run."""


class BackendAuthError(BackendError, PermissionError):
    """Raised when the backend rejects the credentials (HTTP 401 or 403)."""


class BackendRateLimitError(BackendError):
    """Raised when the backend answers HTTP 429 after the client's own retries."""


class BackendRequestError(BackendError, ValueError):
    """Raised when the backend refuses the request itself (HTTP 400, 404, 422): retrying will not help."""


class BackendUnavailableError(BackendError, ConnectionError):
    """Raised when the backend cannot be reached or fails on its side (connection refused, HTTP 5xx)."""


class BackendTimeoutError(BackendError, TimeoutError):
    """Raised when the backend does not answer within the configured timeout."""


# What ZeroGPU refused or lost: its daily quota, its queue, a task that outran its lease or whose worker
# failed, a lease longer than it allows at once, or its own client failing.
ZeroGPUReason = Literal["quota", "busy", "aborted", "too_long", "failed"]


class ZeroGPUError(BackendUnavailableError):
    """Raised when ZeroGPU refuses a local reply or stops it midway; the message is one sentence for the visitor.

    `reason` says what happened, `retry_after` the seconds until the quota comes back when ZeroGPU said so, and
    `sign_in_helps` whether signing in to Hugging Face (or PRO) would give more quota or a better place in the
    queue, for a page that words its own advice.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: ZeroGPUReason,
        retry_after: float | None = None,
        sign_in_helps: bool = False,
    ) -> None:
        super().__init__(message)
        self.reason: ZeroGPUReason = reason
        self.retry_after = retry_after
        self.sign_in_helps = sign_in_helps


class StreamInterruptedError(BackendError):
    """Raised when a reply stops mid-stream; `partial` keeps the text that did arrive."""

    def __init__(self, message: str, *, partial: str = "") -> None:
        super().__init__(message)
        self.partial = partial


class ReplyTimeoutError(StreamInterruptedError, TimeoutError):
    """Raised when a reply runs past its deadline (REPLY_TIMEOUT), however steadily it streams."""


class ReplyOverrunError(StreamInterruptedError):
    """Raised when a reply is clearly longer than the max_tokens it was asked for: the server ignores the limit."""
