"""Where the daemon lives, by the rules kitty-syncd and kitty-sync read:
`<home>` is `$SPEC_KITTY_HOME` when set and not empty, else `~/.spec-kitty`;
the socket is `$KITTY_SYNCD_SOCKET` when set and not empty, else
`<home>/kitty-syncd.sock`."""

from __future__ import annotations

import os
from collections.abc import Mapping

HOME_ENV = "SPEC_KITTY_HOME"
SOCKET_ENV = "KITTY_SYNCD_SOCKET"
SOCKET_NAME = "kitty-syncd.sock"
# Lines the spec-kitty transport could not hand over: the daemon refused them.
REFUSED_NAME = "kitty-sync-refused.jsonl"


def home_dir(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    given = env.get(HOME_ENV)
    if given:
        return given
    user_home = env.get("HOME") or os.path.expanduser("~")
    return os.path.join(user_home, ".spec-kitty")


def socket_path(home: str, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get(SOCKET_ENV) or os.path.join(home, SOCKET_NAME)
