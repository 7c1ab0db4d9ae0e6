"""Idle latency of two daemon builds, side by side.

Starts `kitty-syncd run` from each of two directories in fresh homes and
asks them in turn, GAP seconds apart for each, N times: one request per new
connection, a draft with a fresh event_id as `kitty-sync emit` sends it
(BENCHMARKS.md, issue 10, fifth round). Taking turns puts both builds under
the same minute of this machine. Standard library only.

    python3 tests/src/bench/idle_ab.py DIR_A DIR_B GAP N
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def probe_module():  # type: ignore[no-untyped-def]
    path = Path(__file__).with_name("idle_commit_probe.py")
    spec = importlib.util.spec_from_file_location("idle_commit_probe", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    dirs = sys.argv[1:3]
    gap, n = float(sys.argv[3]), int(sys.argv[4])
    probe = probe_module()
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        homes = [a, b]
        procs = [
            subprocess.Popen(
                [os.path.join(d, "kitty-syncd"), "run"],
                env=dict(os.environ, SPEC_KITTY_HOME=h, HOME=h),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for d, h in zip(dirs, homes)
        ]
        try:
            for h in homes:
                sock = os.path.join(h, "kitty-syncd.sock")
                deadline = time.monotonic() + 10
                while not os.path.exists(sock):
                    if time.monotonic() > deadline:
                        raise SystemExit(f"no socket at {sock}")
                    time.sleep(0.05)
            ops = [
                probe.emit_over(os.path.join(h, "kitty-syncd.sock"), probe.with_event_id)
                for h in homes
            ]
            for op in ops:
                op()
                op()
            times: list[list[float]] = [[], []]
            for _ in range(n):
                for k, op in enumerate(ops):
                    time.sleep(gap / len(ops))
                    start = time.perf_counter()
                    op()
                    times[k].append(time.perf_counter() - start)
        finally:
            for p in procs:
                p.terminate()
                p.wait()
    for d, xs in zip(dirs, times):
        xs.sort()
        print(
            f"{d}: {gap} s apart, n={n}: p50 {statistics.median(xs) * 1e3:.3f} ms, "
            f"p10 {xs[len(xs) // 10] * 1e3:.3f}, p90 {xs[len(xs) * 9 // 10] * 1e3:.3f}"
        )


if __name__ == "__main__":
    main()
