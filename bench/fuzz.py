"""Fuzz pixel_server's input handling with a big budget. NOT part of `make test`.

Run from the project root:

    .venv/bin/python bench/fuzz.py --cases 100000            # every target, ~20 s
    .venv/bin/python bench/fuzz.py --cases 20000 --seed 7 --only tokens

``--cases`` is the total, split evenly over the targets; each target draws its inputs from
``random.Random(f"{seed}:{target}")``, so a run is reproducible from its seed. The first failing
inputs of each target are printed. Exit status: 0 if every property held for every case, 1 if
not. The same properties run with a small budget in tests/test_fuzz.py (hypothesis).

Targets and properties:

* ``parse_query``: ``parse_query(bytes, limits, flags)`` for arbitrary and query-shaped bytes,
  with ``Limits()`` and with small random limits. Never raises; at most ``max_params`` entries;
  names 1-128 characters, values at most ``max_value_chars``; no C0/DEL/C1 character; every
  string encodes as UTF-8; only documented flags.
* ``tokens``: ``TokenSigner.loads`` on random text and on real tokens with one character
  substituted, inserted or deleted. Raises only ``InvalidToken``; a tampered token never
  verifies (a format-2 token has one spelling, docs/tokens.md).
* ``normalize_target``: random and URL-shaped text. Raises only ``TargetRejected``; what it
  accepts is printable-ASCII http(s) that normalises to itself.
* ``asgi``: the real app (SQLite store, lifespan, writer) called through ASGI with
  ``/p.gif?<arbitrary bytes>`` (200 + GIF), ``/p/<random>.gif`` (below 500; the GIF for one
  segment), ``/r/<random>`` (below 500, never 3xx), ``/p/<signed>.gif`` with hostile payload
  values (200 + GIF) and ``/r/<signed>`` with a hostile target (below 500; a 302 only for a
  still-canonical signed target, to that target plus any UTM values the token appends, as a URL
  that passes validation itself). No response header value holds a control character, no hit is
  dropped as an internal error, no stored text (params JSON unpacked) holds a control character.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import re
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_from_bytes, urlsplit

from asgi_lifespan import LifespanManager

from pixel_server.app import PixelApp, create_app
from pixel_server.config import Settings
from pixel_server.hits import INPUT_FLAGS, MAX_KEY_CHARS, Limits, parse_query
from pixel_server.keys import Keyring
from pixel_server.responses import GIF
from pixel_server.signing import REDIRECT_SALT, InvalidToken, TokenSigner
from pixel_server.testing import Answer, asgi_request
from pixel_server.urls import TargetPolicy, TargetRejected, normalize_target

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
ACCEPTED_URL = re.compile(r"https?://[!-~]+")
FLAGS = INPUT_FLAGS
URL_SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
# what an HTTP server can put in ASGI's query_string (httptools/h11 refuse other bytes)
WIRE_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "#")
SECRET = "fuzz-secret-0123456789abcdef"  # noqa: S105  # signs tokens for a scratch database

# --- random input -------------------------------------------------------------------------------

SPECIAL_CHARS = [
    "\u00ad", "\u200b", "\u200d", "\u202e", "\u2066", "\u2028", "\u2029", "\ufeff", "\ufffd",
    "\uff0e", "\u3002", "\uff61", "\u2024", "\uff0f", "\uff20", "\uff1a", "\u0130", "\u0131",
    "\u017f", "\u212a", "\u00df", "\u03c2", "\u0301", "\U0001f600", "\U000e0041",
]  # fmt: skip
QUERY_PIECES = [
    b"&", b"=", b"+", b"%", b"%%", b"%zz", b"%4", b"%41", b"%ff", b"%fe%ff", b"%e2%82",
    b"%c0%af", b"%ed%a0%80", b"%f4%90%80%80", b"%00", b"%0d%0a", b"%1b", b"%1b[2J", b"%7f",
    b"%c2%85", b"%c2%9b", b"%e2%80%a8", b"%e2%80%ae", b"\x00", b"\r\n", b"\x7f", b"\x85",
    b"\xff", b"\xc3\xa9", b"cid=", b"eid=", b"e=", b"utm_source=", b"url=", b"a", b"x" * 300,
    b"Set-Cookie:x=1", b"<script>", b"';--", b"\\", b"#", b"?", b"/",
]  # fmt: skip
URL_PIECES = [
    "http://", "https://", "HTTPS://", "javascript:", "//", "/", "\\", "@", ":", ":80", ":0",
    ":65536", "[", "]", "[::1]", "%", "%2e", "%40", ".", "..", "xn--", "xn--zz", "0x7f", "127.1",
    "017700000001", "example.com", "bücher.de", "?", "#", "&", "=", "a" * 64, "-", "_", " ",
    "\t", "\n", "\x00", "\x85",
]  # fmt: skip
SCHEMES = [
    "http://", "https://", "HTTP://", "hTtPs://", "http:/", "https:", "http:\\\\", "//", "",
    "javascript:", "data:", "ftp://", " http://", "\thttp://", "https://\n",
]  # fmt: skip
HOSTS = [
    "example.com", "a.b.example.com", "localhost", "intranet", "127.0.0.1", "127.1",
    "0x7f.1", "0x7f000001", "2130706433", "017700000001", "1.2.3.4.", "[::1]",
    "[::ffff:127.0.0.1]", "[fe80::1%25eth0]", "[::1", "::1]", "xn--", "xn--bcher-kva.de",
    "xn--zz.com", "bücher.de", "ex\u00adample.com", "exa\uff0emple.com", "evil.com\u3002",
    "a" * 64 + ".com", "-a.com", "a-.com", "a_b.com", "", ".", "example.com.", "EXAMPLE.COM",
    "\u0130stanbul.com", "e\u0301xample.com", "\u212aelvin.com",
]  # fmt: skip
PORTS = ["", ":80", ":0", ":1", ":65535", ":65536", ":", ":-1", ":\uff18\uff10", ":8O", ":80:80"]


def rand_char(rng: random.Random, surrogates: bool = False) -> str:
    r = rng.random()
    if r < 0.45:
        return chr(rng.randrange(0x20, 0x7F))
    if r < 0.55:
        return chr(rng.randrange(0x00, 0x20))
    if r < 0.6:
        return chr(rng.choice([0x7F, *range(0x80, 0xA0)]))
    if r < 0.7:
        return chr(rng.randrange(0xA0, 0x100))
    if r < 0.85:
        cp = rng.randrange(0x100, 0x10000)
        if 0xD800 <= cp < 0xE000 and not surrogates:
            cp = 0xFFFD
        return chr(cp)
    if r < 0.95:
        return rng.choice(SPECIAL_CHARS)
    return chr(rng.randrange(0x10000, 0x110000))


def rand_text(rng: random.Random, max_len: int, surrogates: bool = False) -> str:
    return "".join(rand_char(rng, surrogates) for _ in range(rng.randrange(max_len + 1)))


def rand_url_safe(rng: random.Random, max_len: int) -> str:
    return "".join(rng.choice(URL_SAFE) for _ in range(rng.randrange(max_len + 1)))


def rand_query(rng: random.Random) -> bytes:
    """Arbitrary bytes, query-shaped junk, or a long/parameter-heavy query."""
    r = rng.random()
    if r < 0.25:
        return rng.randbytes(rng.randrange(300))
    if r < 0.32:
        count = rng.randrange(40, 3000)
        return b"&".join(b"k%d=%s" % (i, rng.choice(QUERY_PIECES)) for i in range(count))
    parts: list[bytes] = []
    for _ in range(rng.randrange(60)):
        k = rng.random()
        if k < 0.5:
            parts.append(rng.choice(QUERY_PIECES))
        elif k < 0.7:
            parts.append(rng.randbytes(rng.randrange(1, 7)))
        elif k < 0.85:
            parts.append(quote(rand_text(rng, 4), safe="").encode("ascii"))
        else:
            parts.append(rand_text(rng, 6).encode("utf-8"))
    return b"".join(parts)


def wire(query: bytes) -> bytes:
    """``query`` as an HTTP server would deliver it: printable ASCII, the rest %-encoded."""
    return quote_from_bytes(query, safe=WIRE_SAFE).encode("ascii")


def rand_url(rng: random.Random, surrogates: bool = True) -> str:
    """Random text, or a URL built from hostile parts, sometimes with one random character."""
    r = rng.random()
    if r < 0.1:
        return plausible_url(rng)
    if r < 0.3:
        return plausible_url(rng, printable=True)
    if rng.random() < 0.2:
        return rand_text(rng, 80, surrogates)
    if rng.random() < 0.2:
        return "".join(
            rng.choice(URL_PIECES) if rng.random() < 0.6 else rand_text(rng, 3, surrogates)
            for _ in range(rng.randrange(25))
        )
    if rng.random() < 0.5:
        host = rng.choice(HOSTS)
    else:
        labels = ("".join(rand_host_char(rng) for _ in range(rng.randrange(1, 12))) for _ in "ab")
        host = ".".join(labels) if rng.random() < 0.8 else next(labels)
    userinfo = rng.choice(["", "", "", "user@", "a:b@", "@", "example.com@"])
    tail = ""
    if rng.random() < 0.7:
        tail += "/" + rand_text(rng, 20)
    if rng.random() < 0.4:
        tail += "?" + rand_text(rng, 20)
    if rng.random() < 0.2:
        tail += "#" + rand_text(rng, 10)
    url = rng.choice(SCHEMES) + userinfo + host + rng.choice(PORTS) + tail
    if url and rng.random() < 0.2:
        at = rng.randrange(len(url) + 1)
        url = url[:at] + rand_char(rng, surrogates) + url[at:]
    return url


def plausible_url(rng: random.Random, printable: bool = False) -> str:
    """A URL a sender might really sign, with hostile text in its path, query and fragment
    (only printable non-space characters there if ``printable``: such a URL is accepted)."""

    def text(max_len: int) -> str:
        raw = rand_text(rng, max_len)
        return "".join(c for c in raw if c.isprintable() and not c.isspace()) if printable else raw

    host = rng.choice(["example.com", "a.example.com", "bücher.de", "xn--bcher-kva.de", "x.io"])
    url = rng.choice(["https://", "http://"]) + host + rng.choice(["", "", ":8443"])
    url += "/" + text(20)
    if rng.random() < 0.5:
        url += "?" + text(20) + rng.choice(["", "&utm_source=x"])
    if rng.random() < 0.2:
        url += "#" + text(10)
    return url


def rand_host_char(rng: random.Random) -> str:
    if rng.random() < 0.85:
        return rng.choice("abcdefghijklmnopqrstuvwxyz0123456789-_")
    return rand_char(rng)


def rand_payload(rng: random.Random) -> dict[str, Any]:
    """A token payload with hostile keys and values (no "x": that is the expiry)."""
    payload: dict[str, Any] = {}
    for _ in range(rng.randrange(6)):
        key = rng.choice(["cid", "uid", "eid", "utm_source", "e", rand_text(rng, 12)])
        if key == "x":
            continue
        kind = rng.random()
        if kind < 0.6:
            payload[key] = rand_text(rng, 40)
        elif kind < 0.8:
            payload[key] = rng.randrange(-(10**12), 10**12)
        else:
            payload[key] = rng.choice([None, True, False, 1.5, [1, "\x00"], {"\x1b": "\x07"}])
    return payload


def tamper(rng: random.Random, token: str) -> tuple[str, str, int]:
    """One substitution, insertion or deletion; returns (forged, operation, position)."""
    op = rng.choice(["substitute", "insert", "delete"])
    at = rng.randrange(len(token) + (op == "insert"))
    char = rng.choice(URL_SAFE) if rng.random() < 0.8 else rand_char(rng, surrogates=True)
    if op == "substitute":
        return token[:at] + char + token[at + 1 :], op, at
    if op == "insert":
        return token[:at] + char + token[at:], op, at
    return token[:at] + token[at + 1 :], op, at


# --- bookkeeping --------------------------------------------------------------------------------


@dataclass
class Report:
    target: str
    show: int
    cases: int = 0
    problems: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)  # what the cases did, for the log
    examples: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def fail(self, kind: str, detail: str) -> None:
        """Count one failure: ``unexpected_exception``, ``server_error`` or ``violation``."""
        self.problems[kind] += 1
        if len(self.examples) < self.show:
            self.examples.append(f"{kind}: {detail}")


# --- (a) parse_query ----------------------------------------------------------------------------


def check_parse_query(raw: bytes, limits: Limits, flags: set[str]) -> str | None:
    """None if every property holds, else what broke."""
    params = parse_query(raw, limits, flags)
    if len(params) > limits.max_params:
        return f"{len(params)} params"
    if not flags <= FLAGS:
        return f"undocumented flags {flags - FLAGS}"
    for key, value in params.items():
        if not 0 < len(key) <= MAX_KEY_CHARS:
            return f"name of {len(key)} characters"
        if len(value) > limits.max_value_chars:
            return f"value of {len(value)} characters"
        for text in (key, value):
            if CONTROL.search(text):
                return f"control character in {text!r}"
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return f"lone surrogate in {text!r}: SQLite cannot store it as UTF-8"
    return None


def fuzz_parse_query(rng: random.Random, report: Report, cases: int) -> None:
    for _ in range(cases):
        raw = rand_query(rng)
        if rng.random() < 0.5:
            limits = Limits()
        else:
            limits = Limits(rng.randrange(600), rng.randrange(1, 12), rng.randrange(40))
        report.cases += 1
        try:
            flags: set[str] = set()
            problem = check_parse_query(raw, limits, flags)
            report.outcomes.update(flags or {"clean"})
        except Exception as exc:
            report.fail("unexpected_exception", f"{raw!r} {limits}: {exc!r}")
            continue
        if problem:
            report.fail("violation", f"{raw!r} {limits}: {problem}")


# --- (b) TokenSigner.loads ----------------------------------------------------------------------


def fuzz_tokens(rng: random.Random, report: Report, cases: int) -> None:
    keys = Keyring("k2", {"k2": SECRET, "k1": "old-" + SECRET})
    signer = TokenSigner(keys, REDIRECT_SALT)
    for _ in range(cases):
        report.cases += 1
        r = rng.random()
        if r < 0.5:
            payload = rand_payload(rng)
            token = signer.dumps(payload)
            forged, op, at = tamper(rng, token)
            if forged == token:
                forged = token + rng.choice(URL_SAFE)  # a no-op change is no tampering
                op, at = "insert", len(token)
        else:
            payload = None
            if r < 0.7:
                forged = rand_text(rng, 200, surrogates=True)
            elif r < 0.85:
                forged = rand_url_safe(rng, 300)
            else:
                kid = rng.choice(["k1", "k2", "k3", "", "K1", "k1 "])
                forged = f"{kid}.{rand_url_safe(rng, 120)}.{rand_url_safe(rng, 50)}"
            op, at = "random", -1
        try:
            loaded = signer.loads(forged)
        except InvalidToken as exc:
            report.outcomes[f"{op} refused: {exc.reason}"] += 1
            continue
        except Exception as exc:
            report.fail("unexpected_exception", f"{forged!r}: {exc!r}")
            continue
        # a format-2 token has one spelling (docs/tokens.md): no change at all may verify
        report.outcomes[f"{op} verified"] += 1
        report.fail("violation", f"{forged!r} ({op} at {at}) verified as {loaded!r}")


# --- (d) normalize_target -----------------------------------------------------------------------

POLICIES = [
    TargetPolicy(),
    TargetPolicy(allow_ip=True),
    TargetPolicy(("example.com", "bücher.de", "[::1]", "localhost"), allow_ip=True, max_length=300),
]


def fuzz_normalize_target(rng: random.Random, report: Report, cases: int) -> None:
    for _ in range(cases):
        url = rand_url(rng)
        policy = rng.choice(POLICIES)
        report.cases += 1
        try:
            result = normalize_target(url, policy)
        except TargetRejected as exc:
            report.outcomes[f"refused: {exc.reason}"] += 1
            continue
        except Exception as exc:
            report.fail("unexpected_exception", f"{url!r}: {exc!r}")
            continue
        try:
            again = normalize_target(result, policy)
        except Exception as exc:
            report.fail("violation", f"{url!r} -> {result!r}, which is refused: {exc!r}")
            continue
        report.outcomes["accepted"] += 1
        if not ACCEPTED_URL.fullmatch(result) or again != result:
            report.fail("violation", f"{url!r} -> {result!r} -> {again!r}")


# --- (c) the ASGI app ---------------------------------------------------------------------------


FUZZ_HEADERS = [(b"host", b"fuzz"), (b"user-agent", b"fuzz/1.0")]


@dataclass
class Outcome:
    answer: Answer
    error: Exception | None = None  # raised out of the app (Starlette re-raises after its 500)


async def asgi_get(app: PixelApp, method: str, path: str, query: bytes) -> Outcome:
    """One request straight through ASGI, with exactly these query bytes."""
    try:
        return Outcome(await asgi_request(app, method, path, query, FUZZ_HEADERS))
    except Exception as exc:
        return Outcome(Answer(500, [], b""), exc)


Case = tuple[str, str, str, bytes, Callable[[Answer], str | None]]


def asgi_case(rng: random.Random, app: PixelApp) -> Case:
    """(kind, method, path, query, check) for one random request."""
    rt = app.runtime
    method = "HEAD" if rng.random() < 0.1 else "GET"
    gif = b"" if method == "HEAD" else GIF

    def is_gif(answer: Answer) -> str | None:
        return None if (answer.status, answer.body) == (200, gif) else f"not the GIF: {answer}"

    def below_500(answer: Answer) -> str | None:
        return None

    def no_redirect(answer: Answer) -> str | None:
        return f"redirected: {answer}" if 300 <= answer.status < 400 else None

    token = rng.choice(
        [
            rand_text(rng, 60),
            rand_url_safe(rng, 150),
            f"k1.{rand_url_safe(rng, 150)}",
            f"k1.{rand_url_safe(rng, 80)}.{rand_url_safe(rng, 43)}",
        ]
    )
    one_segment = bool(token) and "/" not in token
    r = rng.random()
    if r < 0.4:
        return "pixel", method, "/p.gif", rand_query(rng), is_gif
    if r < 0.55:
        check = is_gif if one_segment else below_500
        return "signed_pixel_random", method, f"/p/{token}.gif", wire(rand_query(rng)), check
    if r < 0.65:
        signed = rt.pixel_tokens.dumps(rand_payload(rng))
        return "signed_pixel_valid", method, f"/p/{signed}.gif", wire(rand_query(rng)), is_gif
    if r < 0.85:
        return "redirect_random", method, f"/r/{token}", wire(rand_query(rng)), no_redirect
    target = rand_url(rng, surrogates=False)  # JSON cannot carry a lone surrogate
    if rng.random() < 0.5:
        with suppress(TargetRejected):  # signed as `pixel-server link` would sign it
            target = normalize_target(plausible_url(rng, printable=True), rt.target_policy)
    payload = {**rand_payload(rng), "u": target, "a": rng.random() < 0.5}
    if rng.random() < 0.5:
        payload["utm_source"] = rand_text(rng, 20)

    def redirects_only_to_the_target(answer: Answer) -> str | None:
        """A 302 only for a still-canonical target, to that target (plus appended UTM values
        when the token asks for them), as a URL that passes validation as it stands."""
        if not 300 <= answer.status < 400:
            return None
        location = dict(answer.headers).get(b"location", b"").decode("latin-1")
        try:
            canonical = normalize_target(target, rt.target_policy) == target
            valid = normalize_target(location, rt.target_policy) == location
        except TargetRejected:
            canonical = valid = False
        got, want = urlsplit(location), urlsplit(target)
        same_place = got._replace(query="") == want._replace(query="")
        if not (answer.status == 302 and canonical and valid and same_place):
            return f"bad redirect to {location!r} for signed target {target!r}: {answer}"
        if not got.query.startswith(want.query):
            return f"the target's own query was changed: {location!r} for {target!r}"
        return None

    signed = rt.link_tokens.dumps(payload)
    query = wire(rand_query(rng))
    return "redirect_signed", method, f"/r/{signed}", query, redirects_only_to_the_target


async def run_case(app: PixelApp, case: Case, report: Report) -> None:
    kind, method, path, query, check = case
    where = f"{kind} {method} {path!r} query={query!r}"
    outcome = await asgi_get(app, method, path, query)
    answer = outcome.answer
    report.outcomes[f"{kind} {answer.status}"] += 1
    if outcome.error is not None:
        report.fail("unexpected_exception", f"{where}: {outcome.error!r}")
    if answer.status >= 500:
        report.fail("server_error", f"{where}: {answer}")
        return
    problem = check(answer)
    for name, value in answer.headers:
        if CONTROL.search(value.decode("latin-1")):
            problem = f"control character in header {name!r}: {value!r}"
    if problem:
        report.fail("violation", f"{where}: {problem}")


async def fuzz_asgi_async(rng: random.Random, report: Report, cases: int, db: Path) -> None:
    settings = Settings(db=str(db), secret_key=SECRET)
    settings.validate()
    app = create_app(settings)
    async with LifespanManager(app):
        done = 0
        while done < cases:
            batch = [asgi_case(rng, app) for _ in range(min(256, cases - done))]
            # concurrent, as under load: the writer commits each batch as a group
            await asyncio.gather(*(run_case(app, case, report) for case in batch))
            done += len(batch)
            report.cases = done
        metrics = app.runtime.metrics.registry
        for kind in ("view", "open", "click"):
            labels = {"kind": kind, "reason": "internal_error"}
            lost = metrics.get_sample_value("pixel_hits_dropped_total", labels) or 0.0
            if lost:
                report.fail("unexpected_exception", f"{lost:.0f} {kind} hits lost to exceptions")
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT * FROM hits ORDER BY id").fetchall()
        extras = conn.execute("SELECT params FROM hits ORDER BY id").fetchall()
    report.outcomes["rows stored"] = len(rows)
    for row, (params,) in zip(rows, extras, strict=True):
        texts = [v for v in row if isinstance(v, str)]
        if params:  # json.dumps writes C0 controls as \u escapes: look inside
            texts += [t for item in json.loads(params).items() for t in item]
        dirty = [t for t in texts if CONTROL.search(t)]
        if dirty:
            report.fail("violation", f"stored control character: {dirty!r}")


def fuzz_asgi(rng: random.Random, report: Report, cases: int) -> None:
    with tempfile.TemporaryDirectory(prefix="pixel-fuzz-") as tmp:
        asyncio.run(fuzz_asgi_async(rng, report, cases, Path(tmp) / "fuzz.db"))


# --- main ---------------------------------------------------------------------------------------

TARGETS: dict[str, Callable[[random.Random, Report, int], None]] = {
    "parse_query": fuzz_parse_query,
    "tokens": fuzz_tokens,
    "normalize_target": fuzz_normalize_target,
    "asgi": fuzz_asgi,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--cases", type=int, default=100_000, help="total, split over targets")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", choices=sorted(TARGETS), action="append")
    parser.add_argument("--show", type=int, default=5, help="failing inputs printed per target")
    args = parser.parse_args(argv)
    names = args.only or list(TARGETS)
    per_target = math.ceil(args.cases / len(names))
    reports = []
    started = time.perf_counter()
    for name in names:
        report = Report(name, args.show)
        print(f"{name}: {per_target} cases (seed {args.seed})", flush=True)
        began = time.perf_counter()
        rng = random.Random(f"{args.seed}:{name}")  # noqa: S311  # test inputs, not secrets
        TARGETS[name](rng, report, per_target)
        report.seconds = time.perf_counter() - began
        reports.append(report)
        outcomes = ", ".join(f"{k}: {v}" for k, v in sorted(report.outcomes.items()))
        print(f"  {report.cases} cases in {report.seconds:.1f} s; {outcomes}", flush=True)
    total = time.perf_counter() - started
    print()
    print(f"{'target':<18}{'cases':>9}{'unexpected exc':>16}{'5xx':>6}{'violations':>12}{'s':>8}")
    for r in reports:
        print(
            f"{r.target:<18}{r.cases:>9}{r.problems['unexpected_exception']:>16}"
            f"{r.problems['server_error']:>6}{r.problems['violation']:>12}{r.seconds:>8.1f}"
        )
    totals: Counter[str] = sum((r.problems for r in reports), Counter())
    print(
        f"{'total':<18}{sum(r.cases for r in reports):>9}{totals['unexpected_exception']:>16}"
        f"{totals['server_error']:>6}{totals['violation']:>12}{total:>8.1f}"
    )
    failed = sum(totals.values())
    for r in reports:
        for example in r.examples:
            print(f"FAIL {r.target}: {example[:2000]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
