"""The spec-kitty transport: the drafts it builds from what the CLI hands
over (samples taken from spec-kitty-cli 4.0.0rc7 and 3.2.7), what the real
daemon makes of them, and the side file of refused events."""

from __future__ import annotations

import io
import json
import os
import stat
import unittest
from contextlib import redirect_stderr
from dataclasses import dataclass
from typing import Any

import kitty_sync.spec_kitty as transport
from kitty_sync import Client
from kitty_sync.spec_kitty import _drafts, _identity, _refused, hand_over

from _support import HomeCase


@dataclass(frozen=True)
class StatusMetadata:
    """The fields of spec-kitty's WPStatusChangeMetadata (a frozen dataclass)."""

    causation_id: str | None = None
    policy_metadata: dict[str, Any] | None = None
    force: bool = False
    reason: str | None = None
    review_ref: str | None = None
    execution_mode: str | None = None
    evidence: dict[str, Any] | None = None
    occurred_at: str | None = None


CLAIM = dict(
    wp_id="WP01",
    from_lane="planned",
    to_lane="claimed",
    actor={"role": "implementer", "profile": None, "tool": "user", "model": None},
    mission_slug="demo-01M8SHH2",
    mission_id="01M8SHH293HXFXYMQB48SSHRXX",
    metadata=StatusMetadata(
        causation_id="01M8SHHBZWJMYF8JQKJD3ME6VP",
        reason="move-task: planned -> in_progress",
        execution_mode="worktree",
        occurred_at="2026-12-01T19:33:05.660055+00:00",
        policy_metadata={"pre_review_gate": {"outcome": "no_coverage"}},
    ),
    repo_root=None,
)

GENESIS = dict(CLAIM, from_lane="genesis", to_lane="planned", actor="finalize-tasks")

PROJECT_INITIALIZED = {
    "event_id": "01M8SHFX51MNDE4K4A7RCDGKNK",
    "event_type": "ProjectInitialized",
    "aggregate_id": "b8693dca-62bc-4158-a781-ce21354af52b",
    "aggregate_type": "Project",
    "schema_version": "5.0.0",
    "timestamp": "2026-12-01T19:32:17.697072+00:00",
    "payload": {
        "project_uuid": "b8693dca-62bc-4158-a781-ce21354af52b",
        "project_slug": "repo",
        "actor": "spec-kitty init",
        "runtime_version": "4.0.0rc7",
        "initialized_at": "2026-12-01T19:32:17.696917Z",
    },
    "project_uuid": "b8693dca-62bc-4158-a781-ce21354af52b",
    "project_slug": "repo",
}

SPECIFY_STARTED = {
    "event_id": "01M8SHG3ZHCF2Z7FGTS1YKSYYK",
    "event_type": "SpecifyStarted",
    "aggregate_id": "demo-01M8SHG3",
    "aggregate_type": "Mission",
    "schema_version": "5.0.0",
    "timestamp": "2026-12-01T19:32:24.689961+00:00",
    "payload": {"mission_slug": "demo-01M8SHG3", "mission_number": None, "actor": "spec-kitty mission create"},
    "project_uuid": None,
    "project_slug": None,
}

WP_CREATED = {
    "event_id": "01M8SHH6MXAAQPYS9EW73TMM7E",
    "event_type": "WPCreated",
    "aggregate_id": "WP01",
    "aggregate_type": "WorkPackage",
    "schema_version": "5.0.0",
    "timestamp": "2026-12-01T19:33:00.100000+00:00",
    "payload": {
        "mission_slug": "demo-01M8SHH2",
        "mission_number": None,
        "wp_id": "WP01",
        "wp_title": "Do it",
        "wp_path": "kitty-specs/demo-01M8SHH2/tasks/WP01-do-it.md",
        "depends_on": [],
        "actor": "spec-kitty agent mission finalize-tasks",
        "created_at": "2026-12-01T19:33:00.099000Z",
    },
    "project_uuid": None,
    "project_slug": None,
}

