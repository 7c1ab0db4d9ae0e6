#!/usr/bin/env python3
"""An interleaved A/B of whole `kitty-sync emit` processes, for builds whose
difference is a tenth of a millisecond (BENCHMARKS.md, issue 10, seventh round).

    tests/src/bench/ab_emit.py [--rounds N] [--daemons] BIN_DIR_A BIN_DIR_B [...]

Each BIN_DIR holds a `kitty-sync` and a `kitty-syncd`. Every round runs, for
each build in turn, `kitty-sync emit` and `kitty-sync --version`; the order of
the builds rotates from round to round, because on this VM whichever process
ran second measured up to 0.09 ms slower. The binaries are copied afresh into
a temporary directory first: a copy of a binary measured 0.18 ms faster than
the file it was copied from (how a file's pages sit in the page cache moves
the cost of the page faults), so builds are compared as files in the same
state.

By default every build's client talks to the first build's daemon (the
clients are compared). With --daemons the first build's client talks to every
build's daemon, each in a home of its own (the daemons are compared). Prints medians; the first 20
rounds warm up and are not counted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

PAYLOAD = '{"wp_id":"WP01","previous_status":"planned","new_status":"doing"}'
WARMUP = 20


def spawn(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one process, its output thrown away."""
    devnull = [
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
    ]
    started = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=devnull)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        sys.exit(f"{argv} exited with status {status}")
    return wall, usage.ru_utime + usage.ru_stime


def start_daemon(daemon: str, client: str, root: str, name: str) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    home = os.path.join(root, f"home-{name}")
    os.mkdir(home, 0o700)
    env = dict(os.environ, SPEC_KITTY_HOME=home, HOME=home)
    env.pop("KITTY_SYNCD_SOCKET", None)
    with open(os.path.join(home, "daemon.log"), "wb") as log:
        proc = subprocess.Popen([daemon, "run"], env=env, stdout=log, stderr=log)
    for _ in range(200):
        if subprocess.run([client, "status", "--json"], env=env, capture_output=True).returncode == 0:
            return proc, env
        time.sleep(0.05)
    proc.terminate()
    proc.wait()
    with open(os.path.join(home, "daemon.log"), encoding="utf-8", errors="replace") as log:
        sys.exit(f"the daemon {daemon} did not come up:\n{log.read()[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--daemons", action="store_true", help="compare the daemons, all with the first build's client")
    parser.add_argument("bin_dirs", nargs="+")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="ab-emit-")
    builds: list[tuple[str, str, str]] = []
    for i, d in enumerate(args.bin_dirs):
        copy = os.path.join(root, f"build{i}")
        os.mkdir(copy)
        for name in ("kitty-sync", "kitty-syncd"):
            shutil.copy2(os.path.join(d, name), os.path.join(copy, name))
        builds.append((d, os.path.join(copy, "kitty-sync"), os.path.join(copy, "kitty-syncd")))
    # Only the compared part differs between the builds' runs.
    clients = [builds[0][1] if args.daemons else b[1] for b in builds]
    daemons = [b[2] for b in builds] if args.daemons else [builds[0][2]]
    running: list[tuple[subprocess.Popen[bytes], dict[str, str]]] = []
    emits: list[list[tuple[float, float]]] = [[] for _ in builds]
    versions: list[list[float]] = [[] for _ in builds]
    # A daemon that does not come up, or an emit that fails, exits through
    # here too: no daemon is left running and no copy of a build left behind.
    try:
        for i, daemon in enumerate(daemons):
            running.append(start_daemon(daemon, clients[0], root, str(i)))
        envs = [running[i if args.daemons else 0][1] for i in range(len(builds))]
        for r in range(args.rounds + WARMUP):
            k = r % len(builds)
            order = list(range(k, len(builds))) + list(range(k))
            for i in order:
                emit = spawn([clients[i], "emit", "WPStatusChanged", "--payload", PAYLOAD], envs[i])
                version = spawn([clients[i], "--version"], envs[i])
                if r >= WARMUP:
                    emits[i].append(emit)
                    versions[i].append(version[0])
    finally:
        for proc, _ in running:
            proc.terminate()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)
    print(f"{args.rounds} rounds, medians (ms)")
    for (name, _, _), e, v in zip(builds, emits, versions, strict=True):
        wall = statistics.median(x[0] for x in e) * 1000
        cpu = statistics.median(x[1] for x in e) * 1000
        ver = statistics.median(v) * 1000
        print(f"{name}: emit {wall:.3f}  --version {ver:.3f}  emit - --version {wall - ver:.3f}  emit CPU {cpu:.3f}")


if __name__ == "__main__":
    main()
