"""What one durable commit costs after a quiet pause, against back to back.

`kitty-bench` starts one `kitty-sync emit` process every 2-3 ms, so each of
them meets an idle daemon and an idle disk. This probe times the same kind of
request with pauses between them, and, for comparison, SQLite alone and a bare
fsync in this process with the same pauses (BENCHMARKS.md, issue 10, second
round). Standard library only.

    python3 tests/src/bench/idle_commit_probe.py [SOCKET]

With SOCKET (a running daemon's), the socket is probed too. The temporary
files go to $TMPDIR.
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
REQUEST = (
    b"POST /v1/events HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n"
    + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(BODY)
    + BODY
)


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


def emit_over(path: str) -> Callable[[], None]:
    def op() -> None:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
            s.sendall(REQUEST)
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
        report("POST /v1/events, new connection", emit_over(sys.argv[1]))


if __name__ == "__main__":
    main()
