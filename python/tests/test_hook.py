"""The start-up hook, through the real `.pth` line, in fresh interpreters: it
costs no import until spec-kitty's modules load, then attaches the transport
to them; `KITTY_SYNC_DISABLE=1` turns it off; a failure never breaks the
program. The spec-kitty modules here are small stand-ins with the same
public seams (the real CLIs are exercised by tests/tests/spec_kitty_cli.rs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from _support import PYTHON_DIR, HomeCase

ADAPTERS = """
_saas, _life, _binding = [], [], []
def register_saas_fanout_handler(cb): _saas.append(cb)
def register_lifecycle_saas_fanout_handler(cb): _life.append(cb)
def register_resolved_binding_fanout_handler(cb): _binding.append(cb)
def fire_saas_fanout(**kw):
    for h in _saas: h(**kw)
"""

# A 2.x-style emitter: its clock writes a file on every tick, like clock.json.
EMITTER = """
import json, os
class LamportClock:
    def __init__(self):
        self.value, self.node_id = 0, "0123456789ab"
    def tick(self):
        self.value += 1
        open(os.environ["CLOCK_FILE"], "w").write(str(self.value))
        return self.value
class OfflineQueue:
    def queue_event(self, event):
        open(os.environ["QUEUE_FILE"], "a").write(json.dumps(event) + "\\n")
        return True
class EventEmitter:
    def __init__(self, clock=None, queue=None):
        self.clock = clock or LamportClock()
        self.queue = queue or OfflineQueue()
    def _emit(self, event_type, aggregate_id, aggregate_type, payload, causation_id=None):
        event = {"event_id": "01M8SHJC21ZXPMVBFX3QE5KMZJ", "event_type": event_type, "aggregate_id": aggregate_id,
                 "aggregate_type": aggregate_type, "payload": payload, "node_id": self.clock.node_id,
                 "lamport_clock": self.clock.tick(), "causation_id": causation_id,
                 "timestamp": "2026-02-04T13:47:09.123456+00:00", "team_slug": "local"}
        self.queue.queue_event(event)
        return event
"""

EVENTS = """
import threading
_emitter = None
_lock = threading.Lock()
def get_emitter():
    global _emitter
    if _emitter is None:
        open(__import__("os").environ["RUNTIME_FILE"], "w").write("the CLI's own sync runtime started")
        from .emitter import EventEmitter
        _emitter = EventEmitter()
    return _emitter
