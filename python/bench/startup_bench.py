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
import subprocess
import time


def run(cmd: list[str], env: dict[str, str]) -> int:
    t = time.perf_counter_ns()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
    return time.perf_counter_ns() - t


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
    base, other, diff = [], [], []
    for i in range(args.rounds):
        # Alternate which goes first, so neither always runs on a warmer cache.
        if i % 2:
            b = run(args.base, env)
            o = run(args.other, env)
        else:
            o = run(args.other, env)
            b = run(args.base, env)
        base.append(b / 1e6)
        other.append(o / 1e6)
        diff.append((o - b) / 1e6)
    print("| | median ms | p25 | p75 | p5 | p95 |")
    print("|---|---|---|---|---|---|")
    for name, v in (("base: " + " ".join(args.base), base), ("with: " + " ".join(args.other), other)):
        cells = [statistics.median(v), q(v, 0.25), q(v, 0.75), q(v, 0.05), q(v, 0.95)]
        print(f"| {name} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    print(
        f"| difference per round (with - base) | {statistics.median(diff):.3f} | {q(diff, 0.25):.3f} "
        f"| {q(diff, 0.75):.3f} | {q(diff, 0.05):.3f} | {q(diff, 0.95):.3f} |"
    )


if __name__ == "__main__":
    main()
