"""`link` and `pixel` on the command line: a light import chain, refused options, recipients."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from pixel_server.cli import main
from pixel_server.config import Settings
from pixel_server.links import MAX_EXPIRES_S
from pixel_server.signing import PIXEL_SALT, REDIRECT_SALT, TokenSigner

from conftest import SECRET, running

BASE = "https://t.example.com"
# itsdangerous: only format-1 tokens need it, and minting never writes them (docs/tokens.md)
HEAVY = (
    "user_agents",
    "ua_parser",
    "aiosqlite",
    "starlette",
    "uvicorn",
    "prometheus_client",
    "itsdangerous",
)


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "PIXEL_DB": str(tmp_path / "pixel.db"),
        "PIXEL_SECRET_KEY": SECRET,
        "PIXEL_PUBLIC_URL": BASE,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def ok(*args: str) -> Result:
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


def payload(url: str, settings: Settings) -> dict[str, Any]:
    """The verified payload of a printed link or pixel URL."""
    from pixel_server.keys import Keyring

    keys = Keyring.from_settings(settings)
    if url.endswith(".gif"):
        return TokenSigner(keys, PIXEL_SALT).loads(url.rsplit("/", 1)[1].removesuffix(".gif"))
    return TokenSigner(keys, REDIRECT_SALT).loads(url.rsplit("/", 1)[1])


def modules_after(code: str) -> list[str]:
    """The heavy modules loaded after running ``code`` in a fresh interpreter."""
    probe = (
        f"{code}\nimport json, sys\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"
    )
    env = {**os.environ, "PIXEL_SECRET_KEY": SECRET}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_the_cli_loads_no_ua_parser_sqlite_driver_or_web_stack() -> None:
    """`import pixel_server.cli` leaves user_agents, ua_parser, aiosqlite, starlette unloaded."""
    assert modules_after("import pixel_server.cli") == []


def test_minting_a_link_loads_no_ua_parser_sqlite_driver_or_web_stack(tmp_path: Path) -> None:
    """Running `link` and `pixel` end to end still loads none of the heavy modules."""
    db = str(tmp_path / "p.db")
    code = (
        "from pixel_server.cli import main\n"
        f"main(['link', 'https://shop.example/x', '--cid', 'c', '--db', {db!r}],"
        " standalone_mode=False)\n"
        f"main(['pixel', '--cid', 'c', '--db', {db!r}], standalone_mode=False)"
    )
    assert modules_after(code) == []


def test_field_that_conflicts_with_its_option_is_refused(cli_env: dict[str, str]) -> None:
    """`--field cid=x --cid y` is refused (it used to sign x silently)."""
    result = run("link", "https://shop.example/", "--cid", "y", "--field", "cid=x")
    assert result.exit_code == 2
    assert "Invalid value for --field: 'cid' is given twice: 'y' and 'x'" in result.output


def test_field_given_twice_with_two_values_is_refused(cli_env: dict[str, str]) -> None:
    """`--field list=a --field list=b` is refused instead of keeping the last value."""
    result = run("pixel", "--field", "list=a", "--field", "list=b")
    assert result.exit_code == 2
    assert "'list' is given twice" in result.output


def test_field_naming_its_option_alone_signs_that_id(
    cli_env: dict[str, str], make_settings: Callable[..., Settings]
) -> None:
    """`--field cid=x` without `--cid`, or with the same value, is the same as `--cid x`."""
    url = ok("link", "https://shop.example/", "--field", "cid=x", "--cid", "x").output.strip()
    assert payload(url, make_settings())["cid"] == "x"


@pytest.mark.parametrize(
    ("command", "field"),
    [("link", "u=1"), ("link", "x=1"), ("link", "a=1"), ("link", "url=1"), ("pixel", "x=1")],
)
def test_field_naming_a_token_key_is_refused(
    cli_env: dict[str, str], command: str, field: str
) -> None:
    """u, x, a steer the token, and a click records its own url: none is a --field."""
    args = [command, "https://shop.example/"] if command == "link" else [command]
    result = run(*args, "--field", field)
    assert result.exit_code == 2
    assert "Invalid value for --field" in result.output


@pytest.mark.parametrize("expires", ["0s", "0d", "3651d", "99999999999w", "-1d", "soon"])
def test_expiry_must_be_positive_and_at_most_ten_years(
    cli_env: dict[str, str], expires: str
) -> None:
    """`--expires 0s` (dead on arrival) and `--expires 99999999999w` are refused, exit 2."""
    result = run("link", "https://shop.example/", "--expires", expires)
    assert result.exit_code == 2
    assert "Invalid value for --expires" in result.output


def test_expiry_of_ten_years_is_accepted(
    cli_env: dict[str, str], make_settings: Callable[..., Settings]
) -> None:
    """The documented maximum, 3650d, signs an expiry ten years ahead."""
    before = time.time()
    url = ok("link", "https://shop.example/", "--expires", "3650d").output.strip()
    assert (
        before + MAX_EXPIRES_S - 1
        <= payload(url, make_settings())["x"]
        <= time.time() + (MAX_EXPIRES_S)
    )


def test_canonical_target_of_an_uppercase_host_is_noted(
    cli_env: dict[str, str], make_settings: Callable[..., Settings]
) -> None:
    """`https://SHOP.example/` is signed as `https://shop.example/`, and stderr says so."""
    result = ok("link", "https://SHOP.example/")
    assert "note: signing https://shop.example/ (a browser reads https://SHOP.example/" in (
        result.stderr
    )
    assert result.stdout.count("\n") == 1
    assert payload(result.stdout.strip(), make_settings())["u"] == "https://shop.example/"


def test_target_already_canonical_prints_no_note(cli_env: dict[str, str]) -> None:
    """A canonical target prints the link and nothing on stderr."""
    assert ok("link", "https://shop.example/sale").stderr == ""


def test_token_longer_than_the_server_reads_is_refused(cli_env: dict[str, str]) -> None:
    """A token over PIXEL_MAX_TOKEN_BYTES would be a dead link: refused with exit 2."""
    note = "".join(hashlib.sha256(str(i).encode()).hexdigest() for i in range(10))
    result = CliRunner().invoke(
        main,
        ["link", "https://shop.example/", "--field", f"note={note}"],
        env={"PIXEL_MAX_TOKEN_BYTES": "256"},
    )
    assert result.exit_code == 2
    assert "over PIXEL_MAX_TOKEN_BYTES (256)" in result.output


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return path


async def test_recipients_csv_gives_one_working_link_per_row(
    cli_env: dict[str, str], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """`link --recipients` prints the rows plus a link each; every link redirects and
    records that row's uid and fields (an empty cell signs nothing)."""
    recipients = write_csv(
        tmp_path / "r.csv", [["uid", "name", "list"], ["r-1", "Ann", "vip"], ["r-2", "Bob", ""]]
    )
    out = ok(
        "link", "https://shop.example/sale", "--cid", "spring", "--recipients", str(recipients)
    ).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["uid"], r["name"], r["list"]) for r in rows] == [
        ("r-1", "Ann", "vip"),
        ("r-2", "Bob", ""),
    ]
    async with running(make_settings(db=cli_env["PIXEL_DB"])) as h:
        for row in rows:
            response = await h.client.get(row["link"].removeprefix(BASE))
            assert response.headers["location"] == "https://shop.example/sale"
        hits = sorted(await h.hits(), key=lambda hit: hit["uid"])
    assert [(hit["cid"], hit["uid"], hit["params"]) for hit in hits] == [
        ("spring", "r-1", {"name": "Ann", "list": "vip"}),
        ("spring", "r-2", {"name": "Bob"}),
    ]


