"""How long a typical wrapped link and open pixel are, as ``pixel-server wrap`` writes them.

    .venv/bin/python bench/token_length.py
    PYTHONPATH=<another tree> .venv/bin/python bench/token_length.py   # e.g. a release

The typical email (docs/tokens.md): a public host over https, a target with its own UTM query,
the ids a send carries (``cid``, ``uid``, the three UTM fields), the send time ``s`` and the
message id ``m``. Printed: the length of each URL, and the URLs themselves.
"""

from __future__ import annotations

from typing import Any

from pixel_server.keys import Keyring
from pixel_server.links import Minter, Spec
from pixel_server.signing import PIXEL_SALT, REDIRECT_SALT, TokenSigner
from pixel_server.urls import TargetPolicy

BASE_URL = "https://t.example.com"
TARGET = (
    "https://shop.example.com/spring/sale"
    "?utm_source=newsletter&utm_medium=email&utm_campaign=spring-2026"
)
IDS = {
    "cid": "spring",
    "uid": "r-1042",
    "utm_source": "newsletter",
    "utm_medium": "email",
    "utm_campaign": "spring-2026",
}
SENT = 1_772_355_600  # 2026-03-01T09:00:00Z
MESSAGE = "spring-1"
KEYS = Keyring("k1", {"k1": "bench-only-signing-key-0123456789abcdef"})
# the typical link's payload, as payload.build writes it (bench/request_cost.py serves it)
LINK_PAYLOAD: dict[str, Any] = {**IDS, "u": TARGET, "s": SENT, "m": MESSAGE}
PIXEL_PAYLOAD: dict[str, Any] = {**IDS, "s": SENT, "m": MESSAGE}


def typical() -> tuple[str, str]:
    """The typical wrapped link and open pixel URL."""
    spec = Spec(dict(IDS)).sent_as(SENT, MESSAGE)
    link = Minter(TokenSigner(KEYS, REDIRECT_SALT), BASE_URL, TargetPolicy(), 2048).mint(
        spec, TARGET
    )
    pixel = Minter(TokenSigner(KEYS, PIXEL_SALT), BASE_URL, None, 2048).mint(spec)
    return link, pixel


def main() -> None:
    link, pixel = typical()
    print(f"link  {len(link):4d} chars  {link}")
    print(f"pixel {len(pixel):4d} chars  {pixel}")


if __name__ == "__main__":
    main()
