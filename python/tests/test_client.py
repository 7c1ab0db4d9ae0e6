"""kitty_sync.Client against the real kitty-syncd and kitty-sync binaries."""

from __future__ import annotations

import json
import os
import signal
import time
import unittest

from kitty_sync import Client, InvalidEvent, NotDurable, QueueFull
from kitty_sync._ulid import is_ulid, new_ulid

from _support import GUARD, HomeCase, eventually, wp_status


class Ulids(unittest.TestCase):
    def test_format_and_uniqueness(self) -> None:
        ids = {new_ulid() for _ in range(2000)}
        self.assertEqual(len(ids), 2000)
        for i in ids:
            self.assertTrue(is_ulid(i), i)
        self.assertFalse(is_ulid("8" + "0" * 25), "the first character carries 3 bits")
        self.assertFalse(is_ulid("01HX5ZQK3M8N9P0R1S2T3V4W5I"), "I is not Crockford")
        self.assertFalse(is_ulid(None))
        self.assertFalse(is_ulid(123))

    def test_time_ordered(self) -> None:
        a = new_ulid()
        time.sleep(0.002)
        self.assertLess(a[:10], new_ulid()[:10])


class BadInput(HomeCase):
    """Refused before anything is sent: a clear error, and nothing on disk."""

    def assert_refused(self, field: str, call, code: str = "invalid_event") -> InvalidEvent:
        c = self.home.client()
        with self.assertRaises(InvalidEvent) as cm:
            call(c)
        e = cm.exception
        self.assertEqual(e.field, field, e.message)
        self.assertEqual(e.code, code)
        self.assertTrue(e.rule)
        self.assertEqual(os.listdir(self.home.path), [], "a refused event leaves nothing behind")
        return e

    def test_payload_must_be_a_mapping(self) -> None:
        for bad in (["wp_id", "WP01"], "WP01", 42, b"{}"):
            self.assert_refused("payload", lambda c, bad=bad: c.emit("WPStatusChanged", "WP01", bad))
        self.assert_refused("payload", lambda c: c.emit("WPStatusChanged", "WP01"))

    def test_event_type_must_be_text(self) -> None:
        for bad in (None, "", 7, ["WPCreated"]):
            self.assert_refused("event_type", lambda c, bad=bad: c.emit(bad, payload={}))

    def test_values_that_are_not_json(self) -> None:
        for bad in ({1, 2}, float("nan"), float("inf"), object(), b"bytes"):
            self.assert_refused(
                "event", lambda c, bad=bad: c.emit("WPStatusChanged", payload=wp_status(note=bad)), "invalid_json"
            )
        circular: dict = {}
        circular["self"] = circular
        self.assert_refused("event", lambda c: c.emit("WPStatusChanged", payload=circular), "invalid_json")
        deep: dict = {}
        for _ in range(100_000):
            deep = {"a": deep}
        self.assert_refused("event", lambda c: c.emit("WPStatusChanged", payload=deep), "invalid_json")

    def test_keys_must_be_strings(self) -> None:
        self.assert_refused("event", lambda c: c.emit_draft({"event_type": "WPCreated", "payload": {}, 3: "x"}))
        self.assert_refused("event", lambda c: c.emit_draft("not a mapping"))  # type: ignore[arg-type]

    def test_huge_payload(self) -> None:
        e = self.assert_refused(
            "event",
            lambda c: c.emit("WPStatusChanged", "WP01", wp_status(note="x" * (1024 * 1024))),
            "payload_too_large",
        )
        self.assertIn("1048576", e.message)

    def test_event_id_must_be_a_ulid(self) -> None:
        for bad in ("not-a-ulid", 12, "01hx5zqk3m8n9p0r1s2t3v4w5x"):
            self.assert_refused(
                "event_id", lambda c, bad=bad: c.emit("WPStatusChanged", "WP01", wp_status(), event_id=bad)
            )

    def test_drafts_and_envelopes_are_not_mixed_up(self) -> None:
        self.assert_refused("lamport_clock", lambda c: c.emit("WPStatusChanged", "WP01", wp_status(), lamport_clock=3))
        self.assert_refused("lamport_clock", lambda c: c.emit_envelope({"event_type": "X", "payload": {}}))
        self.assert_refused("event_id", lambda c: c.emit_envelope({"lamport_clock": 1, "event_id": "x"}))


