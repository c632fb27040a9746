"""The typical wrapped email's link and pixel stay short enough for real emails (issue 9
section 5; bench/token_length.py prints them, docs/tokens.md has the figures)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import token_length  # bench/ is not a package: found on sys.path

from pixel_server.signing import PIXEL_SALT, REDIRECT_SALT, TokenSigner

LINK_BOUND = 180  # format 1 wrote 275 characters
PIXEL_BOUND = 130  # format 1 wrote 218


def test_the_typical_link_and_pixel_are_short() -> None:
    """Under the bounds docs/tokens.md promises, and they verify to the typical payload."""
    link, pixel = token_length.typical()
    assert len(link) < LINK_BOUND, link
    assert len(pixel) < PIXEL_BOUND, pixel
    token = link.removeprefix(f"{token_length.BASE_URL}/r/")
    assert TokenSigner(token_length.KEYS, REDIRECT_SALT).loads(token) == token_length.LINK_PAYLOAD
    token = pixel.removeprefix(f"{token_length.BASE_URL}/p/").removesuffix(".gif")
    assert TokenSigner(token_length.KEYS, PIXEL_SALT).loads(token) == token_length.PIXEL_PAYLOAD
