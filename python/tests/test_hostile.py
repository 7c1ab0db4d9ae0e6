"""A socket peer that is not our daemon, or that misbehaves: the client never
hangs, never raises, never hands the event to a stranger, and still makes the
event durable (kitty-sync queues it directly: no daemon owns the clock)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import unittest

from _support import GUARD, HERE, Home, HomeCase, wp_status


class HostilePeers(HomeCase):
    def fresh_home(self) -> None:
        self.home = Home()
        self.addCleanup(self.home.cleanup)

    def serve(self, mode: str, uid: int | None = None, socket_dir: str | None = None) -> str:
        socket_dir = socket_dir or self.home.path
        sock = os.path.join(socket_dir, "impostor.sock")
        self.record = os.path.join(self.home.root, f"{mode}.received")
        # Created here, writable by the stranger's uid: the server only appends.
        with open(self.record, "wb"):
            pass
        os.chmod(self.record, 0o666)
        args = [sys.executable, os.path.join(HERE, "_hostile_server.py"), sock, mode, self.record]
        if uid is not None:
            args.append(str(uid))
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        def stop() -> None:
            p.kill()
            p.wait()
            p.stdout.close()
            p.stderr.close()

        self.addCleanup(stop)
        line = p.stdout.readline()
        if line.strip() != b"ready":
            self.fail(f"the hostile server did not start: {line!r} {p.stderr.read()!r}")
        return sock

    def emit_against(self, sock: str):
        c = self.home.client()
        c.socket_path = sock
        started = time.monotonic()
        e = c.emit("WPStatusChanged", "WP01", wp_status())
        took = time.monotonic() - started
        self.assertLess(took, GUARD / 2, "bounded")
        rows = self.home.rows()
        self.assertEqual([r["event_id"] for r in rows], [e.event_id], "durable, once")
        return c, e

    def test_answers_that_are_not_http(self) -> None:
        for mode in ("garbage", "flood", "huge-length", "lying-202", "http-500"):
            with self.subTest(mode=mode):
                self.fresh_home()
                c, e = self.emit_against(self.serve(mode))
                self.assertEqual(e.path, "direct", c.warnings)
                self.assertTrue(c.warnings, "the detour is reported")

    def test_a_peer_that_never_answers(self) -> None:
        for mode in ("silent", "slow-drip"):
            with self.subTest(mode=mode):
                self.fresh_home()
                c, e = self.emit_against(self.serve(mode))
                self.assertEqual(e.path, "direct")
                # No daemon of ours runs (nothing holds its lock): kitty-sync says so.
                self.assertTrue(any("not running" in w for w in c.warnings), c.warnings)

    @unittest.skipUnless(os.geteuid() == 0, "needs root to run the impostor as another uid")
    def test_a_stranger_on_the_socket_gets_nothing(self) -> None:
        shared = os.path.join(self.home.root, "shared")
        os.mkdir(shared)
        os.chmod(shared, 0o777)
        os.chmod(self.home.root, 0o755)
        c, e = self.emit_against(self.serve("lying-202", uid=65534, socket_dir=shared))
        self.assertEqual(e.path, "direct")
        self.assertTrue(any("not our daemon" in w for w in c.warnings), c.warnings)
        with open(self.record, "rb") as f:
            self.assertEqual(f.read(), b"", "not one byte of the event reached the stranger")
        self.assertIsNone(c.status(), "nor does status trust it")


if __name__ == "__main__":
    unittest.main()
