"""What the .pth hook adds to an interpreter's start-up, measured on a shared
machine: the commands run interleaved (A, B, A, B, ...) so that load hits both
alike, and the figure is the median of the per-round differences.

    python python/bench/startup_bench.py --rounds 1000 --base "CMD" --with "CMD"

Example (two venvs of the same Python, one with the kitty-sync wheel):
    python startup_bench.py --base "plain/bin/python -c pass" --with "ks/bin/python -c pass"
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import time


def run(cmd: list[str], env: dict[str, str]) -> tuple[int, int]:
    """Wall time and CPU time (user + system, from wait4) of one run, in ns."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    t = time.perf_counter_ns()
    try:
        pid = os.posix_spawn(
            cmd[0], cmd, env, file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)]
        )
        _, status, usage = os.wait4(pid, 0)
    finally:
        os.close(devnull)
    wall = time.perf_counter_ns() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd} failed")
    return wall, int((usage.ru_utime + usage.ru_stime) * 1e9)


def q(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--base", required=True, help="the command without the hook, one shell-quoted string")
    ap.add_argument("--with", dest="other", required=True, help="the same command with the hook")
    args = ap.parse_args()
    args.base, args.other = shlex.split(args.base), shlex.split(args.other)
    env = dict(os.environ)
    for _ in range(args.warmup):
        run(args.base, env)
        run(args.other, env)
    rows: dict[str, list[float]] = {
        k: [] for k in ("base wall", "with wall", "diff wall", "base cpu", "with cpu", "diff cpu")
    }
    for i in range(args.rounds):
        # Alternate which goes first, so neither always runs on a warmer cache.
        if i % 2:
            b = run(args.base, env)
            o = run(args.other, env)
        else:
            o = run(args.other, env)
            b = run(args.base, env)
        for k, j in (("wall", 0), ("cpu", 1)):
            rows[f"base {k}"].append(b[j] / 1e6)
            rows[f"with {k}"].append(o[j] / 1e6)
            rows[f"diff {k}"].append((o[j] - b[j]) / 1e6)
    print(f"base: `{' '.join(args.base)}`; with: `{' '.join(args.other)}`; {args.rounds} rounds\n")
    print("| ms | median | p25 | p75 | p5 | p95 |")
    print("|---|---|---|---|---|---|")
    for name, v in rows.items():
        label = name.replace("diff", "with - base, per round")
        cells = [statistics.median(v), q(v, 0.25), q(v, 0.75), q(v, 0.05), q(v, 0.95)]
        print(f"| {label} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
