"""Wrapping an HTML email (wrap.py): tracked links rewritten and the pixel inserted by source
positions, everything else byte for byte."""

from __future__ import annotations

import functools
import html
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from pixel_server.wrap import PIXEL_TAG, Template

OURS = "https://t.example/r/"
PIXEL = "https://t.example/p/PX.gif"


def signed(target: str) -> str:
    """A stand-in for the signer: the target, recognisable, with a character to escape."""
    return f"{OURS}tok?u={quote(target, safe='')}&s=1"


EMAIL = """<!DOCTYPE html>
<html lang="de"><head><meta charset="utf-8"><style>a { color: #c00 }</style>
<!--[if mso]><xml><o:OfficeDocumentSettings></o:OfficeDocumentSettings></xml><![endif]-->
</head>
<body style="margin:0;padding:0" class="body">
<table role="presentation"><tr><td style="font-family: 'Helvetica Neue', Arial">
<p>Grüße, Zoë — 春の セール &amp; more &#9731;</p>
<a href="https://shop.example/sale?utm_source=nl&amp;utm_medium=email#top" style="color:#fff"
>Shop</a>
<a HREF='https://shop.example/it%C3%A9m?q=a+b'>Item</a>
<a class=x href=https://bare.example/p>Bare</a>
<!--[if mso]>
<v:roundrect xmlns:v="urn:schemas-microsoft-com:vml" href="https://shop.example/vml" arcsize="10%">
<w:anchorlock/><center>Buy</center></v:roundrect>
<![endif]-->
<a href="mailto:help@shop.example">Mail</a> <a href="tel:+4930123">Call</a>
<a href="#section">Anchor</a> <a href="">Empty</a> <a>No href</a>
<a href="{{ unsubscribe_url }}">Unsubscribe</a> <a href="*|UNSUB|*">Unsub</a>
<a href="[unsubscribe_link]">U3</a> <a href="{unsubscribe_url}">U4</a>
<a href="https://private.example/" data-notrack>Not tracked</a>
<a href="https://t.example/r/already">Ours already</a>
<!-- <a href="https://commented.example/">a comment is no link</a> -->
</td></tr></table>
</body>
</html>
"""
TRACKED = [
    "https://shop.example/sale?utm_source=nl&utm_medium=email#top",
    "https://shop.example/it%C3%A9m?q=a+b",
    "https://bare.example/p",
    "https://shop.example/vml",
]


def test_an_email_is_wrapped_and_the_rest_kept_byte_for_byte() -> None:
    template = Template.parse(EMAIL, wrapped_prefix=OURS)
    assert [link.target for link in template.links] == TRACKED
    out = template.render(signed, PIXEL)
    pixel = PIXEL_TAG.format(src=PIXEL)
    # the pixel right after <body ...>, near the top (Gmail clips long messages)
    body_end = EMAIL.index('class="body">') + len('class="body">')
    assert out.index(pixel) == body_end

    # what changed: the four values (a bare one gains quotes) and the pixel; nothing else
    def value(target: str) -> str:
        return html.escape(signed(target), quote=True)

    expected = EMAIL[:body_end] + pixel + EMAIL[body_end:]
    for before, after in [
        (
            'href="https://shop.example/sale?utm_source=nl&amp;utm_medium=email#top"',
            f'href="{value(TRACKED[0])}"',
        ),
        ("HREF='https://shop.example/it%C3%A9m?q=a+b'", f"HREF='{value(TRACKED[1])}'"),
        ("href=https://bare.example/p>", f'href="{value(TRACKED[2])}">'),
        ('href="https://shop.example/vml"', f'href="{value(TRACKED[3])}"'),
    ]:
        assert expected.count(before) == 1
        expected = expected.replace(before, after)
    assert out == expected
    # each value is escaped for its attribute: an & in a signed URL is &amp;
    assert html.escape(signed(TRACKED[0]), quote=True) in out
    assert "&s=1" not in out.replace("&amp;s=1", "")


def test_an_unquoted_value_gets_quotes() -> None:
    out = Template.parse("<a href=https://bare.example/p>x</a>").render(signed, None)
    assert out == f'<a href="{html.escape(signed("https://bare.example/p"))}">x</a>'


def test_without_a_body_the_pixel_starts_the_fragment() -> None:
    out = Template.parse("<p>Hi</p>").render(signed, PIXEL)
    assert out == PIXEL_TAG.format(src=PIXEL) + "<p>Hi</p>"


def test_no_pixel_when_none_is_asked() -> None:
    assert Template.parse(EMAIL).render(lambda url: url, None).count("<img") == 0


