"""Real-shaped emails (tests/fixtures/emails: Cerberus, Mailchimp, MJML and Mosaico shapes, a
long newsletter, a Japanese one) wrapped by the library, the CLI (a real process) and
``POST /api/wrap``: every eligible link wrapped exactly once, every other byte unchanged, the
pixel first in the body, and each wrapped link redirecting to the exact original URL.

The checks (tests/emailcheck.py) read the output beside the input without wrap.py's code.
"""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from emailcheck import BASE, Diff, eligible_hrefs, expected_location, fixtures, pixel_rule, walk

from pixel_server.config import Settings
from pixel_server.keys import Keyring
from pixel_server.links import Minter, spec_from_options
from pixel_server.signing import PIXEL_SALT, TokenSigner
from pixel_server.wrap import Template

from conftest import SECRET, Harness, running, stored_rows

pytestmark = pytest.mark.both_stores

# links wrapped per fixture, counted by hand (README.md in the fixtures' folder lists them)
WRAPPED = {
    "cerberus.html": 8,
    "japanese.html": 8,
    "long-newsletter.html": 243,
    "mailchimp.html": 6,
    "mjml.html": 4,
    "mosaico.html": 5,
}
FIXTURES = fixtures()
IDS = [path.stem for path in FIXTURES]
NAMED = {"cid": "spring", "uid": "r-1042"}


def test_every_fixture_is_counted() -> None:
    assert sorted(WRAPPED) == [path.name for path in FIXTURES]
    assert all(eligible_hrefs(path.read_text(encoding="utf-8")) for path in FIXTURES)


def wrap_library(source: str, settings: Settings) -> str:
    links, pixels = Minter.for_links(settings), Minter.for_pixels(settings)
    spec = spec_from_options(NAMED, (), None, False, link=True)
    template = Template.parse(source, wrapped_prefix=f"{BASE}/r/")
    signed = links.mint_each(spec, template.targets())
    pixel = pixels.mint(spec_from_options(NAMED, (), None, False, link=False))
    return template.render(signed.__getitem__, pixel)


