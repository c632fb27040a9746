"""The compact payload encoding of format-2 tokens (docs/tokens.md): a payload dict as bytes.

Each entry is a head byte, the key (only when it is not in :data:`KEYS`), a length and the
value's bytes; lengths are LEB128 varints (one byte below 128). The head byte is
``code << 2 | kind``: ``code`` is 1 + the key's index in :data:`KEYS`, or 0 for a key written
out (its UTF-8 bytes, after their length); ``kind`` says what the value is:

* 0 (:data:`STR`): a string, UTF-8;
* 1 (:data:`UINT`): an ``int`` from 0 up, big-endian in as few bytes as it takes (0: none);
* 2 (:data:`JSON`): anything else (``true``, ``null``, a float, a negative number, a list...)
  as compact JSON, so every JSON payload round-trips exactly.

Any key works (a new control key, an extra field) without a format change: keys outside the
table are written by name. :data:`KEYS` is append-only: an entry is never renumbered or
removed, or tokens already sent would decode under the wrong key names.

:func:`deflate` and :func:`inflate` are raw DEFLATE (RFC 1951) with the preset dictionary
:data:`DICTIONARY` (the pieces of an email link's URL that recur), also fixed forever.

Only the standard library: ``pixel-server link`` imports this module and has to start fast.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from typing import Any

STR, UINT, JSON = 0, 1, 2
# the payload keys written as one byte, by position (append-only: see the module docstring);
# t and n: the trap-link and notrack keys (issue 9)
KEYS = (
    "u",
    "x",
    "a",
    "s",
    "m",
    "cid",
    "uid",
    "sid",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "utm_id",
    "eid",
    "e",
    "ref",
    "t",
    "n",
)
_CODES = {key: code for code, key in enumerate(KEYS, 1)}
# what recurs in the targets and ids of an email's links, most frequent last (a match close to
# the end is cheaper); fixed forever, like KEYS
DICTIONARY = (
    b".html.php.aspx/index/en/products/blog/news/event/account/login/unsubscribe/preferences"
    b"?id=?ref=&ref=mail.org/.net/.io/.co.uk/.de/.fr/.com/http://www.https://www."
    b"utm_content=utm_term=&utm_id=&utm_term=&utm_content=newslettercampaignpromoemail"
    b"?utm_source=newsletter&utm_medium=email&utm_campaign=https://"
)
_WBITS = -15  # raw DEFLATE: no zlib header or checksum (the token's tag covers the bytes)


class Undecodable(ValueError):
    """Bytes that are not a compact payload (never raised for what :func:`encode` wrote)."""


def encode(payload: Mapping[str, Any]) -> bytes:
    """The compact bytes of ``payload`` (its keys in order). TypeError: not JSON-able."""
    out = bytearray()
    for key, value in payload.items():
        if type(value) is str:
            kind, data = STR, value.encode("utf-8", "surrogatepass")
        elif type(value) is int and value >= 0:
            kind, data = UINT, value.to_bytes((value.bit_length() + 7) // 8, "big")
        else:
            kind = JSON
            data = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(
                "utf-8", "surrogatepass"
            )
        code = _CODES.get(key, 0)
        out.append(code << 2 | kind)
        if not code:
            if type(key) is not str:
                raise TypeError(f"payload keys must be strings, not {type(key).__name__}")
            name = key.encode("utf-8", "surrogatepass")
            _varint(out, len(name))
            out += name
        _varint(out, len(data))
        out += data
    return bytes(out)


def decode(data: bytes) -> dict[str, Any]:
    """The payload :func:`encode` wrote as ``data``, or :class:`Undecodable`."""
    payload: dict[str, Any] = {}
    at, end = 0, len(data)
    try:
        while at < end:
            head = data[at]
            size = data[at + 1]
            at += 2
            code = head >> 2
            if code:
                key = KEYS[code - 1]
            else:
                if size > 127:
                    size, at = _long_varint(data, at, size)
                key = data[at : at + size].decode("utf-8", "surrogatepass")
                at += size
                size = data[at]
                at += 1
            if size > 127:
                size, at = _long_varint(data, at, size)
            value = data[at : at + size]
            at += size
            if at > end:
                raise Undecodable("truncated")
            kind = head & 3
            if kind == STR:
                payload[key] = value.decode("utf-8", "surrogatepass")
            elif kind == UINT:
                payload[key] = int.from_bytes(value, "big")
            elif kind == JSON:
                payload[key] = json.loads(value.decode("utf-8", "surrogatepass"))
            else:
                raise Undecodable("unknown kind")
    except (IndexError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError too
        raise Undecodable(str(exc)) from None
    return payload


def deflate(data: bytes) -> bytes:
    """``data`` compressed with the preset dictionary (a small window: tokens are short)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -10, 4, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)
    return compressor.compress(data) + compressor.flush()


def inflate(data: bytes) -> bytes:
    """What :func:`deflate` compressed, or :class:`Undecodable`. Only call it on bytes whose
    tag verified: nothing bounds the output but the token's own length."""
    inflater = zlib.decompressobj(_WBITS, DICTIONARY)
    try:
        out = inflater.decompress(data)
    except zlib.error as exc:
        raise Undecodable(str(exc)) from None
    if not inflater.eof or inflater.unused_data:
        raise Undecodable("not one complete DEFLATE stream")
    return out


def _varint(out: bytearray, number: int) -> None:
    while number > 127:
        out.append(number & 127 | 128)
        number >>= 7
    out.append(number)


def _long_varint(data: bytes, at: int, first: int) -> tuple[int, int]:
    """The rest of a varint whose first byte, ``first``, had its high bit set."""
    number, shift = first & 127, 7
    while True:
        byte = data[at]
        at += 1
        number |= (byte & 127) << shift
        if byte < 128:
            return number, at
        shift += 7
        if shift > 28:
            raise Undecodable("length too large")