def test_recipients_as_ndjson_to_a_file(
    cli_env: dict[str, str], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """`--format ndjson -o FILE` writes one JSON object per recipient, in input order."""
    recipients = write_csv(tmp_path / "r.csv", [["uid", "name"], ["b", "Zoë\u2028"], ["a", "Al"]])
    out = tmp_path / "links.ndjson"
    result = ok(
        "link",
        "https://shop.example/",
        "--recipients",
        str(recipients),
        "--format",
        "ndjson",
        "-o",
        str(out),
    )
    assert result.stderr == f"wrote 2 links to {out}\n"
    text = out.read_text(encoding="utf-8")
    assert "\u2028" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert [(line["uid"], line["name"]) for line in lines] == [("b", "Zoë\u2028"), ("a", "Al")]
    assert payload(lines[0]["link"], make_settings())["uid"] == "b"


async def test_pixel_recipients_gives_one_signed_pixel_per_row(
    cli_env: dict[str, str], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """`pixel --recipients` mints a signed pixel per row; each records an open for its uid."""
    recipients = write_csv(tmp_path / "r.csv", [["uid"], ["r-1"], ["r-2"]])
    out = ok("pixel", "--cid", "nl", "--recipients", str(recipients)).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    async with running(make_settings(db=cli_env["PIXEL_DB"])) as h:
        for row in rows:
            await h.client.get(row["pixel"].removeprefix(BASE))
        hits = await h.hits()
    assert sorted((hit["kind"], hit["cid"], hit["uid"]) for hit in hits) == [
        ("open", "nl", "r-1"),
        ("open", "nl", "r-2"),
    ]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([["name"], ["Ann"]], "line 1: no 'uid' column"),
        ([["uid", "name"], ["r-1", "Ann"], ["", "Bob"]], "line 3: the uid is empty"),
        ([["uid"], ["r-1"], ["r-2"], ["r-1"]], "line 4: uid 'r-1' is already on line 2"),
        ([["uid", "name"], ["r-1", "Ann", "extra"]], "line 2: 3 cells, but the header has 2"),
        ([["uid", "uid"], ["a", "b"]], "line 1: column 'uid' appears twice"),
        ([["uid", "x"], ["a", "1"]], "line 1: 'x' is reserved"),
        ([["uid", "url"], ["a", "1"]], "line 1: 'url' is set by the server"),
        ([["uid", "cid"], ["a", "c"]], "line 1: column 'cid' is also given as an option"),
        ([["uid", "link"], ["a", "c"]], "line 1: 'link' is the output column"),
        ([], "line 1: the file is empty"),
    ],
)
def test_recipients_problems_name_the_line_and_write_nothing(
    cli_env: dict[str, str], tmp_path: Path, rows: list[list[str]], message: str
) -> None:
    """A bad recipients file is one clear error naming its line, exit 2, and no output."""
    recipients = write_csv(tmp_path / "r.csv", rows)
    out = tmp_path / "links.csv"
    result = run(
        "link",
        "https://shop.example/",
        "--cid",
        "c",
        "--recipients",
        str(recipients),
        "-o",
        str(out),
    )
    assert result.exit_code == 2, result.output
    assert f"Error: {recipients} {message}" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_recipients_that_are_not_utf8_are_refused(cli_env: dict[str, str], tmp_path: Path) -> None:
    """A Latin-1 recipients file is refused with exit 2, not a traceback."""
    recipients = tmp_path / "r.csv"
    recipients.write_bytes(b"uid,name\nr-1,Zo\xeb\n")
    result = run("link", "https://shop.example/", "--recipients", str(recipients))
    assert result.exit_code == 2
    assert "not UTF-8 text" in result.output


