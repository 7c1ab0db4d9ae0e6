"""What the tests share: the real kitty-syncd and kitty-sync binaries, run in a
temporary home, and queue.db read from disk.

The binaries are $KITTY_SYNCD_BIN / $KITTY_SYNC_BIN (the Rust test that runs
this suite sets them), else target/debug/ of this repository.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.dirname(HERE)
REPO = os.path.dirname(PYTHON_DIR)
sys.path.insert(0, PYTHON_DIR)

# The longest any wait may take before a test fails (a loaded machine is slow).
GUARD = 20.0


def binary(env_var: str, name: str) -> str:
    path = os.environ.get(env_var) or os.path.join(REPO, "target", "debug", name)
    if not os.access(path, os.X_OK):
        raise unittest.SkipTest(f"{name} not built at {path} (cargo build -p {name}, or set {env_var})")
    return path


def daemon_bin() -> str:
    return binary("KITTY_SYNCD_BIN", "kitty-syncd")


def client_bin() -> str:
    return binary("KITTY_SYNC_BIN", "kitty-sync")


def eventually(what: str, f: Callable[[], Any], timeout: float = GUARD) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = f()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class Home:
    """A temporary SPEC_KITTY_HOME (mode 0700) and the daemons started in it."""

    def __init__(self) -> None:
        self.root = tempfile.mkdtemp(prefix="ksp")
        self.path = os.path.join(self.root, "home")
        os.mkdir(self.path, 0o700)
        self.socket = os.path.join(self.path, "kitty-syncd.sock")
        self.daemons: list[subprocess.Popen[bytes]] = []

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("KITTY_SYNCD_SOCKET", "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID")
        }
        env.update(
            SPEC_KITTY_HOME=self.path, HOME=self.path, RUST_LOG="warn", LOGNAME="kitty-tester", USER="kitty-tester"
        )
        return env

    def client(self, **kwargs: Any) -> Any:
        from kitty_sync import Client

        warnings: list[str] = []
        kwargs.setdefault("kitty_sync_bin", client_bin())
        c = Client(self.path, self.socket, warn=warnings.append, **kwargs)
        c.warnings = warnings  # type: ignore[attr-defined]
        return c

    def write_config(self, text: str) -> None:
        with open(self.file("config.toml"), "w") as f:
            f.write(text)

    def start_daemon(self) -> subprocess.Popen[bytes]:
        with open(os.path.join(self.root, f"daemon-{len(self.daemons)}.log"), "wb") as log:
            p = subprocess.Popen(
                [daemon_bin(), "run"], env=self.env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.daemons.append(p)
        from kitty_sync import Client

        probe = Client(self.path, self.socket)
        eventually("the daemon's health", lambda: p.poll() is not None or probe.health())
        if p.poll() is not None:
            raise AssertionError(f"kitty-syncd exited {p.returncode}: {self.daemon_log()}")
        return p

    def daemon_log(self) -> str:
        out = []
        for i in range(len(self.daemons)):
            with open(os.path.join(self.root, f"daemon-{i}.log"), "rb") as f:
                out.append(f.read().decode("utf-8", "replace"))
        return "\n".join(out)

    def stop_daemon(self, p: subprocess.Popen[bytes]) -> None:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGCONT)
            p.terminate()
            try:
                p.wait(GUARD)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def rows(self) -> list[dict[str, Any]]:
        """The queue's rows in drain order, each with its envelope parsed."""
        path = self.file("queue.db")
        if not os.path.exists(path):
            return []
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            cur = conn.execute("SELECT event_id, event_type, data FROM queue ORDER BY timestamp, id")
            return [{"event_id": r[0], "event_type": r[1], "envelope": json.loads(r[2])} for r in cur]
        finally:
            conn.close()

    def spool_files(self) -> list[str]:
        d = self.file("spool")
        return sorted(n for n in os.listdir(d) if n.endswith(".json")) if os.path.isdir(d) else []

    def cleanup(self) -> None:
        for p in self.daemons:
            self.stop_daemon(p)
        shutil.rmtree(self.root, ignore_errors=True)


class HomeCase(unittest.TestCase):
    home: Home

    def setUp(self) -> None:
        self.home = Home()
        self.addCleanup(self.home.cleanup)


def wp_status(wp: str = "WP01", **extra: Any) -> dict[str, Any]:
    payload = {"wp_id": wp, "from_lane": "planned", "to_lane": "claimed", "actor": "user"}
    payload.update(extra)
    return payload
