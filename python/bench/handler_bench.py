"""How long one hand-over of a spec-kitty status hop takes.

    <venv>/bin/python python/bench/handler_bench.py [--runs N]

Run with the Python of a spec-kitty-cli 4.x venv that has the kitty-sync
wheel installed: it starts that venv's kitty-syncd in a temporary home and
times, per call, (1) kitty_sync's status handler alone, (2) the CLI's own
seam, `specify_cli.status.adapters.fire_saas_fanout`, which runs the handler
in a thread of its own with a time bound, and (3) that seam with no handler
registered (what the CLI costs without kitty-sync). Prints median and spread
in milliseconds, and checks the daemon queued one row per call.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time


def summary(name: str, ns: list[int]) -> str:
    ms = sorted(n / 1e6 for n in ns)

    def q(p: float) -> float:
        return ms[min(len(ms) - 1, int(p * len(ms)))]

    return (
        f"| {name} | {len(ms)} | {statistics.median(ms):.3f} | {q(0.05):.3f} | {q(0.95):.3f} "
        f"| {ms[0]:.3f} | {ms[-1]:.3f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=500)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="ksbench")
    home = os.path.join(root, "home")
    os.mkdir(home, 0o700)
    os.environ["SPEC_KITTY_HOME"] = home
    os.environ.pop("KITTY_SYNCD_SOCKET", None)
    daemon_bin = os.path.join(os.path.dirname(sys.executable), "kitty-syncd")
    with open(os.path.join(root, "daemon.log"), "wb") as log:
        daemon = subprocess.Popen([daemon_bin, "run"], stdout=log, stderr=subprocess.STDOUT)
    try:
        from kitty_sync import Client
        from kitty_sync._ulid import new_ulid

        client = Client()
        deadline = time.monotonic() + 20
        while client.health() is None:
            if time.monotonic() > deadline:
                raise SystemExit("kitty-syncd did not start")
            time.sleep(0.01)

        from specify_cli.status import adapters  # the hook registers kitty-sync's handlers here
        from specify_cli.status.wp_status_metadata import WPStatusChangeMetadata

        import kitty_sync.spec_kitty as transport

        def kwargs() -> dict[str, object]:
            return {
                "wp_id": "WP01",
                "from_lane": "planned",
                "to_lane": "claimed",
                "actor": {"role": "implementer", "profile": None, "tool": "user", "model": None},
                "mission_slug": "demo-01M8SHH2",
                "mission_id": "01M8SHH293HXFXYMQB48SSHRXX",
                "metadata": WPStatusChangeMetadata(
                    causation_id=new_ulid(),
                    reason="move-task: planned -> in_progress",
                    execution_mode="worktree",
                    occurred_at="2026-12-01T19:33:05.660055+00:00",
                ),
                "repo_root": None,
            }

        for _ in range(50):
            transport.on_status(kwargs())
        direct, seam, bare = [], [], []
        for _ in range(args.runs):
            kw = kwargs()
            t = time.perf_counter_ns()
            transport.on_status(kw)
            direct.append(time.perf_counter_ns() - t)
        for _ in range(args.runs):
            kw = kwargs()
            t = time.perf_counter_ns()
            adapters.fire_saas_fanout(**kw)
            seam.append(time.perf_counter_ns() - t)
        adapters.reset_handlers()
        for _ in range(args.runs):
            kw = kwargs()
            t = time.perf_counter_ns()
            adapters.fire_saas_fanout(**kw)
            bare.append(time.perf_counter_ns() - t)
        depth = client.status()["queue"]["depth"]
        expected = 50 + 2 * args.runs
        print("| call | n | median ms | p5 | p95 | min | max |")
        print("|---|---|---|---|---|---|---|")
        print(summary("kitty_sync status handler (socket round trip, commit)", direct))
        print(summary("CLI seam fire_saas_fanout with kitty-sync's handler", seam))
        print(summary("CLI seam fire_saas_fanout with no handler", bare))
        print(f"\nqueued {depth} of {expected} events", file=sys.stderr)
        if depth != expected:
            raise SystemExit(f"the daemon queued {depth} events, expected {expected}")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(20)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
