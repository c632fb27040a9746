"""The command line: links, pixels, reading and exporting hits, and the help texts."""

from __future__ import annotations

import asyncio
import csv
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from pixel_server.cli import main
from pixel_server.config import Settings

from conftest import SECRET, running, store_cli_env

README = Path(__file__).resolve().parent.parent / "README.md"


pytestmark = pytest.mark.both_stores


@pytest.fixture
def cli_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings]
) -> dict[str, str]:
    """The CLI pointed at the store under test (the one make_settings() opens)."""
    env = {
        **store_cli_env(make_settings()),
        "PIXEL_SECRET_KEY": SECRET,
        "PIXEL_PUBLIC_URL": "https://t.example.com",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def populate(settings: Settings, *requests: tuple[str, dict[str, str]]) -> None:
    """Send requests to an in-process app on ``settings`` (for sync CLI tests)."""

    async def send() -> None:
        async with running(settings) as h:
            for path, headers in requests:
                assert (await h.client.get(path, headers=headers)).status_code == 200

    asyncio.run(send())


def invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


async def test_link_prints_a_url_the_server_redirects(
    cli_env: dict[str, str], make_settings: Callable[..., Settings]
) -> None:
    """`link` prints /r/<token> under PIXEL_PUBLIC_URL; the server sends it to the target."""
    output = invoke(
        "link",
        "https://shop.example/sale",
        "--cid",
        "spring",
        "--uid",
        "r-1",
        "--utm-source",
        "nl",
        "--append-utm",
        "--expires",
        "30d",
    )
    url = output.strip()
    assert url.startswith("https://t.example.com/r/k1.")
    async with running(make_settings()) as h:
        response = await h.client.get(url.removeprefix("https://t.example.com"))
        assert response.status_code == 302
        assert response.headers["location"] == "https://shop.example/sale?utm_source=nl"
        [hit] = await h.hits()
        assert (hit["cid"], hit["uid"]) == ("spring", "r-1")


@pytest.mark.parametrize("target", ["javascript:alert(1)", "//evil.example", "http://127.0.0.1/"])
def test_link_refuses_unsafe_targets(cli_env: dict[str, str], target: str) -> None:
    """`link` will not sign a target that the redirect would refuse."""
    result = CliRunner().invoke(main, ["link", target])
    assert result.exit_code == 2
    assert "Invalid value for URL" in result.output


def test_link_respects_the_host_allowlist(cli_env: dict[str, str]) -> None:
    """With PIXEL_REDIRECT_HOSTS set, `link` refuses other hosts."""
    result = CliRunner().invoke(
        main, ["link", "https://evil.example/"], env={"PIXEL_REDIRECT_HOSTS": "shop.example"}
    )
    assert result.exit_code == 2
    assert "not_allowed" in result.output


async def test_pixel_prints_signed_url_and_img_tag(
    cli_env: dict[str, str], make_settings: Callable[..., Settings]
) -> None:
    """`pixel` prints a signed /p/<token>.gif and an <img> tag; the server records an open."""
    lines = invoke("pixel", "--cid", "spring", "--uid", "r-9", "--field", "list=vip").splitlines()
    url, tag = lines
    assert re.fullmatch(r"https://t\.example\.com/p/k1\.[\w.-]+\.gif", url)
    assert f'src="{url}"' in tag
    assert 'width="1" height="1"' in tag
    async with running(make_settings()) as h:
        await h.client.get(url.removeprefix("https://t.example.com"))
        [hit] = await h.hits()
        assert (hit["kind"], hit["cid"], hit["uid"], hit["params"]) == (
            "open",
            "spring",
            "r-9",
            {"list": "vip"},
        )


def test_unsigned_pixel_is_a_plain_query_url(cli_env: dict[str, str]) -> None:
    """`pixel --unsigned` prints /p.gif with the ids as query parameters."""
    url = invoke("pixel", "--unsigned", "--cid", "landing", "--utm-source", "ads").splitlines()[0]
    assert url == "https://t.example.com/p.gif?cid=landing&utm_source=ads"


def test_field_must_be_key_value(cli_env: dict[str, str]) -> None:
    """A --field without '=' is a usage error."""
    result = CliRunner().invoke(main, ["pixel", "--field", "novalue"])
    assert result.exit_code == 2


def test_hits_table_shows_parsed_fields_and_escapes_controls(
    cli_env: dict[str, str], make_settings: Callable[..., Settings]
) -> None:
    """`hits` prints a table with browser, OS and device; escape sequences are shown, not run."""
    ua = (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
    )
    populate(
        make_settings(),
        ("/p.gif?cid=tbl&utm_source=nl", {"user-agent": ua}),
        ("/p.gif?cid=%E2%80%AEevil%C2%9B31m", {}),
    )
    output = invoke("hits", "--limit", "5")
    assert "Mobile Safari" in output
    assert "iOS" in output
    assert "mobile" in output
    assert "203.0.113.0" in output
    assert "\x1b" not in output
    assert "\u202e" not in output
    assert "\\u202e" in output
    assert "tbl" in invoke("hits", "--cid", "tbl")
    assert "evil" not in invoke("hits", "--cid", "tbl")


@pytest.mark.sqlite_only("a PostgreSQL database is never created by reading")
def test_hits_without_database_is_a_clear_error(cli_env: dict[str, str]) -> None:
    """Reading a database that does not exist says so instead of creating one."""
    result = CliRunner().invoke(main, ["hits"])
    assert result.exit_code == 2
    assert "no database" in result.output
    assert not Path(cli_env["PIXEL_DB"]).exists()


def test_export_to_file_and_stdout(
    cli_env: dict[str, str], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """`export` writes CSV to a file (reporting the count) and NDJSON to stdout."""
    populate(
        make_settings(),
        *[(f"/p.gif?cid=exp&eid=x{i}&utm_source=%3Dcmd", {}) for i in range(12)],
    )
    out = tmp_path / "hits.csv"
    result = CliRunner().invoke(main, ["export", "--cid", "exp", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote 12 hits" in result.output
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12
    assert rows[0]["utm_source"] == "'=cmd"
    lines = invoke("export", "--format", "ndjson", "--limit", "5").splitlines()
    assert [json.loads(line)["eid"] for line in lines] == ["x11", "x10", "x9", "x8", "x7"]


def test_export_reads_its_options_from_the_environment(cli_env: dict[str, str]) -> None:
    """Command options also read PIXEL_<COMMAND>_<OPTION> variables."""
    result = CliRunner().invoke(main, ["export"], env={"PIXEL_EXPORT_FORMAT": "xml"})
    assert result.exit_code == 2
    assert "xml" in result.output


def test_bad_setting_is_a_usage_error(cli_env: dict[str, str]) -> None:
    """A malformed PIXEL_* value stops the command with the variable's name."""
    result = CliRunner().invoke(main, ["hits"], env={"PIXEL_IP_MODE": "everything"})
    assert result.exit_code == 2
    assert "PIXEL_IP_MODE" in result.output


COMMANDS = sorted(main.commands)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    """Each command's --help explains it and shows an Example."""
    output = invoke(command, "--help")
    assert "Example:" in output
    assert f"pixel-server {command}" in output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_documented_in_the_readme(command: str) -> None:
    """README.md shows each command in use."""
    assert f"pixel-server {command}" in README.read_text()


def test_settings_options_show_their_environment_variable() -> None:
    """`serve --help` names the PIXEL_* variable behind each option; secrets are env-only."""
    output = invoke("serve", "--help")
    for name in ("PIXEL_PORT", "PIXEL_DB", "PIXEL_QUEUE_MAX", "PIXEL_IP_MODE"):
        assert name in output
    assert "--secret-key" not in output
    assert "--api-tokens" not in output
