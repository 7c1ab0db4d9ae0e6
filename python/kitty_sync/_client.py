"""`Client`: hands events to kitty-syncd over its socket, with the promises of
`kitty-sync emit`: durable before it returns, about a second at most whatever
the daemon does, and never losing the event (when the daemon does not answer
it is queued by the installed `kitty-sync` binary, or spooled)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import _fallback, _home, _wire
from ._errors import InvalidEvent, QueueFull
from ._ulid import is_ulid, new_ulid

# As the Rust client: the daemon gets 600 ms, the whole emit aims at under 1 s.
DAEMON_TIMEOUT = 0.6
# What the daemon's socket API accepts in one request body.
MAX_BODY_BYTES = 1024 * 1024
_STATUS_TIMEOUT = 1.0


@dataclass(frozen=True)
class Emitted:
    """A durable event: `path` is "daemon" (the daemon committed it),
    "direct" (no daemon ran; queued in queue.db by kitty-sync's rules) or
    "spool" (a daemon runs but did not answer; it stamps it when it recovers,
    so `lamport_clock` is None)."""

    event_id: str
    lamport_clock: int | None
    path: str
    duplicate: bool = False


def _print_warning(message: str) -> None:
    print(f"kitty-sync: warning: {message}", file=sys.stderr)


class Client:
    """A client of the kitty-syncd of `home` (default: the rules of
    `kitty-sync`: $SPEC_KITTY_HOME, else ~/.spec-kitty; the socket
    $KITTY_SYNCD_SOCKET, else <home>/kitty-syncd.sock).

    `warn` receives one line whenever an event took another way than the
    daemon (default: printed on stderr, as kitty-sync does)."""

    def __init__(
        self,
        home: str | None = None,
        socket_path: str | None = None,
        *,
        daemon_timeout: float = DAEMON_TIMEOUT,
        kitty_sync_bin: str | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.home = home or _home.home_dir()
        self.socket_path = socket_path or _home.socket_path(self.home)
        self.daemon_timeout = daemon_timeout
        self._binary = kitty_sync_bin
        self._warn = warn or _print_warning

    # -- emitting ---------------------------------------------------------

    def emit(
        self,
        event_type: str,
        aggregate_id: str | None = None,
        payload: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> Emitted:
        """Emits a draft: the daemon stamps it (event_id when absent,
        lamport_clock, node_id, timestamp, team_slug). `fields` are the other
        draft fields (aggregate_type, causation_id, project_uuid,
        project_slug, event_id, occurred_at, correlation_id, ...); None values
        are left out."""
        draft: dict[str, Any] = {"event_type": event_type, "payload": payload}
        if aggregate_id is not None:
            draft["aggregate_id"] = aggregate_id
        for key, value in fields.items():
            if value is not None:
                draft[key] = value
        return self.emit_draft(draft)

    def emit_draft(self, draft: Mapping[str, Any]) -> Emitted:
        """Emits a draft given as one mapping. It gets an event_id here when it
        has none, before the first try, so that retries leave one row."""
        obj = _as_object(draft, "draft")
        if "lamport_clock" in obj:
            raise InvalidEvent(
                "a draft has no lamport_clock: the daemon stamps it (use emit_envelope to relay an envelope)",
                field="lamport_clock",
                rule="is not a draft field",
            )
        _check_draft(obj)
        if obj.get("event_id") is None:
            obj["event_id"] = new_ulid()
        return self._send(obj)

    def emit_envelope(self, envelope: Mapping[str, Any]) -> Emitted:
        """Relays a complete envelope (one carrying lamport_clock) unchanged:
        the daemon validates it, stores it byte for byte and moves its clock
        past the envelope's."""
        obj = _as_object(envelope, "envelope")
        if "lamport_clock" not in obj:
            raise InvalidEvent(
                "an envelope carries lamport_clock (use emit for a draft)",
                field="lamport_clock",
                rule="is required in an envelope",
            )
        if not is_ulid(obj.get("event_id")):
            raise InvalidEvent("the envelope's event_id must be a ULID", field="event_id", rule="must be a ULID")
        return self._send(obj)

    def _send(self, obj: dict[str, Any]) -> Emitted:
        text = _to_json(obj)
        event_id = str(obj["event_id"])
        try:
            answer = _wire.call(self.socket_path, "POST", "/v1/events", text.encode("utf-8"), self.daemon_timeout)
        except _wire.Unreachable as e:
            if e.foreign:
                self._warn(f"{e}; not sent there")
            return self._fall_back(text, event_id, str(e))
        if answer.status == 202:
            accepted = _accepted(answer.body)
            if accepted is not None and accepted.event_id == event_id:
                return accepted
            why = "the daemon's 202 answer is unreadable or names another event"
        elif answer.status in (400, 413, 422):
            raise _invalid(answer)
        elif answer.status == 507:
            raise QueueFull(_error_message(answer))
        else:
            why = f"the daemon answered {answer.status}: {_error_message(answer)}"
        return self._fall_back(text, event_id, why)

    def _fall_back(self, text: str, event_id: str, why: str) -> Emitted:
        binary = _fallback.find_binary(self._binary)
        binary_error: str | None = None
        if binary is None:
            binary_error = "not installed (not next to this Python, not on PATH; set KITTY_SYNC_BIN)"
        else:
            try:
                r = _fallback.with_binary(binary, text, why, self.home, self.socket_path)
            except RuntimeError as e:
                binary_error = str(e)
            else:
                if r.warning:
                    for line in r.warning.splitlines():
                        self._warn(line.removeprefix("kitty-sync: warning: "))
                return Emitted(r.event_id, r.lamport_clock, r.path, r.duplicate)
        try:
            _fallback.spool(self.home, event_id, text)
        except OSError as e:
            raise _fallback.not_durable(why, binary_error, str(e)) from None
        self._warn(f"{why}; kitty-sync {binary_error}; spooled {event_id} for the daemon to queue")
        return Emitted(event_id, None, "spool", False)

    # -- looking at the daemon ---------------------------------------------

    def health(self) -> dict[str, Any] | None:
        """`GET /v1/health` of our daemon, or None when none answers."""
        return self._get("/v1/health")

    def status(self) -> dict[str, Any] | None:
        """`GET /v1/status` (what `kitty-sync status --json` prints), or None
        when no daemon answers."""
        return self._get("/v1/status")

    def _get(self, target: str) -> dict[str, Any] | None:
        try:
            answer = _wire.call(self.socket_path, "GET", target, None, _STATUS_TIMEOUT)
        except _wire.Unreachable:
            return None
        if answer.status != 200:
            return None
        try:
            value = json.loads(answer.body)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


def _as_object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidEvent(
            f"the {what} must be a mapping, not {type(value).__name__}", field="event", rule="must be a JSON object"
        )
    for key in value:
        if not isinstance(key, str):
            raise InvalidEvent(
                f"the {what} has a key that is not a string: {key!r}", field="event", rule="keys must be strings"
            )
    return dict(value)


def _check_draft(obj: Mapping[str, Any]) -> None:
    event_type = obj.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        raise InvalidEvent(
            "event_type must be a non-empty string", field="event_type", rule="must be a non-empty string"
        )
    payload = obj.get("payload")
    if payload is None:
        raise InvalidEvent("payload is required", field="payload", rule="is required")
    if not isinstance(payload, Mapping):
        raise InvalidEvent(
            f"payload must be a mapping, not {type(payload).__name__}", field="payload", rule="must be a JSON object"
        )
    event_id = obj.get("event_id")
    if event_id is not None and not is_ulid(event_id):
        raise InvalidEvent("event_id must be null or a ULID", field="event_id", rule="must be null or a ULID")


def _to_json(obj: Mapping[str, Any]) -> str:
    try:
        text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as e:
        raise InvalidEvent(
            f"the event is not JSON: {e}", field="event", rule="must be JSON", code="invalid_json"
        ) from None
    size = len(text.encode("utf-8"))
    if size > MAX_BODY_BYTES:
        raise InvalidEvent(
            f"the event is {size} bytes; the limit is {MAX_BODY_BYTES}",
            field="event",
            rule=f"at most {MAX_BODY_BYTES} bytes",
            code="payload_too_large",
        )
    return text


def _json_body(answer: _wire.Answer) -> dict[str, Any] | None:
    try:
        value = json.loads(answer.body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _error_message(answer: _wire.Answer) -> str:
    body = _json_body(answer)
    if body is not None and isinstance(body.get("message"), str):
        return str(body["message"])
    return answer.body[:200].decode("utf-8", "replace")


def _invalid(answer: _wire.Answer) -> InvalidEvent:
    body = _json_body(answer) or {}

    def text(key: str) -> str | None:
        v = body.get(key)
        return v if isinstance(v, str) else None

    index = body.get("index")
    return InvalidEvent(
        text("message") or f"the daemon refused the event ({answer.status})",
        field=text("field"),
        rule=text("rule"),
        code=text("error") or "invalid_event",
        index=index if isinstance(index, int) and not isinstance(index, bool) else None,
        status=answer.status,
    )


def _accepted(body: bytes) -> Emitted | None:
    """The daemon's 202, or None when it is not the shape the daemon gives."""
    try:
        value = json.loads(body)
        first = value["events"][0]
        event_id = first["event_id"]
        lamport = first["lamport_clock"]
        duplicate = first.get("duplicate", False)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None
    if not is_ulid(event_id) or not isinstance(lamport, int) or isinstance(lamport, bool) or lamport < 0:
        return None
    return Emitted(event_id, lamport, "daemon", bool(duplicate))