def test_skip_patterns_are_configurable() -> None:
    source = '<a href="https://x.example/?id=%%ID%%">x</a> <a href="https://y.example/">y</a>'
    template = Template.parse(source, skip=[r"%%\w+%%"])
    assert [link.target for link in template.links] == ["https://y.example/"]


def per_recipient(uid: str, url: str) -> str:
    return f"{OURS}{uid}/{quote(url)}"


def test_a_batch_tokenizes_once_and_renders_per_recipient() -> None:
    template = Template.parse(EMAIL, wrapped_prefix=OURS)
    outs = [
        template.render(functools.partial(per_recipient, uid), f"{PIXEL}?{uid}")
        for uid in ("1", "2")
    ]
    assert outs[0] != outs[1]
    assert all(out.count(OURS) == len(TRACKED) + 1 for out in outs)  # + the one already ours


# generated emails: pieces whose tracking the generator knows
# no NUL: the property test below uses it as a stand-in value
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="<>&\"'\x00"), max_size=8)
URL = st.builds(lambda path: f"https://ex.example/{quote(path)}", TEXT)


@st.composite
def pieces(draw: st.DrawFn) -> tuple[str, list[str]]:
    kind = draw(
        st.sampled_from(
            ["text", "link", "quoted1", "bare", "mailto", "comment", "mso", "notrack", "entity"]
        )
    )
    url = draw(URL)
    text = draw(TEXT)
    if kind == "text":
        return html.escape(text), []
    if kind == "link":
        return f'<a href="{html.escape(url)}">{html.escape(text)}</a>', [url]
    if kind == "quoted1":
        return f"<a class='c' href='{html.escape(url)}'>t</a>", [url]
    if kind == "bare":
        return f"<A HREF={url}>t</A>", [url]
    if kind == "entity":
        return f'<a href="{url}?a=1&amp;b=2">t</a>', [f"{url}?a=1&b=2"]
    if kind == "mailto":
        return '<a href="mailto:x@y.z">m</a>', []
    if kind == "comment":
        return f'<!-- <a href="{url}"> -->', []
    if kind == "mso":
        return f'<!--[if mso]><v:rect href="{url}"></v:rect><![endif]-->', [url]
    return f'<a data-notrack="" href="{url}">n</a>', []


@settings(max_examples=300, deadline=None)
@given(st.lists(pieces(), max_size=12), st.sampled_from(["", "\n", "\r\n"]))
def test_generated_emails(parts: list[tuple[str, list[str]]], newline: str) -> None:
    source = "<html><body>" + newline.join(part for part, _ in parts) + "</body></html>"
    template = Template.parse(source)
    assert [link.target for link in template.links] == [url for _, urls in parts for url in urls]
    # with each value put back as it was and no pixel, the output is the input
    same = template.render(lambda url: "\x00", None)
    for link in template.links:  # a bare value came back quoted
        same = same.replace("\x00" if link.quoted else '"\x00"', source[link.start : link.end], 1)
    assert same == source


def test_only_the_first_href_counts() -> None:
    """A browser follows the first of two href attributes: if it is not tracked, neither is
    the tag."""
    source = '<a href="mailto:x@y.z" href="https://x.example/">m</a>'
    assert Template.parse(source).links == ()
    two = '<a href="https://x.example/" href="https://y.example/">m</a>'
    assert [link.target for link in Template.parse(two).links] == ["https://x.example/"]


ODD = st.text(st.characters(codec="utf-8", exclude_characters="<>"), max_size=6)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(ODD, URL), max_size=5), ODD, st.booleans())
def test_compiled_with_an_escape_is_the_escaped_render(
    parts: list[tuple[str, str]], tail: str, pixel: bool
) -> None:
    """What --recipients NDJSON relies on: the text between the slots escaped once (JSON,
    with the NDJSON line-end escapes) joins to the escape of the whole email, and the line
    reads back as the email."""
    import json

    from pixel_server.wrap_cli import _json_head, _json_text

    source = "<body>" + "".join(f'{text}<a href="{html.escape(url)}">x</a>' for text, url in parts)
    source += tail
    template = Template.parse(source)
    pixel_url = PIXEL if pixel else None
    whole = template.render(signed, pixel_url)
    assert template.compiled().render(signed, pixel_url) == whole
    escaped = template.compiled(_json_text).render(signed, pixel_url)
    assert escaped == _json_text(whole)
    line = _json_head({"uid": 'u\u2028"1'}) + escaped + '"}\n'
    assert line.count("\n") == 1
    assert json.loads(line) == {"uid": 'u\u2028"1', "html": whole}
