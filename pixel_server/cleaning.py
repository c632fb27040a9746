"""Untrusted text made safe to store: control characters replaced, length bounded, both noted.

Only ``re``: the request path (hits.py) and the token payload (payload.py, which
``pixel-server link`` loads too, without the hit pipeline) share it.
"""

from __future__ import annotations

import re

# C0 controls, DEL and C1 controls: nothing stored may reach a header or a terminal raw
UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def clean_text(text: str, limit: int, flags: set[str]) -> str:
    """Replace control characters and cut to ``limit`` characters, noting what was done."""
    if UNSAFE.search(text):
        flags.add("control_chars")
        text = UNSAFE.sub("\ufffd", text)
    if len(text) > limit:
        flags.add("value_truncated")
        text = text[:limit]
    return text
