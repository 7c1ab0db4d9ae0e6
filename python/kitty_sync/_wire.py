"""HTTP/1.1 to the daemon over its Unix socket, within a deadline, and only to
a peer that runs as our own user.

Anything but a complete, well-formed answer from our own daemon in time is
`Unreachable`: the caller then queues the event another way. A peer of
another uid is treated like no daemon (SO_PEERCRED, LOCAL_PEERCRED on macOS):
someone who managed to bind the socket path must not receive the events.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import sys
import time

# An answer larger than this is not one the daemon gives (its largest is a
# queue view of 10,000 events): stop reading instead of filling memory.
MAX_ANSWER_BYTES = 64 * 1024 * 1024
_HEAD_LIMIT = 64 * 1024

_NOT_LISTENING = {
    errno.ENOENT,
    errno.ECONNREFUSED,
    errno.ENOTSOCK,
    errno.ENOTDIR,
    errno.EACCES,
    errno.EPERM,
    errno.ENAMETOOLONG,
    errno.EINVAL,
}


class Unreachable(Exception):
    """No usable answer. `running` is False when nothing listens at all (no
    socket, a stale one), True when something listens but did not answer
    well (hung, garbage, a foreign peer). `foreign` is True when the listener
    runs as another user: a sign of an attack, which the caller reports every
    time rather than in the hourly delivery warning."""

    def __init__(self, message: str, *, running: bool, foreign: bool = False) -> None:
        super().__init__(message)
        self.running = running
        self.foreign = foreign


class Answer:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a connected Unix socket."""
    if hasattr(socket, "SO_PEERCRED"):
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", raw)
        return int(uid)
    if sys.platform == "darwin":
        # struct xucred { u_int cr_version; uid_t cr_uid; short cr_ngroups; gid_t cr_groups[16]; }
        sol_local, local_peercred = 0, 0x001
        raw = sock.getsockopt(sol_local, local_peercred, 76)
        _version, uid = struct.unpack_from("=II", raw)
        return int(uid)
    raise OSError(errno.ENOSYS, "no way to learn the socket peer's uid on this system")


def call(
    path: str,
    method: str,
    target: str,
    body: bytes | None,
    timeout: float,
) -> Answer:
    """One request on a fresh connection, read to its end within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(max(timeout, 0.001))
        try:
            sock.connect(path)
        except TimeoutError:
            raise Unreachable(f"the daemon at {path} did not accept within {timeout:.1f}s", running=True) from None
        except OSError as e:
            if e.errno in _NOT_LISTENING or isinstance(e, (FileNotFoundError, ConnectionRefusedError)):
                raise Unreachable(f"no daemon listens on {path} ({e.strerror or e})", running=False) from None
            raise Unreachable(f"cannot connect to {path}: {e}", running=False) from None
        try:
            uid = peer_uid(sock)
        except OSError as e:
            raise Unreachable(f"cannot check who listens on {path}: {e}", running=True) from None
        if uid != os.geteuid():
            raise Unreachable(
                f"the process listening on {path} runs as uid {uid}, not as us (uid {os.geteuid()}): "
                "it is not our daemon",
                running=True,
                foreign=True,
            )
        payload = body or b""
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {len(payload)}\r\n"
        )
        if body is not None:
            head += "Content-Type: application/json\r\n"
        head += "\r\n"
        try:
            _send_all(sock, head.encode("ascii") + payload, deadline)
            return _read_answer(sock, deadline)
        except TimeoutError:
            raise Unreachable(f"the daemon at {path} did not answer within {timeout:.1f}s", running=True) from None
        except OSError as e:
            raise Unreachable(f"the connection to {path} failed: {e}", running=True) from None
    finally:
        sock.close()


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left


def _send_all(sock: socket.socket, data: bytes, deadline: float) -> None:
    view = memoryview(data)
    while view:
        sock.settimeout(_remaining(deadline))
        sent = sock.send(view)
        view = view[sent:]


def _read_answer(sock: socket.socket, deadline: float) -> Answer:
    buf = bytearray()
    head_end = -1
    while head_end < 0:
        chunk = _recv(sock, deadline)
        if not chunk:
            raise Unreachable(f"the answer ended before its head was complete ({bytes(buf[:80])!r})", running=True)
        buf += chunk
        head_end = buf.find(b"\r\n\r\n")
        if head_end < 0 and len(buf) > _HEAD_LIMIT:
            raise Unreachable("the answer's head is over 64 KiB: not an HTTP answer", running=True)
    status, headers = _parse_head(bytes(buf[:head_end]))
    rest = buf[head_end + 4 :]
    length_text = headers.get("content-length")
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            done = _dechunk(bytes(rest))
            if done is not None:
                return Answer(status, headers, done)
            chunk = _recv(sock, deadline)
            if not chunk:
                raise Unreachable("the chunked answer was cut short", running=True)
            rest += chunk
            _check_size(rest)
    if length_text is not None:
        try:
            length = int(length_text)
        except ValueError:
            raise Unreachable(f"bad Content-Length {length_text!r}", running=True) from None
        if length < 0 or length > MAX_ANSWER_BYTES:
            raise Unreachable(f"Content-Length {length} is out of range", running=True)
        while len(rest) < length:
            chunk = _recv(sock, deadline)
            if not chunk:
                raise Unreachable(f"the answer was cut short: {len(rest)} of {length} bytes", running=True)
            rest += chunk
        return Answer(status, headers, bytes(rest[:length]))
    while True:
        chunk = _recv(sock, deadline)
        if not chunk:
            return Answer(status, headers, bytes(rest))
        rest += chunk
        _check_size(rest)


def _recv(sock: socket.socket, deadline: float) -> bytes:
    sock.settimeout(_remaining(deadline))
    return sock.recv(65536)


def _check_size(buf: bytearray) -> None:
    if len(buf) > MAX_ANSWER_BYTES:
        raise Unreachable(f"the answer is over {MAX_ANSWER_BYTES} bytes", running=True)


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes anything
        raise Unreachable("the answer's head is not text", running=True) from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise Unreachable(f"not an HTTP answer: {lines[0][:80]!r}", running=True)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


def _dechunk(data: bytes) -> bytes | None:
    """The body of a complete chunked answer, or None while it is incomplete."""
    out = bytearray()
    pos = 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return None
        size_text = data[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise Unreachable(f"bad chunk size {size_text[:20]!r}", running=True) from None
        pos = eol + 2
        if size == 0:
            return bytes(out)
        if len(data) < pos + size + 2:
            return None
        out += data[pos : pos + size]
        pos += size + 2
