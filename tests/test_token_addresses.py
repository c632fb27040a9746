"""No email address is ever signed into a link or pixel (a token is signed, not encrypted):
the CLI, a recipients file and the API refuse it with a clear error that does not repeat it;
a recipients column carried with --carry reaches the output and no token."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pixel_server.addresses import has_address
from pixel_server.cli import main
from pixel_server.config import Settings
from pixel_server.keys import Keyring
from pixel_server.signing import PIXEL_SALT, REDIRECT_SALT, TokenSigner

from conftest import WRAP_BASE as BASE
from conftest import WRAP_EMAIL as EMAIL_HTML
from conftest import Harness, running

ADDRESS = "ann.o'neil+news@mail.example.co.uk"
REFUSED = "holds an email address"


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize(
    "value",
    [
        "ann@example.com",
        ADDRESS,
        "ann%40example.com",  # percent-encoded
        "list:ann@example.com;",  # inside a value
        "zoë@bücher.example",
        "ann@example.xn--p1ai",
    ],
)
def test_an_address_is_found(value: str) -> None:
    assert has_address(value)


@pytest.mark.parametrize(
    "value", ["hero@2x.png", "icon@1.5x.webp", "spring@2026", "a@b", "x@localhost", "r-1042"]
)
def test_what_is_not_an_address_is_signed(value: str) -> None:
    assert not has_address(value)


@pytest.mark.parametrize(
    "option",
    [
        ["--uid", "ann@example.com"],
        ["--sid", ADDRESS],
        ["--utm-content", "ann%40example.com"],
        ["--field", f"email={ADDRESS}"],
        ["--field", "to=Ann <ann@example.com>"],
    ],
)
def test_the_cli_refuses_an_address_without_repeating_it(wrap_env: Path, option: list[str]) -> None:
    """link, pixel (signed and plain), and wrap: exit 2, one line naming the field."""
    commands = [
        ["link", "https://shop.example/"],
        ["pixel"],
        ["pixel", "--unsigned"],
        ["wrap", str(wrap_env)],
    ]
    for command in commands:
        result = run(*command, *option)
        assert result.exit_code == 2, (command, result.output)
        assert REFUSED in result.output
        assert f"Invalid value for {option[0]}" in result.output  # the option given
        assert "ann@example.com" not in result.output
        assert ADDRESS not in result.output
        assert "Traceback" not in result.output


def test_a_message_id_and_an_image_name_are_not_addresses(wrap_env: Path) -> None:
    """A Message-ID has an @ by definition; it is the send's id, not a person's."""
    result = run(
        "wrap",
        str(wrap_env),
        "--uid",
        "r-1",
        "--utm-content",
        "hero@2x.png",
        "--message-id",
        "<20260301.spring@mail.shop.example>",
    )
    assert result.exit_code == 0, result.output


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return path


@pytest.fixture
def recipients(tmp_path: Path) -> Path:
    return write_csv(
        tmp_path / "r.csv",
        [["uid", "email", "first_name"], ["r-1", "ann@example.com", "Ann"], ["r-2", ADDRESS, "Bo"]],
    )


@pytest.mark.parametrize(
    "command", [["link", "https://shop.example/"], ["pixel"], ["wrap", "EMAIL"]]
)
def test_an_address_column_is_refused_naming_its_line_and_the_way_out(
    wrap_env: Path, recipients: Path, command: list[str]
) -> None:
    args = [str(wrap_env) if arg == "EMAIL" else arg for arg in command]
    result = run(*args, "--recipients", str(recipients))
    assert result.exit_code == 2
    assert f"{recipients} line 2: 'email' {REFUSED}" in result.output
    assert "--carry email" in result.output
    assert "ann@example.com" not in result.output
    assert result.stdout == ""  # nothing written


def payloads_in(text: str) -> Iterator[str]:
    """The payload, as JSON text, of every token in ``text``'s URLs: what anyone who sees
    the URL can read (a token is signed, not encrypted)."""
    keys = Keyring.from_settings(Settings.from_env())
    for kind, token in re.findall(r"/([rp])/([A-Za-z0-9._-]+)", text):
        if kind == "p":
            signer, token = TokenSigner(keys, PIXEL_SALT), token.removesuffix(".gif")
        else:
            signer = TokenSigner(keys, REDIRECT_SALT)
        yield json.dumps(signer.loads(token), ensure_ascii=False)


@pytest.mark.parametrize("command", [["link", "https://shop.example/"], ["pixel"]])
def test_a_carried_column_reaches_the_output_and_no_token(
    wrap_env: Path, recipients: Path, command: list[str]
) -> None:
    result = run(
        *command, "--recipients", str(recipients), "--carry", "email", "--format", "ndjson"
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["uid"], r["email"], r["first_name"]) for r in rows] == [
        ("r-1", "ann@example.com", "Ann"),
        ("r-2", ADDRESS, "Bo"),
    ]
    url_key = "link" if command[0] == "link" else "pixel"
    for row in rows:
        decoded = list(payloads_in(row[url_key]))
        assert len(decoded) == 1
        assert row["first_name"] in decoded[0]  # the decoder reads what was signed
        assert "@" not in decoded[0]
        assert "email" not in decoded[0]


def test_wrap_carries_the_address_to_the_ndjson_and_signs_none(
    wrap_env: Path, recipients: Path
) -> None:
    result = run("wrap", str(wrap_env), "--recipients", str(recipients), "--carry", "email")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["email"] for line in lines] == ["ann@example.com", ADDRESS]
    for line in lines:
        assert line["email"] not in line["html"]
        decoded = list(payloads_in(line["html"]))
        assert len(decoded) == 3  # the two links and the pixel
        assert all("@" not in text for text in decoded)


@pytest.mark.parametrize(
    ("carry", "message"),
    [("uid", "the uid is signed into every token"), ("mail", "--carry 'mail': no such column")],
)
def test_carry_names_a_column_that_exists_and_is_not_the_uid(
    wrap_env: Path, recipients: Path, carry: str, message: str
) -> None:
    result = run("link", "https://shop.example/", "--recipients", str(recipients), "--carry", carry)
    assert result.exit_code == 2
    assert message in result.output


def test_a_carried_column_may_have_a_token_keys_name(wrap_env: Path, tmp_path: Path) -> None:
    """A carried column is never signed, so even ``u`` (the target's key) may be one."""
    path = write_csv(tmp_path / "r.csv", [["uid", "u"], ["r-1", "anything"]])
    result = run("link", "https://shop.example/", "--recipients", str(path), "--carry", "u")
    assert result.exit_code == 0, result.output
    row = next(csv.DictReader(io.StringIO(result.stdout)))
    assert row["u"] == "anything"


@pytest.fixture
async def api(make_settings: Callable[..., Settings]) -> AsyncIterator[Harness]:
    async with running(make_settings(public_url=BASE)) as h:
        yield h


async def test_the_api_refuses_an_address_as_a_400_field_error(api: Harness) -> None:
    links = await api.client.post(
        "/api/links",
        json=[
            {"url": "https://shop.example/", "uid": "ann@example.com"},
            {"url": "https://shop.example/", "fields": {"email": ADDRESS}},
            {"url": "https://shop.example/", "uid": "r-1"},
        ],
        headers=api.auth,
    )
    assert links.status_code == 200
    answers = links.json()["links"]
    assert [a.get("error", {}).get("code") for a in answers] == ["bad_field", "bad_field", None]
    assert REFUSED in answers[0]["error"]["message"]
    assert "ann@example.com" not in links.text
    wrapped = await api.client.post(
        "/api/wrap", json={"html": EMAIL_HTML, "uid": "ann@example.com"}, headers=api.auth
    )
    assert wrapped.status_code == 400
    assert wrapped.json()["error"]["code"] == "bad_field"
    assert "ann@example.com" not in wrapped.text
