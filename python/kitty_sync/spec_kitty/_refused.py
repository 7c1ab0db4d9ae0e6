"""`<home>/kitty-sync-refused.jsonl`: every event the spec-kitty transport could
not hand over (the daemon refused it, the queue was full, or nothing could
store it), one JSON line each with the daemon's message, so that nothing is
dropped silently. `kitty-sync status` counts its lines."""

from __future__ import annotations

import fcntl
import json
import os
from datetime import datetime, timezone
from typing import Any

from .._home import REFUSED_NAME


def path_in(home: str) -> str:
    return os.path.join(home, REFUSED_NAME)


def record(home: str, event: Any, error: dict[str, Any], producer: str) -> str:
    """Appends one line; returns the file's path. Raises OSError when it cannot."""
    line = json.dumps(
        {
            "at": datetime.now(timezone.utc).isoformat(),
            "producer": producer,
            "error": error,
            "event": event,
        },
        ensure_ascii=False,
        default=repr,
        separators=(",", ":"),
    )
    try:
        os.mkdir(home, 0o700)
    except FileExistsError:
        pass
    path = path_in(home)
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o600)
    try:
        # Two CLI processes may refuse events at the same moment: whole lines only.
        fcntl.flock(fd, fcntl.LOCK_EX)
        data = (line + "\n").encode("utf-8")
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    return path
