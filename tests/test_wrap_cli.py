"""`pixel-server wrap`: an email's links signed, its pixel inserted, and the server honours
both."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner, Result

from pixel_server.cli import main
from pixel_server.config import Settings

from conftest import WRAP_BASE as BASE
from conftest import WRAP_EMAIL as EMAIL
from conftest import running, stored_rows


def run(*args: str, stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin)


async def test_a_wrapped_email_clicks_and_opens_through_the_server(wrap_env: Path) -> None:
    result = run("wrap", str(wrap_env), "--cid", "spring", "--uid", "r-1042", "--utm-source", "nl")
    assert result.exit_code == 0, result.output
    out = result.stdout
    links = re.findall(r'href="(https://t\.example\.com/r/[^"]+)"', out)
    pixels = re.findall(r'src="(https://t\.example\.com/p/[^"]+\.gif)"', out)
    assert len(links) == 2
    assert len(pixels) == 1
    assert 'href="mailto:help@shop.example"' in out
    assert 'href="{{ unsubscribe }}"' in out
    assert "<p>Grüße &amp; hello</p>" in out
    async with running(Settings.from_env()) as h:
        answer = await h.client.get(links[0].replace("&amp;", "&").removeprefix(BASE))
        assert answer.status_code == 302
        assert answer.headers["location"] == "https://shop.example/sale?a=1&b=2"
        opened = await h.client.get(pixels[0].removeprefix(BASE))
        assert opened.status_code == 200
        assert opened.headers["content-type"] == "image/gif"
    rows = stored_rows(Settings.from_env(), "SELECT kind, cid, uid, utm_source, url FROM hits")
    assert sorted(rows) == [
        ("click", "spring", "r-1042", "nl", "https://shop.example/sale?a=1&b=2"),
        ("open", "spring", "r-1042", "nl", None),
    ]


def test_output_file_and_stdin(wrap_env: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.html"
    result = run("wrap", str(wrap_env), "--cid", "c", "-o", str(target))
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stderr
    assert target.read_text(encoding="utf-8").count("/r/") == 2
    piped = run("wrap", "-", "--cid", "c", "--no-pixel", stdin=EMAIL.encode())
    assert piped.exit_code == 0, piped.output
    assert piped.stdout.count("/r/") == 2
    assert "/p/" not in piped.stdout


def test_a_refused_target_writes_nothing(wrap_env: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.html"
    result = run("wrap", str(wrap_env), "--redirect-hosts", "other.example", "-o", str(target))
    assert result.exit_code == 2
    assert "shop.example" in result.output
    assert "Traceback" not in result.output
    assert not target.exists()


def test_a_missing_email_is_one_error(wrap_env: Path, tmp_path: Path) -> None:
    result = run("wrap", str(tmp_path / "missing.html"))
    assert result.exit_code == 2
    assert "cannot read" in result.output
    assert "Traceback" not in result.output


def test_not_utf8_is_one_error(wrap_env: Path) -> None:
    result = run("wrap", "-", stdin=b"<a href='https://x.example/\xff'>x</a>")
    assert result.exit_code == 2
    assert "not UTF-8" in result.output
    assert "Traceback" not in result.output


def signed_payload(url: str) -> dict[str, object]:
    from pixel_server.keys import Keyring
    from pixel_server.signing import PIXEL_SALT, REDIRECT_SALT, TokenSigner

    keys = Keyring.from_settings(Settings.from_env())
    token = url.replace("&amp;", "&").rsplit("/", 1)[1]
    if token.endswith(".gif"):
        return dict(TokenSigner(keys, PIXEL_SALT).loads(token.removesuffix(".gif")))
    return dict(TokenSigner(keys, REDIRECT_SALT).loads(token))


def test_recipients_one_file_each_with_their_own_fields(wrap_env: Path, tmp_path: Path) -> None:
    recipients = tmp_path / "recipients.csv"
    recipients.write_text("uid,list\nr-1,vip\nr-2,\n", encoding="utf-8")
    out = tmp_path / "out"
    result = run(
        "wrap",
        str(wrap_env),
        "--cid",
        "spring",
        "--recipients",
        str(recipients),
        "--out-dir",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["r-1.html", "r-2.html"]
    for uid, fields in (("r-1", {"list": "vip"}), ("r-2", {})):
        html_text = (out / f"{uid}.html").read_text(encoding="utf-8")
        urls = re.findall(r'(?:href|src)="(https://t\.example\.com/[rp]/[^"]+)"', html_text)
        assert len(urls) == 3
        for url in urls:
            payload = signed_payload(url)
            assert payload["uid"] == uid
            assert payload["cid"] == "spring"
            assert {k: payload[k] for k in fields} == fields
            assert ("list" in payload) == bool(fields)


def test_recipients_as_ndjson(wrap_env: Path, tmp_path: Path) -> None:
    recipients = tmp_path / "recipients.csv"
    recipients.write_text("uid\nr-1\nr-2\n", encoding="utf-8")
    result = run("wrap", str(wrap_env), "--recipients", str(recipients))
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["uid"] for line in lines] == ["r-1", "r-2"]
    assert all(line["html"].count("/r/") == 2 for line in lines)


def test_a_bad_row_writes_nothing(wrap_env: Path, tmp_path: Path) -> None:
    recipients = tmp_path / "recipients.csv"
    recipients.write_text("uid\nr-1\n../etc\n", encoding="utf-8")
    out = tmp_path / "out"
    result = run("wrap", str(wrap_env), "--recipients", str(recipients), "--out-dir", str(out))
    assert result.exit_code == 2
    assert "line 3" in result.output
    assert not out.exists()
    clash = run("wrap", str(wrap_env), "--uid", "x", "--recipients", str(recipients))
    assert clash.exit_code == 2
    assert "uid" in clash.output


async def test_the_trap_link_is_hidden_first_and_answers_blank(wrap_env: Path) -> None:
    result = run("wrap", str(wrap_env), "--cid", "spring", "--uid", "r-7", "--trap")
    assert result.exit_code == 0, result.output
    out = result.stdout
    links = re.findall(r'href="(https://t\.example\.com/r/[^"]+)"', out)
    assert len(links) == 3
    body = out.index('<body style="margin:0">') + len('<body style="margin:0">')
    assert out[body:].startswith('<a href="' + links[0] + '" rel="nofollow" aria-hidden="true"')
    assert "display:none;mso-hide:all" in out
    assert out.index(links[0]) < out.index('src="https://t.example.com/p/')
    async with running(Settings.from_env()) as h:
        answer = await h.client.get(links[0].removeprefix(BASE))
        assert (answer.status_code, answer.headers.get("location")) == (200, None)
    rows = stored_rows(Settings.from_env(), "SELECT kind, uid, traffic, traffic_reasons FROM hits")
    assert rows == [("click", "r-7", "link_scanner", "trap")]
    recipients = wrap_env.parent / "r.csv"
    recipients.write_text("uid\nr-1\nr-2\n", encoding="utf-8")
    result = run("wrap", str(wrap_env), "--cid", "c", "--recipients", str(recipients), "--trap")
    assert result.exit_code == 0, result.output
    assert [
        json.loads(line)["html"].count('aria-hidden="true"') for line in result.stdout.splitlines()
    ] == [1, 1]


def test_own_merge_tags_are_left_alone_with_leave(wrap_env: Path, tmp_path: Path) -> None:
    """--leave adds the sender's own merge-tag patterns to the usual templated ones."""
    email = tmp_path / "own.html"
    own = '<a href="https://shop.example/u?id=%%RECIPIENT_ID%%">Prefs</a>'
    email.write_text(f"<html><body>{own}<a href='https://shop.example/'>x</a></body></html>")
    plain = run("wrap", str(email), "--cid", "c", "--no-pixel")
    assert plain.exit_code == 0, plain.output
    assert own not in plain.stdout
    assert plain.stdout.count("/r/") == 2
    left = run("wrap", str(email), "--cid", "c", "--no-pixel", "--leave", r"%%\w+%%")
    assert left.exit_code == 0, left.output
    assert own in left.stdout
    assert left.stdout.count("/r/") == 1
    for bad in ("(", "", "x" * 201):
        result = run("wrap", str(email), "--leave", bad)
        assert result.exit_code == 2, result.output
        assert "--leave" in result.output
        assert "Traceback" not in result.output