def test_recipients_with_a_bad_target_report_the_target_once(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """A refused target is reported as the URL's problem, not as a problem of every row."""
    recipients = write_csv(tmp_path / "r.csv", [["uid"], ["a"], ["b"]])
    result = run("link", "javascript:alert(1)", "--recipients", str(recipients))
    assert result.exit_code == 2
    assert "Invalid value for URL" in result.output


def test_recipients_from_stdin_with_a_byte_order_mark(
    cli_env: dict[str, str], make_settings: Callable[..., Settings]
) -> None:
    """`--recipients -` reads stdin; a spreadsheet's UTF-8 byte-order mark is skipped."""
    result = CliRunner().invoke(
        main,
        ["link", "https://shop.example/", "--recipients", "-"],
        input="\ufeffuid,name\r\nr-1,Ann\r\n".encode(),
    )
    assert result.exit_code == 0, result.output
    [row] = list(csv.DictReader(io.StringIO(result.stdout)))
    assert payload(row["link"], make_settings())["uid"] == "r-1"


def test_unsigned_pixel_refuses_recipients(cli_env: dict[str, str], tmp_path: Path) -> None:
    """`pixel --unsigned --recipients` is refused: a recipients list is for signed pixels."""
    recipients = write_csv(tmp_path / "r.csv", [["uid"], ["a"]])
    result = run("pixel", "--unsigned", "--recipients", str(recipients))
    assert result.exit_code == 2
    assert "drop --unsigned" in result.output


@pytest.mark.parametrize("option", [["--format", "ndjson"], ["-o", "links.csv"], ["--carry", "e"]])
def test_bulk_output_options_without_recipients_are_refused(
    cli_env: dict[str, str], option: list[str]
) -> None:
    """`--format`/`-o`/`--carry` only shape --recipients output: alone they are an error, not
    ignored."""
    for command in (["link", "https://shop.example/"], ["pixel"]):
        result = run(*command, *option)
        assert result.exit_code == 2
        assert "--format, --output and --carry go with --recipients" in result.output


@pytest.mark.parametrize("command", [["link", "https://shop.example/"], ["pixel"]])
def test_a_key_problem_is_one_line_and_exit_2(cli_env: dict[str, str], command: list[str]) -> None:
    """A key that cannot be used (here a malformed PIXEL_VERIFY_KEYS) is an error, no traceback."""
    result = CliRunner().invoke(main, command, env={"PIXEL_VERIFY_KEYS": "no-colon-here"})
    assert result.exit_code == 2, result.output
    assert "PIXEL_VERIFY_KEYS" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    "command", [["link", "https://shop.example/"], ["pixel"], ["pixel", "--unsigned"]]
)
def test_wildcard_host_without_public_url_prints_no_dead_link(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """With PIXEL_HOST=0.0.0.0 and no PIXEL_PUBLIC_URL a link would point at 0.0.0.0: exit 2."""
    monkeypatch.delenv("PIXEL_PUBLIC_URL")
    result = CliRunner().invoke(main, command, env={"PIXEL_HOST": "0.0.0.0"})
    assert result.exit_code == 2, result.output
    assert "set PIXEL_PUBLIC_URL" in result.output
    assert "0.0.0.0:8000" not in result.stdout
    with_url = CliRunner().invoke(
        main, command, env={"PIXEL_HOST": "0.0.0.0", "PIXEL_PUBLIC_URL": BASE}
    )
    assert with_url.stdout.startswith(BASE)
