"""The spec-kitty transport: every event the spec-kitty CLI produces is handed
to kitty-syncd, stamped by the daemon's clock and delivered by its uplink.

The start-up hook (`_kitty_sync_hook`) attaches to the CLI's modules and
calls in here when an event arrives:

- `specify_cli.status.adapters` (3.x, 4.0): the handlers of the three fan-out
  seams (status, lifecycle, resolved binding) call `on_status`,
  `on_lifecycle`, `on_resolved_binding`.
- `specify_cli.sync.emitter` (2.x, 3.x): the emitter's `_emit` goes through
  `emit_through_daemon` (see `_emitter`).
- `specify_cli.sync.events` (2.x): `get_emitter` builds a daemon-backed
  emitter instead of starting the CLI's own sync (`_emitter.legacy_emitter`).

A handler never raises into the CLI and never takes longer than the client's
bound (about a second). Anything the daemon refuses is appended to
`<home>/kitty-sync-refused.jsonl` with the daemon's message.

When the CLI's own SaaS sync is switched on (3.x with
SPEC_KITTY_ENABLE_SAAS_SYNC), the CLI delivers its events itself and this
transport stands aside, so that no event is sent twice.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping
from typing import Any

from .._client import Client, Emitted
from .._errors import InvalidEvent, NotDurable, QueueFull
from .._ulid import is_ulid, new_ulid
from . import _drafts, _emitter, _identity, _refused

_client: Client | None = None
_client_lock = threading.Lock()


def client() -> Client:
    global _client
    with _client_lock:
        if _client is None:
            _client = Client()
        return _client


# -- what the handlers do ------------------------------------------------------


def guarded(handler: Any, kwargs: Mapping[str, Any]) -> None:
    """Runs a seam handler; whatever goes wrong is a warning, never the CLI's problem."""
    try:
        handler(kwargs)
    except Exception as e:
        _warn(f"cannot hand an event to kitty-syncd: {e!r}")


def cli_owns_sync() -> bool:
    """3.x's own SaaS sync is armed: it registers its own handlers and delivers."""
    try:
        from specify_cli.core.saas_sync_config import sync_active
    except ImportError:
        return False
    try:
        return bool(sync_active())
    except Exception:
        return False


def on_status(kwargs: Mapping[str, Any]) -> None:
    if cli_owns_sync():
        return
    draft = _drafts.from_status(kwargs)
    root = kwargs.get("repo_root")
    _identity.fill_project(draft, _identity.repo_root_of(root if root is not None else _cwd()))
    hand_over(draft)


def on_lifecycle(kwargs: Mapping[str, Any]) -> None:
    if cli_owns_sync():
        return
    envelope = kwargs.get("envelope")
    if not isinstance(envelope, Mapping):
        return
    draft = _drafts.from_envelope(envelope)
    _identity.fill_project(draft, _identity.repo_root_of(kwargs.get("log_path") or _cwd()))
    hand_over(draft)


def on_resolved_binding(kwargs: Mapping[str, Any]) -> None:
    if cli_owns_sync():
        return
    draft = _drafts.from_resolved_binding(kwargs)
    root = kwargs.get("repo_root")
    _identity.fill_project(draft, _identity.repo_root_of(root if root is not None else _cwd()))
    hand_over(draft)


def emit_through_daemon(original: Any, emitter: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if cli_owns_sync():
        return original(emitter, *args, **kwargs)
    try:
        _emitter.use_daemon_clock(emitter)
    except Exception as e:  # the CLI's own clock then ticks; its command goes on
        _warn(f"cannot give the CLI's emitter the daemon's clock: {e!r}")
    event = original(emitter, *args, **kwargs)
    if not isinstance(event, dict):
        return event
    try:
        emitted = hand_over(_drafts.from_envelope(event))
        if emitted is not None:
            event["event_id"] = emitted.event_id
            if emitted.lamport_clock is not None:
                event["lamport_clock"] = emitted.lamport_clock
    except Exception as e:  # never into the CLI
        _warn(f"cannot hand {event.get('event_type')} to kitty-syncd: {e!r}")
    return event


def hand_over(draft: dict[str, Any]) -> Emitted | None:
    """Emits the draft; on a refusal, records it in the side file. Never raises."""
    c = client()
    if not is_ulid(draft.get("event_id")):
        # Fixed before the first try, so that the side file names the same id.
        draft["event_id"] = new_ulid()
    try:
        return c.emit_draft(draft)
    except (InvalidEvent, QueueFull, NotDurable) as e:
        error = e.to_dict()
        message = e.message
    except Exception as e:  # a bug of ours must not cost the CLI its command
        error = {"error": "transport_error", "message": repr(e)}
        message = repr(e)
    try:
        where = _refused.record(c.home, draft, error, _producer())
    except Exception as e:
        _warn(f"{draft.get('event_type')} was not queued ({message}), and it cannot be recorded: {e!r}")
        return None
    _warn(f"{draft.get('event_type')} {draft.get('event_id', '')} was not queued: {message}; kept in {where}")
    return None


def _cwd() -> str | None:
    import os

    try:
        return os.getcwd()
    except OSError:
        return None


def _producer() -> str:
    try:
        from importlib.metadata import version

        return f"spec-kitty-cli {version('spec-kitty-cli')}"
    except Exception:
        return "spec-kitty-cli"


def _warn(message: str) -> None:
    try:
        sys.stderr.write(f"kitty-sync: warning: {message}\n")
    except Exception:
        pass
