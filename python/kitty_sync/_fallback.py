"""When the daemon does not answer: hand the event to the installed
`kitty-sync` binary, which queues it by the daemon's own rules (directly in
queue.db under clock.lock when no daemon runs, in the spool when a hung daemon
still owns the clock). Re-implementing the clock rules in Python would make a
second owner of the Lamport clock; the binary is the same code the daemon uses.

Only when the binary is missing or fails does Python write the spool entry
itself (`<home>/spool/<ULID>.json`, the format the daemon imports), so the
event is still not lost.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone

from ._errors import InvalidEvent, NotDurable, QueueFull

BIN_ENV = "KITTY_SYNC_BIN"
BINARY = "kitty-sync"
# kitty-sync's exit statuses (sysexits.h), as documented in README.md.
_EX_DATAERR = 65
_EX_TEMPFAIL = 75
# The binary's own bound is about a second; past this it is hung, not slow.
_BINARY_GRACE = 2.0


def find_binary(explicit: str | None = None) -> str | None:
    """`explicit`, else $KITTY_SYNC_BIN, else the kitty-sync installed next to
    this Python (the wheel's scripts), else the one on PATH."""
    if explicit:
        return explicit
    from_env = os.environ.get(BIN_ENV)
    if from_env:
        return from_env
    candidates = [os.path.join(os.path.dirname(sys.executable), BINARY)]
    try:
        import sysconfig

        scripts = sysconfig.get_path("scripts")
        if scripts:
            candidates.append(os.path.join(scripts, BINARY))
    except Exception:  # pragma: no cover - sysconfig is always there in CPython
        pass
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return shutil.which(BINARY)


class BinaryResult:
    __slots__ = ("duplicate", "event_id", "lamport_clock", "path", "warning")

    def __init__(self, event_id: str, lamport_clock: int | None, path: str, duplicate: bool, warning: str) -> None:
        self.event_id = event_id
        self.lamport_clock = lamport_clock
        self.path = path
        self.duplicate = duplicate
        self.warning = warning


def with_binary(
    binary: str,
    event_text: str,
    why: str,
    home: str,
    socket: str,
) -> BinaryResult:
    """Runs `kitty-sync emit --envelope - --json --skip-daemon WHY`.

    Raises InvalidEvent / QueueFull as the binary reports them, and
    RuntimeError for anything else (missing, crashed, hung, unreadable)."""
    env = dict(os.environ)
    env["SPEC_KITTY_HOME"] = home
    env["KITTY_SYNCD_SOCKET"] = socket
    try:
        done = subprocess.run(
            [binary, "emit", "--envelope", "-", "--json", "--skip-daemon", why],
            input=event_text.encode("utf-8"),
            capture_output=True,
            env=env,
            timeout=_BINARY_GRACE,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{binary} did not finish within {_BINARY_GRACE}s") from None
    except OSError as e:
        raise RuntimeError(f"cannot run {binary}: {e}") from None
    stderr = done.stderr.decode("utf-8", "replace").strip()
    if done.returncode == _EX_DATAERR:
        raise _invalid_from_stderr(stderr)
    if done.returncode == _EX_TEMPFAIL:
        raise QueueFull(_last_line(stderr) or "the queue is full")
    if done.returncode != 0:
        raise RuntimeError(f"{binary} exited {done.returncode}: {_last_line(stderr)}")
    try:
        out = json.loads(done.stdout)
        return BinaryResult(
            event_id=str(out["event_id"]),
            lamport_clock=out.get("lamport_clock"),
            path=str(out["path"]),
            duplicate=bool(out.get("duplicate", False)),
            warning=stderr,
        )
    except (ValueError, KeyError, TypeError) as e:
        raise RuntimeError(f"{binary} printed an unreadable answer ({e}): {done.stdout[:200]!r}") from None


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _invalid_from_stderr(stderr: str) -> InvalidEvent:
    # kitty-sync prints: "kitty-sync: invalid event: MSG", then "  field: F" and "  rule:  R".
    message, field, rule = stderr, None, None
    for line in stderr.splitlines():
        s = line.strip()
        if s.startswith("kitty-sync: invalid event:"):
            message = s.split(":", 2)[2].strip()
        elif s.startswith("field:"):
            field = s[len("field:") :].strip()
        elif s.startswith("rule:"):
            rule = s[len("rule:") :].strip()
        elif s.startswith("kitty-sync: error:"):
            message = s.split(":", 2)[2].strip()
    return InvalidEvent(message or "invalid event", field=field, rule=rule)


def spool(home: str, event_id: str, event_text: str) -> str:
    """Writes a spool entry in the format the daemon imports and returns its
    path: `<home>/spool/<fresh ULID>.json` (the name never comes from the
    event), 0600, written under a temporary name and published with a hard
    link, so it never replaces another entry and never follows a symlink."""
    from ._ulid import new_ulid

    spool_dir = os.path.join(home, "spool")
    for d in (home, spool_dir):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            pass
    made_at = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    entry = '{"made_at":' + json.dumps(made_at) + ',"event":' + event_text + "}"
    # `.<name>.tmp`: what the daemon's intake treats as a write in progress.
    tmp = os.path.join(spool_dir, f".{event_id}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(entry.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        while True:
            final = os.path.join(spool_dir, f"{new_ulid()}.json")
            try:
                os.link(tmp, final)
                break
            except FileExistsError:
                continue
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    try:
        dfd = os.open(spool_dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return final


def not_durable(why: str, binary_error: str | None, spool_error: str) -> NotDurable:
    parts = [why]
    if binary_error:
        parts.append(f"kitty-sync: {binary_error}")
    parts.append(f"spool: {spool_error}")
    return NotDurable("the event could not be stored: " + "; ".join(parts))
