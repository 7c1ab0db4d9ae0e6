"""Test instrumentation for the spec-kitty CLI, put on PYTHONPATH by
tests/src/spec_kitty_cli.rs. It changes nothing the CLI does; it writes one
JSON line per observation to $KITTY_OBSERVE_LOG:

- "produced": every event the CLI produced, seen the way the CLI hands it on:
  a call of its status or lifecycle fan-out seam (3.x, 4.0) and every envelope
  its EventEmitter._emit returned (2.x, 3.x). Registered after kitty-sync's
  own hook, so it sees what kitty-sync returned to the CLI.
- "touched": every write this Python process made to a clock.json or a
  queue.db, and every SQLite connection to a queue.db (a Python audit hook:
  open in a writing mode, os.rename/os.replace onto one, sqlite3.connect).

sys.meta_path order: this finder runs after kitty_sync's, because
sitecustomize is imported after the .pth files are processed.
"""

import json
import os
import sys

LOG = os.environ.get("KITTY_OBSERVE_LOG")
WATCHED_FILES = ("clock.json", "queue.db")


def _write(kind, **data):
    if not LOG:
        return
    line = json.dumps({"kind": kind, "pid": os.getpid(), "argv": sys.argv[1:6], **data}, default=repr)
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _watched(path):
    try:
        name = os.path.basename(os.fsdecode(path))
    except TypeError:
        return False
    return name in WATCHED_FILES or any(name.startswith(w + "-") for w in WATCHED_FILES)


def _audit(event, args):
    try:
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            path, mode, flags = args[0], args[1], args[2]
            writing = (mode is not None and any(c in str(mode) for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            )
            if writing and _watched(path):
                _write("touched", op="open", path=os.fsdecode(path), mode=str(mode))
        elif event in ("os.rename", "os.replace") and len(args) > 1 and _watched(args[1]):
            _write("touched", op=event, path=os.fsdecode(args[1]))
        elif event == "sqlite3.connect" and args and _watched(str(args[0])):
            _write("touched", op=event, path=str(args[0]))
    except Exception:
        pass


if LOG:
    sys.addaudithook(_audit)


def _observe(kind, module):
    if kind == "seams":
        def status(**kw):
            md = kw.get("metadata")
            _write(
                "produced",
                via="status",
                event_type="WPStatusChanged",
                wp_id=kw.get("wp_id"),
                from_lane=str(kw.get("from_lane")),
                to_lane=str(kw.get("to_lane")),
                causation_id=getattr(md, "causation_id", None),
                occurred_at=getattr(md, "occurred_at", None),
            )

        def lifecycle(**kw):
            env = kw.get("envelope") or {}
            _write(
                "produced",
                via="lifecycle",
                event_type=env.get("event_type"),
                event_id=env.get("event_id"),
                aggregate_id=env.get("aggregate_id"),
                occurred_at=env.get("timestamp"),
            )

        module.register_saas_fanout_handler(status)
        module.register_lifecycle_saas_fanout_handler(lifecycle)
    elif kind == "emitter":
        original = module.EventEmitter._emit

        def _emit(self, *args, **kwargs):
            event = original(self, *args, **kwargs)
            if isinstance(event, dict):
                _write(
                    "produced",
                    via="emitter",
                    event_type=event.get("event_type"),
                    event_id=event.get("event_id"),
                    aggregate_id=event.get("aggregate_id"),
                    lamport_clock=event.get("lamport_clock"),
                    occurred_at=event.get("timestamp"),
                )
            return event

        module.EventEmitter._emit = _emit


class _Loader:
    def __init__(self, loader, kind):
        self._loader, self._kind = loader, kind

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        try:
            _observe(self._kind, module)
        except Exception as e:
            _write("observer_error", error=repr(e))

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _Finder:
    WATCH = {"specify_cli.status.adapters": "seams", "specify_cli.sync.emitter": "emitter"}

    busy = set()

    def find_spec(self, fullname, path=None, target=None):
        kind = self.WATCH.get(fullname)
        if kind is None or fullname in self.busy:
            return None
        self.busy.add(fullname)
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                        spec.loader = _Loader(spec.loader, kind)
                    return spec
            return None
        finally:
            self.busy.discard(fullname)


if LOG:
    sys.meta_path.insert(0, _Finder())
