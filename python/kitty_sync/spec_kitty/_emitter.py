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
from collections.abc import Callable
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


def legacy_get_emitter(events: Any) -> Callable[[], Any]:
    """A `get_emitter` for 2.x's `specify_cli.sync.events`: the same singleton
    and identity set-up, without the sync runtime, with the daemon as clock
    and queue."""
    lock = getattr(events, "_lock", None) or threading.Lock()

    def get_emitter() -> Any:
        if events._emitter is None:
            with lock:
                if events._emitter is None:
                    _ensure_identity()
                    from specify_cli.sync.emitter import EventEmitter

                    events._emitter = EventEmitter(clock=DaemonClock(_node_id()), queue=DaemonQueue())
        return events._emitter

    get_emitter.__doc__ = "The singleton EventEmitter, with kitty-syncd as its clock and queue."
    return get_emitter


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
