"""What `Client.emit` raises. Everything else that can go wrong (no daemon, a
hung or lying daemon, a stranger on the socket) is handled inside: the event is
queued another way and the call returns."""

from __future__ import annotations


class KittySyncError(Exception):
    """Base class of the errors kitty_sync raises."""


class InvalidEvent(KittySyncError, ValueError):
    """The event breaks a rule; nothing was stored and the clock did not move.

    `field` and `rule` are the daemon's (or, for checks made before sending,
    the same wording); `code` is the socket API's error code
    (`invalid_event`, `invalid_json`, `payload_too_large`); `status` is the
    HTTP status the daemon answered, or None when the event was refused before
    it was sent.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        rule: str | None = None,
        code: str = "invalid_event",
        index: int | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.rule = rule
        self.code = code
        self.index = index
        self.status = status

    def to_dict(self) -> dict[str, object]:
        return {
            "error": self.code,
            "message": self.message,
            "field": self.field,
            "rule": self.rule,
            "index": self.index,
            "status": self.status,
        }


class QueueFull(KittySyncError):
    """The queue holds `[sync] max_queue_size` events: this one was refused."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, object]:
        return {"error": "queue_full", "message": self.message}


class NotDurable(KittySyncError):
    """No way to store the event worked: the daemon did not take it, and
    neither the direct write nor the spool could (an unwritable home, a full
    disk). The message names each failure."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, object]:
        return {"error": "not_durable", "message": self.message}