class WithDaemon(HomeCase):
    def setUp(self) -> None:
        super().setUp()
        self.daemon = self.home.start_daemon()

    def test_emit_is_durable_when_it_returns(self) -> None:
        c = self.home.client()
        first = c.emit("WPStatusChanged", "WP01", wp_status(), project_slug="demo")
        second = c.emit(
            "WPCreated", payload={"wp_id": "WP02", "wp_title": "T", "mission_slug": "m-1", "depends_on": []}
        )
        self.assertEqual((first.path, second.path), ("daemon", "daemon"))
        self.assertEqual(second.lamport_clock, first.lamport_clock + 1)
        rows = self.home.rows()
        self.assertEqual([r["event_id"] for r in rows], [first.event_id, second.event_id])
        env = rows[0]["envelope"]
        self.assertEqual(env["lamport_clock"], first.lamport_clock)
        self.assertEqual(env["project_slug"], "demo")
        self.assertEqual(env["aggregate_id"], "WP01")
        self.assertEqual(c.warnings, [])

    def test_a_retry_with_the_same_event_id_leaves_one_row(self) -> None:
        c = self.home.client()
        event_id = new_ulid()
        a = c.emit("WPStatusChanged", "WP01", wp_status(), event_id=event_id)
        b = c.emit("WPStatusChanged", "WP01", wp_status(), event_id=event_id)
        self.assertEqual((a.event_id, b.event_id), (event_id, event_id))
        self.assertFalse(a.duplicate)
        self.assertTrue(b.duplicate)
        self.assertEqual(len(self.home.rows()), 1)

    def test_every_draft_gets_its_event_id_before_the_first_try(self) -> None:
        c = self.home.client()
        e = c.emit_draft({"event_type": "WPStatusChanged", "payload": wp_status()})
        self.assertTrue(is_ulid(e.event_id))
        self.assertEqual(self.home.rows()[0]["event_id"], e.event_id)

    def test_invalid_events_carry_the_daemons_field_and_rule(self) -> None:
        c = self.home.client()
        with self.assertRaises(InvalidEvent) as cm:
            c.emit("WPStatusChanged", "WP01", {"wp_id": "WP1", "from_lane": "planned", "to_lane": "claimed"})
        e = cm.exception
        self.assertEqual((e.status, e.code, e.field), (422, "invalid_event", "payload.wp_id"))
        self.assertIn("WP", e.rule)
        with self.assertRaises(InvalidEvent) as cm:
            c.emit("not pascal", "x", {}, aggregate_type="Thing")
        self.assertEqual(cm.exception.field, "event_type")
        self.assertEqual(self.home.rows(), [], "nothing stored")
        self.assertEqual(c.warnings, [])

    def test_queue_full_is_its_own_error(self) -> None:
        self.home.write_config('[sync]\nmax_queue_size = 1\nserver_url = "http://127.0.0.1:9"\n')
        os.kill(self.daemon.pid, signal.SIGHUP)
        c = self.home.client()
        c.emit("WPStatusChanged", "WP01", wp_status())

        def refused() -> bool:
            try:
                c.emit("WPStatusChanged", "WP01", wp_status())
            except QueueFull:
                return True
            return False

        eventually("the new cap to apply", refused)
        self.assertEqual(len(self.home.rows()), 1, "existing rows untouched, the new one refused")

    def test_envelopes_are_relayed_unchanged(self) -> None:
        c = self.home.client()
        env = {
            "event_id": new_ulid(),
            "event_type": "WPStatusChanged",
            "aggregate_id": "WP07",
            "aggregate_type": "WorkPackage",
            "payload": wp_status("WP07"),
            "node_id": "0123456789ab",
            "lamport_clock": 40,
            "causation_id": None,
            "timestamp": "2026-02-04T13:47:09.123456+00:00",
            "team_slug": "acme",
            "project_uuid": None,
            "project_slug": None,
        }
        e = c.emit_envelope(env)
        self.assertEqual((e.event_id, e.lamport_clock, e.path), (env["event_id"], 40, "daemon"))
        self.assertEqual(self.home.rows()[0]["envelope"], env)
        after = c.emit("WPStatusChanged", "WP01", wp_status())
        self.assertGreater(after.lamport_clock, 40, "the daemon's clock moved past the relayed envelope")

    def test_status_and_health(self) -> None:
        c = self.home.client()
        health = c.health()
        self.assertEqual(health["pid"], self.daemon.pid)
        c.emit("WPStatusChanged", "WP01", wp_status())
        status = c.status()
        self.assertTrue(status["running"])
        self.assertEqual(status["clock"]["value"], 1)
        self.assertEqual(status["refused"], 0)

    def test_a_hung_daemon_costs_about_a_second_and_loses_nothing(self) -> None:
        c = self.home.client()
        os.kill(self.daemon.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            e = c.emit("WPStatusChanged", "WP01", wp_status())
            took = time.monotonic() - started
        finally:
            os.kill(self.daemon.pid, signal.SIGCONT)
        self.assertEqual((e.path, e.lamport_clock), ("spool", None))
        # Bounded, not fast: a loaded machine is slow, but a hang would be forever.
        self.assertLess(took, GUARD / 2)
        # Said once an hour at most (kitty-sync's delivery warning), naming the spool.
        self.assertTrue(any("spool" in w for w in c.warnings), c.warnings)
        # The daemon commits the row, then removes the file.
        eventually("the daemon to queue the spooled event", lambda: self.home.rows() and not self.home.spool_files())
        self.assertEqual([r["event_id"] for r in self.home.rows()], [e.event_id])


class WithoutDaemon(HomeCase):
    def test_no_daemon_queues_directly_by_the_daemons_rules(self) -> None:
        c = self.home.client()
        a = c.emit("WPStatusChanged", "WP01", wp_status())
        b = c.emit("WPStatusChanged", "WP01", wp_status())
        self.assertEqual((a.path, b.path), ("direct", "direct"))
        self.assertEqual((a.lamport_clock, b.lamport_clock), (1, 2))
        # One warning for both: kitty-sync says it at most once an hour per home.
        self.assertEqual(len(c.warnings), 1, c.warnings)
        self.assertIn("not running", c.warnings[0])
        self.assertEqual([r["envelope"]["lamport_clock"] for r in self.home.rows()], [1, 2])
        with open(self.home.file("clock.json")) as f:
            self.assertEqual(json.load(f)["value"], 2)
        # And the daemon started later resumes past them.
        self.home.start_daemon()
        self.assertEqual(c.emit("WPStatusChanged", "WP01", wp_status()).lamport_clock, 3)

    def test_invalid_events_are_refused_by_the_fallback_too(self) -> None:
        c = self.home.client()
        with self.assertRaises(InvalidEvent) as cm:
            c.emit("WPStatusChanged", "WP01", {"wp_id": "nope", "from_lane": "planned", "to_lane": "claimed"})
        self.assertEqual(cm.exception.field, "payload.wp_id")
        self.assertEqual(self.home.rows(), [])

    def test_without_the_binary_the_event_is_spooled_for_the_daemon(self) -> None:
        c = self.home.client(kitty_sync_bin=os.path.join(self.home.root, "no-such-kitty-sync"))
        e = c.emit("WPStatusChanged", "WP01", wp_status())
        self.assertEqual((e.path, e.lamport_clock), ("spool", None))
        [name] = self.home.spool_files()
        self.assertNotEqual(name, f"{e.event_id}.json", "the file's name is never the event's")
        entry_path = os.path.join(self.home.file("spool"), name)
        self.assertEqual(os.stat(entry_path).st_mode & 0o777, 0o600)
        with open(entry_path) as f:
            entry = json.load(f)
        self.assertEqual(entry["event"]["event_id"], e.event_id)
        self.assertEqual(os.listdir(self.home.file("spool")), [name], "no temporary file left")
        self.home.start_daemon()
        rows = eventually("the daemon to import the spool", lambda: self.home.rows())
        self.assertEqual([r["event_id"] for r in rows], [e.event_id])

    def test_nothing_can_store_it(self) -> None:
        # A home that is a file: neither kitty-sync nor the spool can write there.
        blocker = os.path.join(self.home.root, "not-a-dir")
        with open(blocker, "w") as f:
            f.write("x")
        c = Client(
            blocker,
            os.path.join(self.home.root, "s.sock"),
            kitty_sync_bin=os.path.join(self.home.root, "none"),
            warn=lambda m: None,
        )
        with self.assertRaises(NotDurable) as cm:
            c.emit("WPStatusChanged", "WP01", wp_status())
        self.assertIn("spool", cm.exception.message)

    def test_status_and_health_without_a_daemon(self) -> None:
        c = self.home.client()
        self.assertIsNone(c.health())
        self.assertIsNone(c.status())


if __name__ == "__main__":
    unittest.main()