# What 3.2.7's EventEmitter._emit builds (before the daemon stamps it).
EMITTER_BUILD_REGISTERED = {
    "event_id": "01M8SHJC21ZXPMVBFX3QE5KMZJ",
    "event_type": "BuildRegistered",
    "aggregate_id": "8426b55c-f045-5b25-a4a8-a7593207a369",
    "aggregate_type": "Build",
    "schema_version": "3.0.0",
    "build_id": "8426b55c-f045-5b25-a4a8-a7593207a369",
    "payload": {"build_id": "8426b55c-f045-5b25-a4a8-a7593207a369", "branch": "main"},
    "node_id": "b805cd5cee74",
    "lamport_clock": 0,
    "causation_id": None,
    "correlation_id": "01M8SHJC21ZXPMVBFX3QE5KMZJ",
    "timestamp": "2026-12-01T19:33:44.000000+00:00",
    "team_slug": None,
    "project_uuid": "45bbf128-2c80-47b2-85b1-8d3e40f20227",
    "project_slug": "repo",
    "git_branch": "main",
    "head_commit_sha": "c7b1583e4d12efa2236caf8daab34c23666070d4",
    "repo_slug": None,
    "drain_blocked_reason": "sync_disabled",
}


class Drafts(unittest.TestCase):
    def test_status_hop(self) -> None:
        d = _drafts.from_status(CLAIM)
        self.assertEqual(d["event_type"], "WPStatusChanged")
        self.assertEqual((d["aggregate_id"], d["aggregate_type"]), ("WP01", "WorkPackage"))
        self.assertEqual(d["causation_id"], "01M8SHHBZWJMYF8JQKJD3ME6VP", "the canonical status event's ULID")
        self.assertEqual(d["occurred_at"], "2026-12-01T19:33:05.660055+00:00")
        p = d["payload"]
        self.assertEqual(p["actor"], CLAIM["actor"])
        self.assertEqual((p["mission_slug"], p["mission_id"]), (CLAIM["mission_slug"], CLAIM["mission_id"]))
        self.assertEqual((p["force"], p["execution_mode"]), (False, "worktree"))
        self.assertNotIn("policy_metadata", p, "not part of the StatusTransitionPayload the CLI sends")
        self.assertNotIn("review_ref", p, "None values are left out")
        self.assertNotIn("event_id", d, "the client gives it one")

    def test_status_hop_without_metadata_or_a_ulid_causation(self) -> None:
        d = _drafts.from_status(dict(CLAIM, metadata=StatusMetadata(causation_id="not-a-ulid"), force=True))
        self.assertNotIn("causation_id", d)
        self.assertNotIn("occurred_at", d)
        d = _drafts.from_status(dict(wp_id="WP02", from_lane="planned", to_lane="claimed", force=True, reason="r"))
        self.assertEqual((d["payload"]["force"], d["payload"]["reason"]), (True, "r"))

    def test_lifecycle_envelope(self) -> None:
        d = _drafts.from_envelope(PROJECT_INITIALIZED)
        self.assertEqual(d["event_id"], PROJECT_INITIALIZED["event_id"], "the CLI's identity is kept")
        self.assertEqual(d["occurred_at"], PROJECT_INITIALIZED["timestamp"])
        self.assertEqual(d["schema_version"], "5.0.0")
        self.assertNotIn("timestamp", d)
        d = _drafts.from_envelope(SPECIFY_STARTED)
        self.assertNotIn("project_uuid", d, "null fields are left out")

    def test_emitter_envelope_loses_what_the_daemon_issues(self) -> None:
        d = _drafts.from_envelope(EMITTER_BUILD_REGISTERED)
        for gone in ("lamport_clock", "node_id", "team_slug", "drain_blocked_reason", "timestamp", "repo_slug"):
            self.assertNotIn(gone, d)
        for kept in ("build_id", "correlation_id", "git_branch", "head_commit_sha", "project_uuid", "project_slug"):
            self.assertEqual(d[kept], EMITTER_BUILD_REGISTERED[kept])
        self.assertNotIn("event_id", _drafts.from_envelope(dict(EMITTER_BUILD_REGISTERED, event_id="8426b55c")))
        self.assertNotIn("build_id", _drafts.from_envelope(dict(EMITTER_BUILD_REGISTERED, build_id="")))

    def test_resolved_binding(self) -> None:
        d = _drafts.from_resolved_binding(
            {"wp_id": "WP03", "binding": {"model": "m"}, "repo_root": object(), "odd": object()}
        )
        self.assertEqual((d["event_type"], d["aggregate_id"]), ("WPResolvedBindingChanged", "WP03"))
        self.assertEqual(d["payload"], {"wp_id": "WP03", "binding": {"model": "m"}})


