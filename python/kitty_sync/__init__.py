"""kitty_sync: hand spec-kitty events to kitty-syncd from Python.

    from kitty_sync import Client
    Client().emit("WPStatusChanged", "WP01",
                  {"wp_id": "WP01", "from_lane": "planned", "to_lane": "claimed"})

`Client.emit` returns once the event is durable (an `Emitted`), within about
a second whatever the daemon does. It raises `InvalidEvent` (with the
daemon's field and rule) and `QueueFull`; `NotDurable` only when no way of
storing the event worked. `kitty_sync.spec_kitty` is the transport that the
package's `.pth` hook installs into the spec-kitty CLI.
"""

from ._client import DAEMON_TIMEOUT, Client, Emitted
from ._errors import InvalidEvent, KittySyncError, NotDurable, QueueFull

__all__ = [
    "DAEMON_TIMEOUT",
    "Client",
    "Emitted",
    "InvalidEvent",
    "KittySyncError",
    "NotDurable",
    "QueueFull",
]
