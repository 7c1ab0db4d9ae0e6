"""What the spec-kitty CLI hands over, turned into the drafts the daemon
stamps (docs/DRAFTS.md). Pure functions: no I/O.

Identity is kept: the CLI's own event_id (a ULID) stays the event's id, the
producer's time becomes `occurred_at` (the envelope's timestamp), the
canonical status event's ULID is the causation id, and mission_slug,
mission_id, project_uuid and project_slug are carried. What the daemon issues
itself (lamport_clock, node_id, team_slug) is left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._ulid import is_ulid

# Envelope fields a draft carries over unchanged when they are set.
ENVELOPE_FIELDS = (
    "event_id",
    "event_type",
    "aggregate_id",
    "aggregate_type",
    "payload",
    "causation_id",
    "correlation_id",
    "project_uuid",
    "project_slug",
    "schema_version",
    "build_id",
    "git_branch",
    "head_commit_sha",
    "repo_slug",
)
# Draft fields that must be ULIDs when present; anything else there is dropped
# (the daemon would refuse the whole event for it).
_ULID_FIELDS = ("event_id", "causation_id")

# The WPStatusChanged payload of spec-kitty-events' StatusTransitionPayload
# (what 3.2.7's own emitter sends), plus mission_id.
_STATUS_METADATA = ("force", "reason", "review_ref", "execution_mode", "evidence")


def from_envelope(envelope: Mapping[str, Any]) -> dict[str, Any]:
    """A draft from an envelope the CLI built (its lifecycle events, or what
    its emitter assembled): the CLI's fields, without the daemon's."""
    # The CLI writes "" for what it does not know (3.x: an unknown build_id);
    # a draft leaves such a field out.
    draft = {k: envelope[k] for k in ENVELOPE_FIELDS if envelope.get(k) not in (None, "")}
    for k in _ULID_FIELDS:
        if k in draft and not is_ulid(draft[k]):
            del draft[k]
    timestamp = envelope.get("timestamp")
    if isinstance(timestamp, str) and timestamp:
        draft["occurred_at"] = timestamp
    if isinstance(draft.get("payload"), Mapping):
        draft["payload"] = dict(draft["payload"])
    return draft


def from_status(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """A WPStatusChanged draft from one call of the status seam (4.0's
    `fire_saas_fanout`, 3.2.7's as well): `wp_id, from_lane, to_lane, actor,
    mission_slug, mission_id, metadata` (WPStatusChangeMetadata)."""
    metadata = kwargs.get("metadata")

    def meta(name: str) -> Any:
        if metadata is None:
            return kwargs.get(name)
        if isinstance(metadata, Mapping):
            return metadata.get(name)
        return getattr(metadata, name, None)

    wp_id = kwargs.get("wp_id")
    payload: dict[str, Any] = {
        "wp_id": wp_id,
        "from_lane": _text(kwargs.get("from_lane")),
        "to_lane": _text(kwargs.get("to_lane")),
        "actor": _actor(kwargs.get("actor")),
        "mission_slug": kwargs.get("mission_slug"),
        "mission_id": kwargs.get("mission_id"),
    }
    for name in _STATUS_METADATA:
        payload[name] = meta(name)
    if payload["force"] is None:
        payload["force"] = False
    draft: dict[str, Any] = {
        "event_type": "WPStatusChanged",
        "aggregate_id": wp_id,
        "aggregate_type": "WorkPackage",
        "payload": {k: v for k, v in payload.items() if v is not None},
    }
    causation = meta("causation_id")
    if is_ulid(causation):
        draft["causation_id"] = causation
    occurred_at = meta("occurred_at")
    if isinstance(occurred_at, str) and occurred_at:
        draft["occurred_at"] = occurred_at
    return draft


def from_resolved_binding(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """A WPResolvedBindingChanged draft from the resolved-binding seam. No
    CLI fires it yet (it waits for a spec-kitty-events release); the payload
    is every JSON value the CLI passes, as it passes it."""
    payload = {k: v for k, v in kwargs.items() if k not in ("repo_root", "metadata") and _is_json(v)}
    return {
        "event_type": "WPResolvedBindingChanged",
        "aggregate_id": kwargs.get("wp_id"),
        "aggregate_type": "WorkPackage",
        "payload": payload,
    }


def _text(value: Any) -> Any:
    # Lanes are str enums in the CLI; str() of a StrEnum is its value.
    return None if value is None else str(value)


def _actor(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    return str(value)


def _is_json(value: Any) -> bool:
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_json(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False
