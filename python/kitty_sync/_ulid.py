"""ULIDs: 48 bits of milliseconds, 80 random bits, Crockford base 32.

Every draft gets one before it is first sent, so that a retry (after a timeout,
through the fallback) leaves one row, not two.
"""

from __future__ import annotations

import os
import re
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PATTERN = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


def new_ulid() -> str:
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def is_ulid(text: object) -> bool:
    # The first character carries only 3 bits: 7ZZZ... is the largest ULID.
    return isinstance(text, str) and bool(_PATTERN.match(text)) and text[0] <= "7"
