"""Email addresses in text: found, and taken out of what a hit stores.

One pattern for the two places that care: minting refuses a link or pixel whose ids or fields
hold an address (links.py: a token is readable by anyone who sees its URL), and a hit keeps no
address it was sent in a query, a URL or an event's parameters (privacy.py, like GA4's
default data redaction). An address is a local part, ``@`` (or its percent-encoding ``%40``),
and dotted labels ending in letters (or an IDN's ``xn--`` form); an image's density suffix
(``hero@2x.png``) is not one. Only the standard library: ``pixel-server link`` imports it.
"""

from __future__ import annotations

import re

ADDRESS = re.compile(
    r"[\w.%+'-]+(?:@|%40)(?!\d+(?:\.\d+)?x\.)(?:[\w-]+\.)+(?:[^\W\d_]{2,}|xn--[\w-]+)(?![\w-])"
)
REDACTED = "[email]"


def may_hold(text: str) -> bool:
    """Whether ``text`` has an ``@`` or ``%40`` at all: the cheap test before the pattern."""
    return "@" in text or "%40" in text


def has_address(text: str) -> bool:
    """Whether ``text`` holds an email address, as given or percent-encoded."""
    return may_hold(text) and ADDRESS.search(text) is not None


def redact(text: str) -> str:
    """``text`` with each email address in it replaced by :data:`REDACTED`."""
    return ADDRESS.sub(REDACTED, text) if may_hold(text) else text
