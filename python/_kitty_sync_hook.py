"""Start-up hook of the kitty-sync package: routes the spec-kitty CLI's events to
kitty-syncd without any change to spec-kitty.

`kitty_sync.pth` (every Python up to 3.14) and `kitty_sync.start` (PEP 829,
Python 3.15+) call `install()` at interpreter start-up. It only puts a finder
on `sys.meta_path` that waits for the few spec-kitty modules below, so an
interpreter that never loads spec-kitty pays a dictionary lookup per import.
Once such a module has run, this module attaches to it: handlers on the 3.x/4.0
fan-out seams, a wrapper around the 2.x/3.x emitter's `_emit`, 2.x's
`get_emitter`. Each of them imports `kitty_sync.spec_kitty` only when an event
arrives, so a command that produces none (`spec-kitty --version`) loads
nothing more.

`KITTY_SYNC_DISABLE=1` turns all of it off: the CLI then runs exactly as
without the package. Nothing here may raise into the program being started.
"""

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # the annotations are strings: nothing is imported at start-up
    import importlib.abc
    import importlib.machinery
    import types
    from collections.abc import Sequence

# module name -> what to do once it has been executed
_WATCHED = {
    "specify_cli.status.adapters": "seams",
    "specify_cli.sync.emitter": "emitter",
    "specify_cli.sync.events": "events",
}
_OFF_VALUES = ("", "0", "false", "no", "off")


def disabled() -> bool:
    return os.environ.get("KITTY_SYNC_DISABLE", "").strip().lower() not in _OFF_VALUES


class _Loader:
    """Runs the real loader, then attaches to the module it ran."""

    def __init__(self, loader: "importlib.abc.Loader", kind: str) -> None:
        self._loader = loader
        self._kind = kind

    def create_module(self, spec: "importlib.machinery.ModuleSpec") -> "types.ModuleType | None":
        return self._loader.create_module(spec)

    def exec_module(self, module: "types.ModuleType") -> None:
        self._loader.exec_module(module)
        try:
            _attach(self._kind, module)
        except Exception as e:  # the CLI must start whatever happens here
            sys.stderr.write(f"kitty-sync: warning: cannot attach to {module.__name__}: {e!r}\n")

    def __getattr__(self, name: str) -> object:
        # get_code, get_source, is_package, get_resource_reader, ...
        return getattr(self._loader, name)


class _Finder:
    def __init__(self) -> None:
        # Names being looked up right now: another finder that also asks the
        # rest of sys.meta_path (an observer, wrapt's post-import hooks) asks
        # us back, and must get None instead of an endless recursion.
        self._busy: set[str] = set()

    def find_spec(
        self,
        fullname: str,
        path: "Sequence[str] | None" = None,
        target: "types.ModuleType | None" = None,
    ) -> "importlib.machinery.ModuleSpec | None":
        kind = _WATCHED.get(fullname)
        if kind is None or fullname in self._busy:
            return None
        self._busy.add(fullname)
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            self._busy.discard(fullname)
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _Loader(spec.loader, kind)  # type: ignore[assignment]
        return spec

    def invalidate_caches(self) -> None:
        pass


# The handlers registered on spec-kitty's fan-out seams. They live here, with
# stable names (the registries deduplicate by module and qualified name), and
# load the transport only when an event arrives.


def on_status(**kwargs: object) -> None:
    from kitty_sync import spec_kitty

    spec_kitty.guarded(spec_kitty.on_status, kwargs)


def on_lifecycle(**kwargs: object) -> None:
    from kitty_sync import spec_kitty

    spec_kitty.guarded(spec_kitty.on_lifecycle, kwargs)


def on_resolved_binding(**kwargs: object) -> None:
    from kitty_sync import spec_kitty

    spec_kitty.guarded(spec_kitty.on_resolved_binding, kwargs)


def _attach(kind: str, module: "types.ModuleType") -> None:
    if kind == "seams":
        module.register_saas_fanout_handler(on_status)
        module.register_lifecycle_saas_fanout_handler(on_lifecycle)
        register_binding = getattr(module, "register_resolved_binding_fanout_handler", None)
        if register_binding is not None:
            register_binding(on_resolved_binding)
    elif kind == "emitter":
        cls = module.EventEmitter
        original = cls._emit

        def _emit(self: object, *args: object, **kwargs: object) -> object:
            from kitty_sync import spec_kitty

            return spec_kitty.emit_through_daemon(original, self, args, kwargs)

        _emit.__doc__ = original.__doc__
        cls._emit = _emit
    elif kind == "events" and hasattr(module, "get_emitter") and not hasattr(module, "sync_active"):
        # Only 2.x starts its own sync runtime and queue.db from get_emitter
        # (3.x builds its emitter without side effects, and has sync_active).
        def get_emitter() -> object:
            from kitty_sync.spec_kitty import _emitter

            return _emitter.legacy_emitter(module)

        get_emitter.__doc__ = "The singleton EventEmitter, with kitty-syncd as its clock and queue."
        module.get_emitter = get_emitter  # type: ignore[attr-defined]


def install() -> None:
    """Puts the finder first on sys.meta_path (once)."""
    if disabled():
        return
    for finder in sys.meta_path:
        if isinstance(finder, _Finder):
            return
    sys.meta_path.insert(0, _Finder())
