"""What one durable commit costs after a quiet pause, against back to back.

`kitty-bench` starts one `kitty-sync emit` process every 2-3 ms, so each of
them meets an idle daemon and an idle disk. This probe times the same kind of
request with pauses between them, and, for comparison, SQLite alone and a bare
fsync in this process with the same pauses (BENCHMARKS.md, issue 10, second
round). Standard library only.

    python3 tests/src/bench/idle_commit_probe.py [SOCKET]

With SOCKET (a running daemon's), the socket is probed too: a draft without
an event_id, and one with a fresh id as `kitty-sync emit` sends it. The
temporary files go to $TMPDIR.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

GAPS_S = (0.0, 0.002, 0.010, 0.050)
SAMPLES = 60

BODY = json.dumps(
    {
        "event_type": "WPStatusChanged",
        "payload": {"wp_id": "WP01", "previous_status": "planned", "new_status": "doing"},
    }
).encode()
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def request(body: bytes) -> bytes:
    return (
        b"POST /v1/events HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n"
        + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        + body
    )


def ulid() -> str:
    """A fresh ULID: 48 bits of milliseconds, 80 random bits, Crockford base32."""
    n = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    return "".join(CROCKFORD[(n >> shift) & 31] for shift in range(125, -1, -5))


def with_event_id() -> bytes:
    """The draft as `kitty-sync emit` and the Python package send it: with an id."""
    draft = json.loads(BODY)
    draft["event_id"] = ulid()
    return request(json.dumps(draft).encode())


def timed(op: Callable[[], None], gap: float) -> list[float]:
    out = []
    for _ in range(SAMPLES):
        start = time.perf_counter()
        op()
        out.append(time.perf_counter() - start)
        time.sleep(gap)
    return sorted(out)


def report(what: str, op: Callable[[], None]) -> None:
    for gap in GAPS_S:
        xs = timed(op, gap)
        p90 = xs[int(len(xs) * 0.9)]
        print(
            f"{what}, {gap * 1000:.0f} ms apart: p50 {statistics.median(xs) * 1000:.3f} ms, "
            f"p90 {p90 * 1000:.3f} ms"
        )


def emit_over(path: str, make: Callable[[], bytes]) -> Callable[[], None]:
    def op() -> None:
        req = make()
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
            s.sendall(req)
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        if not answer.startswith(b"HTTP/1.1 202"):
            raise SystemExit(f"the daemon answered {answer[:80]!r}")

    return op


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        fd = os.open(os.path.join(d, "probe"), os.O_RDWR | os.O_CREAT, 0o600)
        os.write(fd, b"x" * 4096)

        def fsync() -> None:
            os.pwrite(fd, b"y" * 4096, 0)
            os.fsync(fd)

        report("overwrite 4 KiB + fsync", fsync)
        db = sqlite3.connect(os.path.join(d, "probe.db"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE t (x TEXT)")

        def commit() -> None:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t VALUES (?)", ("e" * 600,))
            db.execute("COMMIT")

        report("SQLite BEGIN IMMEDIATE; INSERT; COMMIT", commit)
        db.close()
        os.close(fd)
    if len(sys.argv) > 1:
        report("POST /v1/events, new connection", emit_over(sys.argv[1], lambda: request(BODY)))
        report("POST /v1/events with an event_id, new connection", emit_over(sys.argv[1], with_event_id))


if __name__ == "__main__":
    main()
