"""Wrapping an HTML email: every tracked link's ``href`` replaced by a signed redirect and one
open pixel put near the top of the body, by source positions (issue 9, section 1).

The output is the input byte for byte except the rewritten attribute values and the inserted
pixel: nothing is re-serialised. The standard library's tokenizer (``html.parser``) finds the
start tags; each tag's attributes are located in its raw text with the tokenizer's own
attribute pattern, the way ``HTMLParser.parse_starttag`` reads them, and a tag whose values
do not come out exactly as the tokenizer reported them is left alone (never corrupted).
MSO conditional comments (``<!--[if mso]> ... <![endif]-->``) are tokenized too, at their
offset, so Outlook's VML buttons (``<v:roundrect href=...>``) are tracked like the links
beside them.

A :class:`Template` is tokenized once; :meth:`Template.render` signs per recipient, so a
batch costs one tokenization and then string joins. This module only finds and replaces; the
URLs come from the caller (a function from each link's target to its signed URL, and the
pixel's URL); ``pixel-server wrap`` (wrap_cli.py) and ``POST /api/wrap`` (wrap_api.py) call
it. The trap link (``--trap``) is :data:`TRAP_TAG`, put before the pixel.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser, attrfind_tolerant, tagfind_tolerant  # type: ignore[attr-defined]

# templated hrefs of the common senders, left for the sender's own merge step: {{ ... }}
# (Jinja, Handlebars, Liquid), *|UNSUB|* (Mailchimp), [unsubscribe_link], {unsubscribe_url}
TEMPLATE_PATTERNS = (
    r"\{\{.*?\}\}",
    r"\*\|.*?\|\*",
    r"\[[A-Za-z_][\w.-]*\]",
    r"\{[A-Za-z_][\w.-]*\}",
)
MAX_PATTERNS, MAX_PATTERN_CHARS = 20, 200  # a sender's own merge tags (skip_patterns)
LINK_TAGS = frozenset(("a", "area"))  # and every VML tag (v:...) with an href
MSO_COMMENT = re.compile(r"\[if [^\]]*mso[^\]]*\]>", re.IGNORECASE)
# the trap link (bursts.py): what a gateway following every href finds and a person never
# sees. Hidden every way a mail client honours one: display:none (Gmail, Apple Mail),
# mso-hide:all (Outlook's Word engine), nothing to click (a zero-width space at font-size 0),
# aria-hidden and tabindex -1 so no screen reader or keyboard lands on it; rel=nofollow for
# the crawlers that respect it (mautic#9798's honeypot)
TRAP_TAG = (
    '<a href="{src}" rel="nofollow" aria-hidden="true" tabindex="-1"'
    ' style="display:none;mso-hide:all;font-size:0;line-height:0;max-height:0;'
    'overflow:hidden;color:transparent;text-decoration:none">&#8203;</a>'
)
PIXEL_TAG = (
    '<img src="{src}" width="1" height="1" alt="" border="0"'
    ' style="display:block;width:1px;height:1px;border:0;margin:0;padding:0">'
)


@dataclass(frozen=True, slots=True)
class Link:
    """A tracked link: where its value is in the source (``start`` to ``end``; ``quoted``:
    between quotes, else a bare value) and its target (entities decoded)."""

    start: int
    end: int
    quoted: bool
    target: str


def skip_patterns(extra: Sequence[str]) -> tuple[str, ...]:
    """TEMPLATE_PATTERNS and ``extra``: regular expressions of the sender's own merge tags
    (``%%unsubscribe%%``: ``%%\\w+%%``), searched in each href; ValueError names a bad one."""
    if len(extra) > MAX_PATTERNS:
        raise ValueError(f"at most {MAX_PATTERNS} patterns of links to leave alone")
    for pattern in extra:
        shown = pattern[:40]
        if not 1 <= len(pattern) <= MAX_PATTERN_CHARS:
            raise ValueError(f"a pattern is 1 to {MAX_PATTERN_CHARS} characters: {shown!r}")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"pattern {shown!r} is not a regular expression: {exc}") from None
    return (*TEMPLATE_PATTERNS, *extra)


@dataclass(frozen=True, slots=True)
class Template:
    """An email's source, its tracked links and where the pixel goes."""

    source: str
    links: tuple[Link, ...]
    pixel_at: int

    @classmethod
    def parse(
        cls,
        source: str,
        *,
        wrapped_prefix: str | None = None,
        skip: Sequence[str] = TEMPLATE_PATTERNS,
    ) -> Template:
        """Tokenize ``source`` once. ``wrapped_prefix`` (our redirect URLs' start, e.g.
        ``https://t.example/r/``): links already wrapped are left as they are; ``skip``:
        patterns of templated hrefs to leave for the sender's merge."""
        scanner = _Scanner(source, 0, _Rules(wrapped_prefix, [re.compile(p) for p in skip]))
        scanner.feed(source)
        scanner.close()
        links = tuple(sorted(scanner.links, key=lambda link: link.start))
        return cls(source, links, scanner.pixel_at)

    def render(
        self, link_url: Callable[[str], str], pixel_url: str | None, trap_url: str | None = None
    ) -> str:
        """The email with each link's value replaced by ``link_url(target)`` and, unless
        ``pixel_url`` is None, the pixel inserted (after the trap link, if ``trap_url``)."""
        return self.compiled().render(link_url, pixel_url, trap_url)

    def compiled(self, escape: Callable[[str], str] | None = None) -> Compiled:
        """The source cut once at the links and the pixel, for rendering many recipients;
        with ``escape`` (a per-character transform, e.g. JSON string escaping), the text
        between them is escaped once here and only the new values at each render."""
        cuts: list[tuple[int, int, Link | None]] = [
            (link.start, link.end, link) for link in self.links
        ]
        cuts.append((self.pixel_at, self.pixel_at, None))
        cuts.sort(key=lambda cut: (cut[0], cut[1]))
        pieces, at = [], 0
        for start, end, _ in cuts:
            pieces.append(self.source[at:start])
            at = end
        pieces.append(self.source[at:])
        if escape is not None:
            pieces = [escape(piece) for piece in pieces]
        return Compiled(tuple(pieces), tuple(link for _, _, link in cuts), escape)

    def targets(self) -> list[str]:
        """The distinct targets, in the order they first appear."""
        return list(dict.fromkeys(link.target for link in self.links))