class Identity(HomeCase):
    def test_repo_root_and_project_fill(self) -> None:
        repo = os.path.join(self.home.root, "repo")
        deep = os.path.join(repo, ".worktrees", "x", "kitty-specs", "m")
        os.makedirs(os.path.join(repo, ".kittify"))
        os.makedirs(deep)
        self.assertEqual(str(_identity.repo_root_of(os.path.join(deep, "status.events.jsonl"))), repo)
        self.assertIsNone(_identity.repo_root_of(self.home.path))
        draft: dict[str, Any] = {"project_slug": "given"}
        _identity.fill_project(draft, None)
        self.assertEqual(draft, {"project_slug": "given"})


class WhatTheDaemonMakesOfThem(HomeCase):
    def setUp(self) -> None:
        super().setUp()
        self.home.start_daemon()
        transport._client = Client(self.home.path, self.home.socket, warn=lambda m: None)
        self.addCleanup(setattr, transport, "_client", None)

    def test_every_sample_is_accepted_with_its_identity(self) -> None:
        samples = [
            _drafts.from_status(GENESIS),
            _drafts.from_status(CLAIM),
            _drafts.from_envelope(PROJECT_INITIALIZED),
            _drafts.from_envelope(SPECIFY_STARTED),
            _drafts.from_envelope(WP_CREATED),
            _drafts.from_envelope(dict(EMITTER_BUILD_REGISTERED, build_id="")),
        ]
        for draft in samples:
            with self.subTest(draft["event_type"]):
                self.assertIsNotNone(hand_over(draft), draft)
        rows = self.home.rows()
        self.assertEqual([r["envelope"]["lamport_clock"] for r in rows], list(range(1, len(samples) + 1)))
        by_type = {r["event_type"]: r["envelope"] for r in rows if r["event_type"] != "WPStatusChanged"}
        self.assertEqual(by_type["ProjectInitialized"]["event_id"], PROJECT_INITIALIZED["event_id"])
        self.assertEqual(
            by_type["ProjectInitialized"]["timestamp"], PROJECT_INITIALIZED["timestamp"], "occurred_at kept"
        )
        self.assertEqual(by_type["BuildRegistered"]["git_branch"], "main")
        self.assertNotIn("build_id", by_type["BuildRegistered"], "an unknown build_id is left out")
        claim = rows[1]["envelope"]
        self.assertEqual(claim["causation_id"], "01M8SHHBZWJMYF8JQKJD3ME6VP")
        self.assertEqual(claim["payload"]["mission_id"], CLAIM["mission_id"])
        self.assertEqual(claim["timestamp"], "2026-12-01T19:33:05.660055+00:00")
        self.assertFalse(os.path.exists(_refused.path_in(self.home.path)))

    def test_a_refused_event_goes_to_the_side_file_and_is_counted(self) -> None:
        bad = _drafts.from_status(dict(CLAIM, wp_id="not-a-wp"))
        err = io.StringIO()
        with redirect_stderr(err):
            self.assertIsNone(hand_over(bad))
            self.assertIsNone(hand_over(dict(bad)))
        self.assertIn("kitty-sync-refused.jsonl", err.getvalue())
        self.assertEqual(self.home.rows(), [])
        path = _refused.path_in(self.home.path)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        with open(path) as f:
            lines = [json.loads(line) for line in f]
        self.assertEqual(len(lines), 2)
        self.assertEqual(lines[0]["error"]["field"], "payload.wp_id")
        self.assertEqual(lines[0]["error"]["status"], 422)
        self.assertEqual(lines[0]["event"]["payload"]["wp_id"], "not-a-wp")
        self.assertTrue(lines[0]["event"]["event_id"], "the line names the event")
        self.assertEqual(transport.client().status()["refused"], 2, "kitty-syncd status counts the lines")

    def test_a_planted_symlink_is_not_followed(self) -> None:
        target = os.path.join(self.home.root, "victim")
        with open(target, "w") as f:
            f.write("precious\n")
        os.symlink(target, _refused.path_in(self.home.path))
        err = io.StringIO()
        with redirect_stderr(err):
            self.assertIsNone(hand_over(_drafts.from_status(dict(CLAIM, wp_id="bad"))))
        self.assertIn("cannot be recorded", err.getvalue())
        with open(target) as f:
            self.assertEqual(f.read(), "precious\n")


if __name__ == "__main__":
    unittest.main()
