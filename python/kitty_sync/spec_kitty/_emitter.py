"""spec-kitty's own event emitter (`specify_cli.sync.emitter.EventEmitter`,
2.x and 3.x), routed to the daemon.

The CLI keeps building and checking its envelopes; what changes is who owns
the clock and the queue. `_emit` is wrapped: the emitter's LamportClock is
swapped for a `DaemonClock` that issues nothing and writes nothing (so the CLI
no longer ticks clock.json), the envelope the CLI built is handed to the daemon
as a draft, and the daemon's event_id and lamport_clock are written back into
the dict the CLI gets, which is its own contract (it still gets an envelope).

2.x's `get_emitter()` also starts the CLI's own sync runtime and opens
queue.db; it is replaced by one that builds the emitter with a `DaemonQueue`
and no runtime.
"""

from __future__ import annotations

import threading
from typing import Any


class DaemonClock:
    """Stands in for the CLI's LamportClock: the daemon issues the values.
    `tick()` returns a provisional 0, replaced by the daemon's value once the
    event is queued; nothing is saved."""

    def __init__(self, node_id: str) -> None:
        self.value = 0
        self.node_id = node_id

    def tick(self) -> int:
        return 0

    def receive(self, remote_clock: int) -> int:
        # Remote events reach the daemon's clock through its uplink.
        return 0

    def save(self) -> None:
        pass


class DaemonQueue:
    """Stands in for 2.x's OfflineQueue (queue.db): the event is handed to the
    daemon by the `_emit` wrapper right after the CLI 'queues' it here."""

    def queue_event(self, event: dict[str, Any]) -> bool:
        return True

    def size(self) -> int:
        from .. import Client

        status = Client().status()
        try:
            return int(status["queue"]["depth"]) if status else 0
        except (KeyError, TypeError, ValueError):
            return 0


def use_daemon_clock(emitter: Any) -> None:
    clock = getattr(emitter, "clock", None)
    if isinstance(clock, DaemonClock):
        return
    node_id = getattr(clock, "node_id", None)
    if not isinstance(node_id, str) or not node_id:
        node_id = _node_id()
    emitter.clock = DaemonClock(node_id)


def _node_id() -> str:
    import getpass
    import hashlib
    import socket

    raw = f"{socket.gethostname()}:{getpass.getuser()}"
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def legacy_emitter(events: Any) -> Any:
    """2.x's singleton emitter (`specify_cli.sync.events._emitter`), built the
    way its own get_emitter builds it (identity first) but without the sync
    runtime, and with the daemon as clock and queue."""
    if events._emitter is None:
        with _legacy_lock(events):
            if events._emitter is None:
                _ensure_identity()
                from specify_cli.sync.emitter import EventEmitter

                events._emitter = EventEmitter(clock=DaemonClock(_node_id()), queue=DaemonQueue())
    return events._emitter


_fallback_lock = threading.Lock()


def _legacy_lock(events: Any) -> Any:
    lock = getattr(events, "_lock", None)
    return lock if lock is not None else _fallback_lock


def _ensure_identity() -> None:
    # What 2.x's get_emitter does before building the emitter.
    import logging

    try:
        from specify_cli.sync.project_identity import ensure_identity
        from specify_cli.tasks_support import TaskCliError, find_repo_root

        try:
            ensure_identity(find_repo_root())
        except TaskCliError:
            pass
    except Exception as e:
        logging.getLogger(__name__).warning(f"Could not ensure identity: {e}")