def wrap_cli(path: Path, tmp_path: Path) -> str:
    env = {
        **os.environ,
        "PIXEL_SECRET_KEY": SECRET,
        "PIXEL_PUBLIC_URL": BASE,
        "PIXEL_DB": str(tmp_path / "cli.db"),
    }
    args = [sys.executable, "-m", "pixel_server", "wrap", str(path), "--cid", "spring"]
    done = subprocess.run(
        [*args, "--uid", "r-1042", "-o", str(tmp_path / "out.html")],
        env=env,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert b"Traceback" not in done.stderr
    # read as bytes: the file is the email's own bytes, no newline translation
    return (tmp_path / "out.html").read_bytes().decode("utf-8")


async def wrap_api(source: str, h: Harness) -> str:
    answer = await h.client.post("/api/wrap", json={"html": source, **NAMED}, headers=h.auth)
    assert answer.status_code == 200, answer.text
    text: str = answer.json()["html"]
    return text


async def check(source: str, output: str, h: Harness, name: str) -> Diff:
    diff = walk(source, output)  # every byte but the new values and the pixel is unchanged
    originals = [raw for raw, _ in diff.replaced]
    assert originals == eligible_hrefs(source)  # every eligible link, each exactly once
    assert len(originals) == WRAPPED[name]
    assert all(ours.startswith(f"{BASE}/r/") for ours in diff.unchanged_ours)
    pixel_rule(source, output, diff)
    assert diff.pixel_src is not None
    settings = h.rt.settings
    stored = len(stored_rows(settings, "SELECT kind FROM hits"))
    opened = await h.client.get(html.unescape(diff.pixel_src).removeprefix(BASE))
    assert opened.status_code == 200
    assert opened.headers["content-type"] == "image/gif"
    for raw, signed in diff.replaced:
        clicked = await h.client.get(html.unescape(signed).removeprefix(BASE))
        assert clicked.status_code == 302, raw
        assert clicked.headers["location"] == expected_location(raw)
    # the open and every click stored, on either store
    assert len(stored_rows(settings, "SELECT kind FROM hits")) == stored + 1 + len(originals)
    return diff


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[Harness]:
    async with running(make_settings(public_url=BASE)) as h:
        yield h


@pytest.mark.parametrize("path", FIXTURES, ids=IDS)
async def test_library(path: Path, app: Harness) -> None:
    source = path.read_text(encoding="utf-8")
    await check(source, wrap_library(source, app.rt.settings), app, path.name)


@pytest.mark.parametrize("path", FIXTURES, ids=IDS)
async def test_cli(path: Path, app: Harness, tmp_path: Path) -> None:
    source = path.read_bytes().decode("utf-8")
    await check(source, wrap_cli(path, tmp_path), app, path.name)


@pytest.mark.parametrize("path", FIXTURES, ids=IDS)
async def test_api(path: Path, app: Harness) -> None:
    source = path.read_text(encoding="utf-8")
    diff = await check(source, await wrap_api(source, app), app, path.name)
    # the pixel's token names the recipient: the one the body asked for
    token = html.unescape(diff.pixel_src or "").rsplit("/", 1)[1].removesuffix(".gif")
    payload = TokenSigner(Keyring.from_settings(app.rt.settings), PIXEL_SALT).loads(token)
    assert (payload["cid"], payload["uid"]) == ("spring", "r-1042")


def test_the_long_newsletter_would_be_clipped_by_gmail() -> None:
    """The reason the pixel goes first: this one is past Gmail's ~102 KB."""
    assert (Path(FIXTURES[0]).parent / "long-newsletter.html").stat().st_size > 102 * 1024


def test_a_shift_jis_email_is_refused_in_one_line(tmp_path: Path) -> None:
    """wrap reads UTF-8 only (docs/wrap.md): an email in Shift_JIS is one clear error, not a
    corrupted email."""
    path = tmp_path / "sjis.html"
    path.write_bytes(
        '<meta charset="Shift_JIS"><body><a href="https://x.example/">お知らせ</a>'.encode(
            "shift_jis"
        )
    )
    env = {**os.environ, "PIXEL_SECRET_KEY": SECRET, "PIXEL_PUBLIC_URL": BASE}
    env["PIXEL_DB"] = str(tmp_path / "x.db")
    done = subprocess.run(
        [sys.executable, "-m", "pixel_server", "wrap", str(path)],
        env=env,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 2
    assert b"not UTF-8" in done.stderr
    assert b"Traceback" not in done.stderr


@pytest.mark.parametrize("mode", ["out-dir", "ndjson"])
async def test_a_recipients_batch(mode: str, app: Harness, tmp_path: Path) -> None:
    """`--recipients` (a real process): every recipient's email checked like one, with its
    own tokens."""
    path = FIXTURES[IDS.index("mjml")]
    source = path.read_text(encoding="utf-8")
    (tmp_path / "r.csv").write_text("uid,list\nr-1,vip\nr-2,\nr-3,trial\n", encoding="utf-8")
    env = {**os.environ, "PIXEL_SECRET_KEY": SECRET, "PIXEL_PUBLIC_URL": BASE}
    env["PIXEL_DB"] = str(tmp_path / "cli.db")
    out = ["--out-dir", str(tmp_path / "out")] if mode == "out-dir" else []
    wrap = [sys.executable, "-m", "pixel_server", "wrap", str(path), "--cid", "spring"]
    done = subprocess.run(
        [*wrap, "--recipients", str(tmp_path / "r.csv"), *out],
        env=env,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    if mode == "out-dir":
        emails = {p.stem: p.read_bytes().decode() for p in (tmp_path / "out").iterdir()}
    else:
        rows = [json.loads(line) for line in done.stdout.decode().splitlines()]
        emails = {row["uid"]: row["html"] for row in rows}
    assert sorted(emails) == ["r-1", "r-2", "r-3"]
    tokens: set[str] = set()
    for text in emails.values():
        diff = await check(source, text, app, path.name)
        tokens.update(signed for _, signed in diff.replaced)
    assert len(tokens) == 3 * WRAPPED[path.name]  # each recipient's own
