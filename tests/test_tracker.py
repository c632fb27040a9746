"""Serving t.js: ``GET|HEAD /t.js`` and ``/t.<hash>.js`` (pixel_server/tracker.py)."""

from __future__ import annotations

import gzip
import re

import httpx
import pytest

from pixel_server.tracker import SOURCE, TrackerScript, accepts_gzip, served_source

from conftest import Harness

BUDGET = 3072  # bytes of t.js gzipped, as served (docs/tracker.md)
SCRIPT = TrackerScript()
GZIP = {"accept-encoding": "gzip"}
IDENTITY = {"accept-encoding": "identity"}


async def raw(h: Harness, path: str, headers: dict[str, str]) -> tuple[httpx.Headers, bytes]:
    """The headers and body of a GET as sent (httpx would decode a gzip body)."""
    async with h.client.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200
        return response.headers, b"".join([chunk async for chunk in response.aiter_raw()])


async def test_t_js_is_javascript_cached_for_five_minutes(harness: Harness) -> None:
    """/t.js answers the script with its type, nosniff, a short public cache and an ETag."""
    response = await harness.client.get("/t.js", headers=IDENTITY)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "public, max-age=300"
    assert response.headers["etag"] == f'"{SCRIPT.digest}"'
    assert response.headers["vary"] == "accept-encoding"
    assert "content-encoding" not in response.headers
    assert response.content == SCRIPT.body
    assert int(response.headers["content-length"]) == len(SCRIPT.body)


async def test_the_hashed_url_is_the_same_script_cached_for_a_year(harness: Harness) -> None:
    """/t.<hash>.js, the hash being the ETag's, is the same bytes, immutable for a year."""
    etag = (await harness.client.get("/t.js")).headers["etag"]
    digest = re.fullmatch(r'"([0-9a-f]{16})(?:-gzip)?"', etag)
    assert digest is not None
    response = await harness.client.get(f"/t.{digest[1]}.js", headers=IDENTITY)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.content == SCRIPT.body


@pytest.mark.parametrize("path", ["/t.0000000000000000.js", "/t.js.js", "/t..js"])
async def test_another_hash_is_not_found(harness: Harness, path: str) -> None:
    """A hash that is not the current script's is 404, never an old or other script."""
    response = await harness.client.get(path)
    assert response.status_code == 404
    assert "javascript" not in response.headers.get("content-type", "")
    assert "immutable" not in response.headers.get("cache-control", "")


async def test_gzip_goes_to_clients_that_accept_it(harness: Harness) -> None:
    """With Accept-Encoding: gzip the body is gzip of the same script, with its own ETag."""
    headers, body = await raw(harness, "/t.js", GZIP)
    assert headers["content-encoding"] == "gzip"
    assert headers["etag"] == f'"{SCRIPT.digest}-gzip"'
    assert int(headers["content-length"]) == len(body)
    assert gzip.decompress(body) == SCRIPT.body


async def test_t_js_is_at_most_3_kb_gzipped_as_served(harness: Harness) -> None:
    """The size budget, measured on the served bytes: the gzip body sent, and the identity
    body gzipped at the best level."""
    _, sent = await raw(harness, "/t.js", GZIP)
    identity = await harness.client.get("/t.js", headers=IDENTITY)
    assert len(sent) <= BUDGET
    assert len(gzip.compress(identity.content, 9)) <= BUDGET


@pytest.mark.parametrize("path", ["/t.js", f"/t.{SCRIPT.digest}.js"])
@pytest.mark.parametrize("headers", [GZIP, IDENTITY], ids=["gzip", "identity"])
async def test_head_has_the_headers_of_get_and_no_body(
    harness: Harness, path: str, headers: dict[str, str]
) -> None:
    """HEAD answers GET's status and headers, Content-Length included, without the body."""
    get_headers, _ = await raw(harness, path, headers)
    head = await harness.client.head(path, headers=headers)
    assert head.status_code == 200
    assert head.content == b""
    assert dict(head.headers) == dict(get_headers)


@pytest.mark.parametrize("encoding", ["gzip", "identity"])
async def test_a_matching_if_none_match_is_304(harness: Harness, encoding: str) -> None:
    """A client that has the script (either encoding's ETag, or W/) gets 304 and no body."""
    first = await harness.client.get("/t.js", headers={"accept-encoding": encoding})
    etag = first.headers["etag"]
    for tag in (etag, f"W/{etag}", f'"other", {etag}'):
        response = await harness.client.get("/t.js", headers={"if-none-match": tag})
        assert response.status_code == 304
        assert response.content == b""
        assert response.headers["cache-control"] == "public, max-age=300"
    stale = await harness.client.get("/t.js", headers={"if-none-match": '"0000000000000000"'})
    assert stale.status_code == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
async def test_other_methods_are_405(harness: Harness, method: str) -> None:
    """Only GET and HEAD."""
    response = await harness.client.request(method, "/t.js")
    assert response.status_code == 405
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}


def test_served_source_drops_only_comment_lines_indentation_and_blank_lines() -> None:
    """Code lines are kept whole and in order, trailing comments and all."""
    source = "// head\n(() => {\n  // why\n\n  const a = 'http://x'; // kept\n    f(a);\n})();\n"
    assert served_source(source) == b"(() => {\nconst a = 'http://x'; // kept\nf(a);\n})();\n"


def test_served_source_refuses_template_literals() -> None:
    """A template literal may span lines, which stripping would change: refused at start."""
    with pytest.raises(ValueError, match="template literals"):
        served_source("const a = `x\n  // not a comment`;\n")


def test_the_served_script_is_the_source_file_without_comments() -> None:
    """What is served is t.js from the package, and the same bytes on every start."""
    assert SCRIPT.body == served_source(SOURCE.read_text("utf-8"))
    assert b"pixelq" in SCRIPT.body
    assert b"\n//" not in SCRIPT.body
    again = TrackerScript()
    assert (again.gzipped, again.digest) == (SCRIPT.gzipped, SCRIPT.digest)


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.8", True),
        ("x-gzip", True),
        ("*", True),
        ("GZIP", True),
        ("gzip;q=0", False),
        ("gzip;q=0.000", False),
        ("gzip;q=junk", False),
        ("identity", False),
        ("br, deflate", False),
        ("", False),
    ],
)
def test_accepts_gzip(header: str, accepted: bool) -> None:
    """gzip, x-gzip or * with a q-value above zero (RFC 9110 12.5.3)."""
    assert accepts_gzip(header) is accepted