@dataclass(frozen=True, slots=True)
class Compiled:
    """A template's text between its slots (:meth:`Template.compiled`): ``pieces`` has one
    more item than ``slots``; a slot is a link, or None for the pixel."""

    pieces: tuple[str, ...]
    slots: tuple[Link | None, ...]
    escape: Callable[[str], str] | None

    def render(
        self, link_url: Callable[[str], str], pixel_url: str | None, trap_url: str | None = None
    ) -> str:
        """As :meth:`Template.render`, escaped as the template was compiled."""
        at_top = "" if trap_url is None else TRAP_TAG.format(src=html.escape(trap_url))
        if pixel_url is not None:
            at_top += PIXEL_TAG.format(src=html.escape(pixel_url))
        out = [self.pieces[0]]
        for slot, piece in zip(self.slots, self.pieces[1:], strict=True):
            value = at_top if slot is None else _value(link_url(slot.target), slot.quoted)
            out += (value if self.escape is None else self.escape(value), piece)
        return "".join(out)


def _value(url: str, quoted: bool) -> str:
    escaped = html.escape(url, quote=True)
    return escaped if quoted else f'"{escaped}"'


@dataclass(frozen=True, slots=True)
class _Rules:
    wrapped_prefix: str | None
    skip: list[re.Pattern[str]]

    def tracks(self, target: str) -> bool:
        """A link worth wrapping: http(s), not a fragment, not templated, not ours already."""
        text = target.strip()
        if not text.lower().startswith(("http://", "https://")):
            return False  # mailto:, tel:, #anchors, relative, empty, javascript: ...
        if any(pattern.search(text) for pattern in self.skip):
            return False
        return not (self.wrapped_prefix and text.startswith(self.wrapped_prefix))


class _Scanner(HTMLParser):
    """Collects the tracked links of ``source`` (which starts at ``base`` in the email)."""

    def __init__(self, source: str, base: int, rules: _Rules) -> None:
        super().__init__(convert_charrefs=False)
        self.source, self.base, self.rules = source, base, rules
        self.line_starts = [0, *(m.end() for m in re.finditer("\n", source))]
        self.links: list[Link] = []
        self.pixel_at = base  # after <body ...>, else where the source starts
        self._body_seen = False

    def _offset(self) -> int:
        line, column = self.getpos()
        return self.line_starts[line - 1] + column

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, attrs)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, attrs)

    def _tag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raw = self.get_starttag_text() or ""
        start = self._offset()
        if self.source[start : start + len(raw)] != raw:
            return  # positions not as expected: leave the tag alone
        if tag == "body" and not self._body_seen and self.base == 0:
            self._body_seen = True
            self.pixel_at = start + len(raw)
        if tag not in LINK_TAGS and not tag.startswith("v:"):
            return
        spans = _attribute_spans(raw)
        if spans is None or [(name, value) for name, value, _ in spans] != attrs:
            return  # not read as the tokenizer read it
        names = {name for name, _ in attrs}
        if "data-notrack" in names:
            return
        # the first href is the one a browser follows
        href = next((span for span in spans if span[0] == "href"), None)
        if href is None or href[1] is None or not self.rules.tracks(href[1]):
            return
        value, (value_start, value_end) = href[1], href[2]
        quoted = raw[value_start] in "'\""
        if quoted:
            value_start, value_end = value_start + 1, value_end - 1
        absolute = self.base + start
        self.links.append(Link(absolute + value_start, absolute + value_end, quoted, value.strip()))

    def handle_comment(self, data: str) -> None:
        if not MSO_COMMENT.match(data):
            return
        start = self._offset() + 4  # after "<!--"
        if self.source[start : start + len(data)] != data:
            return
        inner = _Scanner(data, self.base + start, self.rules)
        inner.feed(data)
        inner.close()
        self.links += inner.links


def _attribute_spans(raw: str) -> list[tuple[str, str | None, tuple[int, int]]] | None:
    """The attributes of a start tag's raw text as ``HTMLParser.parse_starttag`` reads them,
    each with the span of its value in ``raw`` (quotes included)."""
    match = tagfind_tolerant.match(raw, 1)
    if match is None:
        return None
    spans = []
    k = match.end()
    while k < len(raw):
        m = attrfind_tolerant.match(raw, k)
        if not m:
            break
        name, rest, value = m.group(1, 2, 3)
        span = m.span(3)
        if not rest:
            value = None
        elif value[:1] == "'" == value[-1:] or value[:1] == '"' == value[-1:]:
            value = value[1:-1]
        if value:
            value = html.unescape(value)
        spans.append((name.lower(), value, span))
        k = m.end()
    return spans
