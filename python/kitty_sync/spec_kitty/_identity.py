"""The project an event belongs to (project_uuid, project_slug), read from the
checkout's `.kittify/config.yaml` through the CLI's own read-only loader, for
events whose producer left them out."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

_cache: dict[str, tuple[str | None, str | None]] = {}


def repo_root_of(start: Any) -> Path | None:
    """The nearest directory at or above `start` that holds `.kittify/`."""
    if start is None:
        return None
    try:
        path = Path(start).resolve()
    except (OSError, TypeError, ValueError):
        return None
    if path.is_file() or not path.exists():
        path = path.parent
    for candidate in (path, *path.parents):
        if (candidate / ".kittify").is_dir():
            return candidate
    return None


def project_of(repo_root: Path | None) -> tuple[str | None, str | None]:
    """(project_uuid, project_slug) of the checkout, (None, None) when unknown."""
    if repo_root is None:
        return None, None
    key = os.fspath(repo_root)
    if key not in _cache:
        _cache[key] = _load(repo_root)
    return _cache[key]


def _load(repo_root: Path) -> tuple[str | None, str | None]:
    try:
        from specify_cli.identity.project import load_identity  # 3.x, 4.x
    except ImportError:
        try:
            from specify_cli.sync.project_identity import load_identity  # 2.x
        except ImportError:
            return None, None
    try:
        identity = load_identity(repo_root / ".kittify" / "config.yaml")
    except Exception:
        return None, None
    uuid = getattr(identity, "project_uuid", None)
    slug = getattr(identity, "project_slug", None)
    return (str(uuid) if uuid else None), (str(slug) if slug else None)


def fill_project(draft: dict[str, Any], repo_root: Path | None) -> None:
    """Sets project_uuid/project_slug from the checkout where the producer gave none."""
    if draft.get("project_uuid") and draft.get("project_slug"):
        return
    uuid, slug = project_of(repo_root)
    if uuid and not draft.get("project_uuid"):
        draft["project_uuid"] = uuid
    if slug and not draft.get("project_slug"):
        draft["project_slug"] = slug