"""


class Hook(HomeCase):
    def setUp(self) -> None:
        super().setUp()
        root = self.home.root
        self.site = os.path.join(root, "site")
        os.mkdir(self.site)
        for name in ("kitty_sync", "_kitty_sync_hook.py", "kitty_sync.pth"):
            os.symlink(os.path.join(PYTHON_DIR, name), os.path.join(self.site, name))
        self.fake = os.path.join(root, "fake")
        self.files = {k: os.path.join(root, k.lower()) for k in ("CLOCK_FILE", "QUEUE_FILE", "RUNTIME_FILE")}

    def fake_cli(self, files: dict[str, str]) -> None:
        for rel, text in files.items():
            path = os.path.join(self.fake, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(textwrap.dedent(text))

    def run_py(self, code: str, **env: str) -> subprocess.CompletedProcess[str]:
        # site.addsitedir processes the .pth file exactly as start-up does.
        prelude = f"import site, sys; sys.path.insert(0, {self.fake!r}); site.addsitedir({self.site!r})\n"
        e = self.home.env()
        e.update(self.files)
        e.pop("KITTY_SYNC_DISABLE", None)
        e.update(env)
        return subprocess.run(
            [sys.executable, "-c", prelude + textwrap.dedent(code)], env=e, capture_output=True, text=True, timeout=60
        )

    def test_nothing_is_imported_until_spec_kitty_loads(self) -> None:
        r = self.run_py(
            """
            import json
            print(json.dumps([type(f).__name__ for f in sys.meta_path]))
            print(json.dumps(sorted(m for m in sys.modules if m.startswith("kitty_sync"))))
            """
        )
        self.assertEqual(r.returncode, 0, r.stderr)
        finders, loaded = (json.loads(line) for line in r.stdout.splitlines())
        self.assertEqual(finders[0], "_Finder")
        self.assertEqual(loaded, [])

    def test_seams_get_the_handlers_and_events_reach_the_daemon(self) -> None:
        self.fake_cli(
            {
                "specify_cli/__init__.py": "",
                "specify_cli/status/__init__.py": "",
                "specify_cli/status/adapters.py": ADAPTERS,
            }
        )
        self.home.start_daemon()
        r = self.run_py(
            """
            from specify_cli.status import adapters
            print([h.__qualname__ for h in adapters._saas + adapters._life + adapters._binding])
            print("loaded before the first event:", [m for m in sys.modules if m.startswith("kitty_sync")])
            adapters.fire_saas_fanout(wp_id="WP01", from_lane="planned", to_lane="claimed", actor="user",
                                      mission_slug="m-1", mission_id="01M8SHH293HXFXYMQB48SSHRXX", metadata=None)
            """
        )
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("['on_status', 'on_lifecycle', 'on_resolved_binding']", r.stdout)
        self.assertIn("loaded before the first event: []", r.stdout)
        rows = self.home.rows()
        self.assertEqual([r["event_type"] for r in rows], ["WPStatusChanged"])
        self.assertEqual(rows[0]["envelope"]["payload"]["mission_slug"], "m-1")

    def test_another_post_import_hook_like_ours(self) -> None:
        # A finder that, like ours and like wrapt's post-import hooks, asks the
        # rest of sys.meta_path for the real module; it has no guard of its own.
        self.fake_cli(
            {
                "specify_cli/__init__.py": "",
                "specify_cli/status/__init__.py": "",
                "specify_cli/status/adapters.py": ADAPTERS,
            }
        )
        r = self.run_py(
            """
            class Other:
                def find_spec(self, name, path=None, target=None):
                    if name != "specify_cli.status.adapters":
                        return None
                    for f in sys.meta_path:
                        if f is not self and hasattr(f, "find_spec"):
                            spec = f.find_spec(name, path, target)
                            if spec is not None:
                                return spec
                    return None
            sys.meta_path.insert(0, Other())
            from specify_cli.status import adapters
            print([h.__qualname__ for h in adapters._saas])
            """
        )
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        self.assertEqual(r.stdout.strip(), "['on_status']")

    def test_stands_aside_when_the_clis_own_sync_is_on(self) -> None:
        # 3.x delivers its events itself when SPEC_KITTY_ENABLE_SAAS_SYNC arms its sync.
        self.fake_cli(
            {
                "specify_cli/__init__.py": "",
                "specify_cli/core/__init__.py": "",
                "specify_cli/core/saas_sync_config.py": "import os\n"
                "def sync_active():\n    return os.environ.get('SPEC_KITTY_ENABLE_SAAS_SYNC') == '1'\n",
                "specify_cli/status/__init__.py": "",
                "specify_cli/status/adapters.py": ADAPTERS,
            }
        )
        self.home.start_daemon()
        code = """
            from specify_cli.status import adapters
            adapters.fire_saas_fanout(wp_id="WP01", from_lane="planned", to_lane="claimed", actor="user", metadata=None)
            """
        r = self.run_py(code, SPEC_KITTY_ENABLE_SAAS_SYNC="1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.home.rows(), [], "the CLI's own sync carries it: nothing sent twice")
        r = self.run_py(code)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(self.home.rows()), 1, "its sync off: ours")

    def test_disabled(self) -> None:
        self.fake_cli(
            {
                "specify_cli/__init__.py": "",
                "specify_cli/status/__init__.py": "",
                "specify_cli/status/adapters.py": ADAPTERS,
            }
        )
        r = self.run_py(
            """
            from specify_cli.status import adapters
            print(len(adapters._saas), [type(f).__name__ for f in sys.meta_path][0])
            """,
            KITTY_SYNC_DISABLE="1",
        )
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("_Finder", r.stdout)
        self.assertTrue(r.stdout.startswith("0 "), r.stdout)

    def test_a_failure_is_a_warning_not_a_broken_cli(self) -> None:
        # A seam module without the registration functions the transport needs.
        self.fake_cli(
            {
                "specify_cli/__init__.py": "",
                "specify_cli/status/__init__.py": "",
                "specify_cli/status/adapters.py": "X = 1\n",
            }
        )
        r = self.run_py("from specify_cli.status import adapters\nprint(adapters.X)\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "1")
        self.assertIn("kitty-sync: warning: cannot attach to specify_cli.status.adapters", r.stderr)

    def test_the_legacy_emitter_gets_the_daemon_as_clock_and_queue(self) -> None:
        self.fake_cli(
            {
                "specify_cli/__init__.py": "",
                "specify_cli/sync/__init__.py": "",
                "specify_cli/sync/emitter.py": EMITTER,
                "specify_cli/sync/events.py": EVENTS,
            }
        )
        self.home.start_daemon()
        code = """
            from specify_cli.sync.events import get_emitter
            e = get_emitter()
            env = e._emit("WPStatusChanged", "WP01", "WorkPackage",
                          {"wp_id": "WP01", "from_lane": "planned", "to_lane": "claimed"})
            print(type(e.clock).__name__, type(e.queue).__name__, env["lamport_clock"], env["event_id"])
            """
        r = self.run_py(code)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split(), ["DaemonClock", "DaemonQueue", "1", "01M8SHJC21ZXPMVBFX3QE5KMZJ"])
        for name, path in self.files.items():
            self.assertFalse(os.path.exists(path), f"the CLI's own {name} was written")
        rows = self.home.rows()
        self.assertEqual(
            [(r["event_id"], r["envelope"]["lamport_clock"]) for r in rows], [("01M8SHJC21ZXPMVBFX3QE5KMZJ", 1)]
        )
        # Without the package the same program ticks its clock and queues itself.
        r = self.run_py(code, KITTY_SYNC_DISABLE="1")
        self.assertEqual(r.stdout.split()[:2], ["LamportClock", "OfflineQueue"])
        self.assertTrue(all(os.path.exists(p) for p in self.files.values()))
