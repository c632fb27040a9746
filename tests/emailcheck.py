"""Checks of a wrapped email against its source that do not use the wrapping code: the
output is walked beside the input, and every difference must be one of our signed values in
place of an original attribute value, or the one pixel (tests/fixtures/emails/README.md).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

import ada_url

FIXTURES = Path(__file__).parent / "fixtures" / "emails"
BASE = "https://t.example.com"  # the public URL of the tests; fixtures' "already ours" links
TEMPLATED = re.compile(r"\{\{.*?\}\}|\*\|.*?\|\*|\[[A-Za-z_][\w.-]*\]|\{[A-Za-z_][\w.-]*\}")
# the test's own reading of a link tag: a regex over the fixture, as an oracle independent of
# wrap.py's tokenizer (the fixtures have no ">" inside a link tag's attribute values)
LINK_TAG = re.compile(r"<(?:a|area|v:[a-z]+)\b([^>]*)>", re.IGNORECASE)
HREF = re.compile(r"""\s([\w:-]+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s>]+))?""")
BODY_TAG = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
GMAIL_CLIP_BYTES = 102 * 1000  # Gmail shows "[Message clipped]" past about 102 KB


def fixtures() -> list[Path]:
    return sorted(FIXTURES.glob("*.html"))


@dataclass
class Diff:
    """What the walk found: each replaced value (original raw text, new raw text), the values
    of ours seen unchanged, and where the pixel went (in the source and in the output)."""

    replaced: list[tuple[str, str]]
    unchanged_ours: list[str]
    pixel_src: str | None
    pixel_at_source: int
    pixel_end_output: int


def walk(source: str, output: str) -> Diff:
    """Align ``output`` with ``source``; AssertionError at the first byte that differs
    otherwise."""
    base = re.escape(BASE)
    inserted = re.compile(
        rf'(?P<pixel><img src="(?P<src>{base}/p/[^"]+)"[^>]*>)|(?P<url>{base}/r/[^"\'\s>]*)'
    )
    diff = Diff([], [], None, -1, -1)
    i = o = 0
    for m in inserted.finditer(output):
        gap = output[o : m.start()]
        if m.group("pixel"):
            assert source.startswith(gap, i), f"differs near output offset {o}"
            assert diff.pixel_src is None, "a second pixel"
            i += len(gap)
            diff.pixel_src, diff.pixel_at_source, diff.pixel_end_output = m["src"], i, m.end()
            o = m.end()
            continue
        if source.startswith(gap, i):  # a quoted value: the same quote closes it in both
            i += len(gap)
            quote = gap[-1]
            assert quote in "\"'", f"a value of ours not in quotes at output offset {m.start()}"
            raw = source[i : source.index(quote, i)]
            assert output[m.end()] == quote
            o = m.end()
        else:  # a bare value: the output added the quotes around it
            assert gap.endswith('"'), f"differs near output offset {o}: {gap[-80:]!r}"
            assert source.startswith(gap[:-1], i), f"differs near output offset {o}"
            i += len(gap) - 1
            bare = re.match(r"[^\s>]+", source[i:])
            assert bare is not None
            raw = bare.group()
            assert output[m.end()] == '"'
            o = m.end() + 1
        i += len(raw)
        if raw == m["url"]:
            diff.unchanged_ours.append(raw)
        else:
            diff.replaced.append((raw, m["url"]))
    assert output[o:] == source[i:], "the end of the email differs"
    return diff


def eligible_hrefs(source: str) -> list[str]:
    """The raw href values that issue 9 says are tracked, in source order, read with the
    test's own regex (including those inside MSO conditional comments)."""
    found = []
    for tag in LINK_TAG.finditer(source):
        attrs: dict[str, str | None] = {}
        for name, value in HREF.findall(" " + tag.group(1).rstrip("/")):
            attrs.setdefault(name.lower(), value or None)
        raw = attrs.get("href")
        if raw is None or "data-notrack" in attrs:
            continue
        value = raw[1:-1] if raw[:1] in "\"'" else raw
        target = html.unescape(value).strip()
        if not target.lower().startswith(("http://", "https://")):
            continue
        if TEMPLATED.search(target) or target.startswith(f"{BASE}/r/"):
            continue
        found.append(value)
    return found


def expected_location(raw: str) -> str:
    """Where the original link would have taken a browser: the href, entities decoded; a
    non-ASCII one (an IRI) as the browser sends it, per the WHATWG URL parser."""
    target = html.unescape(raw).strip()
    if target.isascii():
        return target
    return str(ada_url.URL(target).href)


def pixel_rule(source: str, output: str, diff: Diff) -> None:
    """The pixel is the first thing in the body (right after ``<body ...>``), and the output
    up to its end is within what Gmail shows before it clips a message."""
    body = BODY_TAG.search(source)
    assert body is not None
    assert diff.pixel_at_source == body.end()
    assert len(output[: diff.pixel_end_output].encode()) < GMAIL_CLIP_BYTES
