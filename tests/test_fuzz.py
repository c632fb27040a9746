"""Property tests on every input path, with a small budget (bench/fuzz.py runs the big one).

The query parser, the token verifier, the redirect-target validator and the ASGI app itself
get random and hostile input; each may only answer in its documented ways.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pixel_server.app import PixelApp
from pixel_server.config import Settings
from pixel_server.hits import INPUT_FLAGS, MAX_KEY_CHARS, Limits, _field, parse_query
from pixel_server.keys import Keyring
from pixel_server.responses import GIF
from pixel_server.signing import REDIRECT_SALT, InvalidToken, TokenSigner
from pixel_server.testing import asgi_request
from pixel_server.urls import TargetPolicy, TargetRejected, normalize_target

from conftest import Harness, running, stored_rows

pytestmark = pytest.mark.both_stores

T = TypeVar("T")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
FLAGS = INPUT_FLAGS
URL_SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."

# --- strategies ----------------------------------------------------------------------------------

QUERY_PIECES = st.sampled_from(
    [
        b"&", b"=", b"+", b"%", b"%%", b"%zz", b"%4", b"%41", b"%ff", b"%fe%ff", b"%e2%82",
        b"%c0%af", b"%ed%a0%80", b"%f4%90%80%80", b"%00", b"%0d%0a", b"%1b", b"%7f", b"%c2%85",
        b"%e2%80%a8", b"\x00", b"\r\n", b"\x7f", b"\x85", b"\xff", b"\xc3\xa9", b"cid", b"eid",
        b"utm_source", b"a", b"x" * 200,
    ]
)  # fmt: skip
QUERIES = st.one_of(
    st.binary(max_size=400),
    st.lists(st.one_of(QUERY_PIECES, st.binary(max_size=6)), max_size=120).map(b"".join),
)
LIMITS = st.one_of(
    st.just(Limits()),
    st.builds(
        Limits,
        max_query_bytes=st.integers(0, 500),
        max_params=st.integers(1, 12),
        max_value_chars=st.integers(0, 40),
    ),
)


# --- (a) the query parser ------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(raw=QUERIES, limits=LIMITS)
def test_parse_query_never_raises_and_keeps_at_most_max_params(raw: bytes, limits: Limits) -> None:
    """Any bytes parse without an exception into at most max_params parameters."""
    params = parse_query(raw, limits, set())
    assert len(params) <= limits.max_params


@settings(max_examples=300, deadline=None)
@given(raw=QUERIES, limits=LIMITS)
def test_parsed_names_and_values_are_clean_storable_text(raw: bytes, limits: Limits) -> None:
    """No C0, DEL or C1 character survives parsing, and every string encodes as UTF-8."""
    for text in (s for item in parse_query(raw, limits, set()).items() for s in item):
        assert not CONTROL.search(text), text
        text.encode("utf-8")  # no lone surrogates: SQLite and JSON can store it


@settings(max_examples=300, deadline=None)
@given(raw=QUERIES, limits=LIMITS)
def test_parsed_names_and_values_respect_the_length_limits(raw: bytes, limits: Limits) -> None:
    """Names are at most 128 characters and values at most max_value_chars."""
    for key, value in parse_query(raw, limits, set()).items():
        assert 0 < len(key) <= MAX_KEY_CHARS
        assert len(value) <= limits.max_value_chars


@settings(max_examples=300, deadline=None)
@given(raw=QUERIES, limits=LIMITS)
def test_parse_query_flags_only_documented_problems(raw: bytes, limits: Limits) -> None:
    """The flags parse_query sets are names from docs/input-limits.md."""
    flags: set[str] = set()
    parse_query(raw, limits, flags)
    assert flags <= FLAGS


def field_by_field(raw: bytes, limits: Limits, flags: set[str]) -> dict[str, str]:
    """parse_query as it was before its one-scan fast path: every key and value through
    _field. The oracle for the test below."""
    if len(raw) > limits.max_query_bytes:
        flags.add("query_truncated")
        raw = raw[: max(raw.rfind(b"&", 0, limits.max_query_bytes + 1), 0)]
    params: dict[str, str] = {}
    for piece in raw.decode("latin-1").split("&"):
        if not piece:
            continue
        if len(params) >= limits.max_params:
            flags.add("too_many_params")
            break
        raw_key, _, raw_value = piece.partition("=")
        key = _field(raw_key, MAX_KEY_CHARS, flags)
        if not key:
            continue
        if key in params:
            flags.add("repeated_param")
            continue
        params[key] = _field(raw_value, limits.max_value_chars, flags)
    return params


PLAIN_QUERIES = st.lists(
    st.tuples(st.text(URL_SAFE, max_size=140), st.text(URL_SAFE + "/:,", max_size=300)),
    max_size=60,
).map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs).encode())


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(QUERIES, PLAIN_QUERIES), limits=LIMITS)
def test_parse_query_fast_path_parses_as_field_by_field(raw: bytes, limits: Limits) -> None:
    """A query with no escape and no control character skips the per-field checks; the
    parameters and flags are exactly those of checking every field."""
    flags: set[str] = set()
    expected: set[str] = set()
    assert parse_query(raw, limits, flags) == field_by_field(raw, limits, expected)
    assert flags == expected


# --- (b) the token verifier ----------------------------------------------------------------------

KEYS = Keyring("k2", {"k2": "new-secret-0123456789abcdef", "k1": "old-secret-0123456789abcdef"})
SIGNER = TokenSigner(KEYS, REDIRECT_SALT)
PAYLOADS = st.dictionaries(
    st.text(max_size=10).filter(lambda key: key != "x"),  # "x" is the expiry
    st.one_of(st.text(max_size=30), st.integers(), st.booleans(), st.none()),
    max_size=5,
)
TOKENISH = st.one_of(
    st.text(max_size=200),
    st.text(alphabet=URL_SAFE, max_size=200),
    st.builds(
        lambda kid, body, sig: f"{kid}.{body}.{sig}",
        st.sampled_from(["k1", "k2", "k3", ""]),
        st.text(alphabet=URL_SAFE, max_size=80),
        st.text(alphabet=URL_SAFE, max_size=50),
    ),
)


@settings(max_examples=300, deadline=None)
@given(text=TOKENISH)
def test_arbitrary_text_is_never_a_valid_token(text: str) -> None:
    """loads() on random text raises InvalidToken, and nothing else."""
    with pytest.raises(InvalidToken):
        SIGNER.loads(text)


@settings(max_examples=400, deadline=None)
@given(payload=PAYLOADS, data=st.data())
def test_tampered_token_never_verifies_as_anything_new(
    payload: dict[str, Any], data: st.DataObject
) -> None:
    """One substituted, inserted or deleted character: InvalidToken, unless it is the last
    character of the signature (base64's spare bits) and the payload is the original."""
    token = SIGNER.dumps(payload)
    op = data.draw(st.sampled_from(["substitute", "insert", "delete"]))
    at = data.draw(st.integers(0, len(token) if op == "insert" else len(token) - 1))
    char = data.draw(st.one_of(st.sampled_from(URL_SAFE), st.characters()))
    if op == "substitute":
        forged = token[:at] + char + token[at + 1 :]
    elif op == "insert":
        forged = token[:at] + char + token[at:]
    else:
        forged = token[:at] + token[at + 1 :]
    if forged == token:
        return  # substituting a character by itself is no tampering
    try:
        loaded = SIGNER.loads(forged)
    except InvalidToken:
        return
    assert (op, at) == ("substitute", len(token) - 1), forged
    assert loaded == payload


# --- (d) the redirect-target validator -----------------------------------------------------------

URL_PIECES = st.sampled_from(
    [
        "http://", "https://", "HTTPS://", "javascript:", "//", "/", "\\", "@", ":", ":80",
        ":0", ":65536", "[", "]", "[::1]", "%", "%2e", ".", "..", "xn--", "xn--zz", "0x7f",
        "127.1", "017700000001", "example.com", "bücher.de", "\uff0e", "\u3002", "\uff20",
        "\u2024", "\u200b", "\u202e", "\ufeff", "\x00", "\t", "\n", " ", "\x85", "\ud800",
        "?", "#", "&", "=", "a" * 64, "é", "ß", "\u0301", "-", "_",
    ]
)  # fmt: skip
TARGETS = st.one_of(
    st.text(max_size=120),
    st.lists(st.one_of(URL_PIECES, st.text(max_size=4)), max_size=30).map("".join),
    st.builds(
        lambda scheme, rest: scheme + rest,
        st.sampled_from(["http://", "https://"]),
        st.lists(st.one_of(URL_PIECES, st.text(max_size=4)), max_size=20).map("".join),
    ),
)
POLICIES = st.sampled_from(
    [
        TargetPolicy(),
        TargetPolicy(allow_ip=True),
        TargetPolicy(("example.com", "bücher.de", "[::1]"), allow_ip=True, max_length=300),
    ]
)


@settings(max_examples=400, deadline=None)
@given(target=TARGETS, policy=POLICIES)
def test_normalize_target_raises_only_target_rejected(target: str, policy: TargetPolicy) -> None:
    """Any text is either accepted or refused with TargetRejected, never another exception."""
    with suppress(TargetRejected):
        normalize_target(target, policy)


@settings(max_examples=400, deadline=None)
@given(target=TARGETS, policy=POLICIES)
def test_accepted_target_is_a_printable_ascii_fixed_point(
    target: str, policy: TargetPolicy
) -> None:
    """Whatever is accepted is printable ASCII http(s) that normalises to itself."""
    try:
        result = normalize_target(target, policy)
    except TargetRejected:
        return
    assert re.fullmatch(r"https?://[!-~]+", result), result
    assert normalize_target(result, policy) == result


# --- (c) the ASGI app ----------------------------------------------------------------------------


class AppThread:
    """The real app, under its lifespan, on an event loop in a background thread, so that
    hypothesis can drive it from the test's own (synchronous) thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop: asyncio.Event | None = None
        self.harness: Harness | None = None
        self.thread = threading.Thread(target=self.main)

    def main(self) -> None:
        try:
            asyncio.run(self.serve())
        except BaseException as exc:  # handed to the test thread in __exit__
            self.error = exc
            self.ready.set()

    async def serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        async with running(self.settings) as harness:
            self.harness = harness
            self.ready.set()
            await self.stop.wait()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def internal_errors(self) -> float:
        assert self.harness is not None
        return sum(
            self.harness.metric("pixel_hits_dropped_total", kind=kind, reason="internal_error")
            for kind in ("view", "open", "click")
        )


@contextmanager
def app_thread(settings: Settings) -> Iterator[AppThread]:
    app = AppThread(settings)
    app.thread.start()
    app.ready.wait(30)
    try:
        if app.error is not None:
            raise app.error
        yield app
    finally:
        if app.loop is not None and app.stop is not None:
            app.loop.call_soon_threadsafe(app.stop.set)
        app.thread.join(30)
        if app.error is not None:
            raise app.error


async def asgi_get(app: PixelApp, method: str, path: str, query: bytes) -> tuple[int, bytes]:
    """One request straight through ASGI, with the exact query bytes (httpx would re-encode)."""
    answer = await asgi_request(app, method, path, query)
    return answer.status, answer.body


METHODS = st.sampled_from(["GET", "HEAD"])
SEGMENTS = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=URL_SAFE, max_size=120),
    st.builds(lambda body: f"k1.{body}", st.text(alphabet=URL_SAFE, max_size=120)),
)


def test_app_answers_random_pixel_queries_with_the_gif(
    make_settings: Callable[..., Settings],
) -> None:
    """/p.gif with any query bytes answers 200 and the GIF, and drops nothing on an error."""
    with app_thread(make_settings()) as app:
        assert app.harness is not None
        asgi = app.harness.app

        @settings(max_examples=250, deadline=None)
        @given(method=METHODS, query=QUERIES)
        def check(method: str, query: bytes) -> None:
            status, body = app.run(asgi_get(asgi, method, "/p.gif", query))
            assert status == 200
            assert body == (b"" if method == "HEAD" else GIF)

        check()
        assert app.internal_errors() == 0


def test_app_stores_no_control_character_from_random_pixel_queries(
    make_settings: Callable[..., Settings],
) -> None:
    """Whatever /p.gif is sent, no stored text contains a C0, DEL or C1 character."""
    config = make_settings()
    with app_thread(config) as app:
        assert app.harness is not None
        asgi = app.harness.app

        @settings(max_examples=150, deadline=None)
        @given(query=QUERIES)
        def check(query: bytes) -> None:
            app.run(asgi_get(asgi, "GET", "/p.gif", query))

        check()
    rows = stored_rows(config, "SELECT * FROM hits")
    extras = [
        json.loads(p) for (p,) in stored_rows(config, "SELECT params FROM hits WHERE params>''")
    ]
    assert len(rows) >= 20  # not vacuous (repeated eids are stored once)
    assert len(extras) >= 20
    # the params JSON is unpacked: json.dumps writes C0 controls as \u escapes
    texts = [v for row in rows for v in row if isinstance(v, str)]
    texts += [text for params in extras for item in params.items() for text in item]
    assert not [text for text in texts if CONTROL.search(text)]


def test_app_answers_random_signed_pixel_paths_without_a_5xx(
    make_settings: Callable[..., Settings],
) -> None:
    """/p/<random>.gif answers below 500: the GIF for one segment, else 404."""
    with app_thread(make_settings()) as app:
        assert app.harness is not None
        asgi = app.harness.app

        @settings(max_examples=250, deadline=None)
        @given(method=METHODS, token=SEGMENTS, query=QUERIES)
        def check(method: str, token: str, query: bytes) -> None:
            status, body = app.run(asgi_get(asgi, method, f"/p/{token}.gif", query))
            assert status < 500
            if token and "/" not in token:
                assert status == 200
                assert body == (b"" if method == "HEAD" else GIF)

        check()
        assert app.internal_errors() == 0


def test_app_never_redirects_a_random_token(make_settings: Callable[..., Settings]) -> None:
    """/r/<random> answers below 500 and never with a 3xx."""
    with app_thread(make_settings()) as app:
        assert app.harness is not None
        asgi = app.harness.app

        @settings(max_examples=250, deadline=None)
        @given(method=METHODS, token=SEGMENTS, query=QUERIES)
        def check(method: str, token: str, query: bytes) -> None:
            status, _ = app.run(asgi_get(asgi, method, f"/r/{token}", query))
            assert status < 500
            assert not 300 <= status < 400

        check()
        assert app.internal_errors() == 0
