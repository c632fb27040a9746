"""``pixel-server keys create|list|revoke`` as real processes, on SQLite and on PostgreSQL:
the key is printed once and kept only as a hash, listed without its secret, revoked by id;
every bad input is one line."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from pixel_server.apikeys import split_key
from pixel_server.config import Settings

from conftest import store_cli_env, stored_rows

pytestmark = pytest.mark.both_stores


def run(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXEL_")}
    return subprocess.run(
        [sys.executable, "-m", "pixel_server", "keys", *args],
        env={**env, **store_cli_env(settings)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_key_is_shown_once_and_stored_as_a_hash(make_settings: Callable[..., Settings]) -> None:
    """`keys create` prints the key on stdout (the note on stderr); the store holds its
    SHA-256, not the key; `keys list` shows id, scopes, times and name, never the secret."""
    settings = make_settings()
    made = run(settings, "create", "--name", "checkout", "--scope", "ingest", "--scope", "read")
    assert made.returncode == 0, made.stderr
    text = made.stdout.strip()
    parts = split_key(text)
    assert parts is not None, text
    key_id, secret = parts
    assert "shown only now" in made.stderr
    [(stored_id, scopes, digest)] = stored_rows(settings, "SELECT id, scopes, hash FROM api_keys")
    assert (stored_id, scopes) == (key_id, "ingest,read")
    assert digest == hashlib.sha256(secret.encode()).hexdigest()
    listed = run(settings, "list")
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    fields = line.split("\t")
    assert (fields[0], fields[1], fields[3], fields[4]) == (key_id, "ingest,read", "-", "checkout")
    assert secret not in listed.stdout + listed.stderr


def test_a_revoked_key_is_listed_with_its_time(make_settings: Callable[..., Settings]) -> None:
    """`keys revoke ID` revokes once; a second revoke keeps the first time; an unknown id is
    an error (exit 1)."""
    settings = make_settings()
    text = run(settings, "create", "--name", "ci", "--scope", "read").stdout.strip()
    key_id = text.split("_")[1]
    revoked = run(settings, "revoke", key_id)
    assert (revoked.returncode, revoked.stdout) == (0, f"revoked API key {key_id} (ci)\n")
    first = run(settings, "list").stdout
    assert first.split("\t")[3] != "-"
    assert run(settings, "revoke", key_id).returncode == 0
    assert run(settings, "list").stdout == first
    missing = run(settings, "revoke", "zzzzzzzzzzzz")
    assert missing.returncode == 1
    assert missing.stderr == "Error: no API key 'zzzzzzzzzzzz' (see `pixel-server keys list`)\n"


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["create", "--name", "x", "--scope", "write"], "'write' is not one of"),
        (["create", "--name", "x"], "--scope"),
        (["create", "--scope", "read"], "--name"),
        (["create", "--name", "", "--scope", "read"], "1 to 100 printable"),
        (["create", "--name", "a\x1b[31mred", "--scope", "read"], "1 to 100 printable"),
        (["create", "--name", "n" * 101, "--scope", "read"], "1 to 100 printable"),
    ],
)
def test_bad_input_is_one_line(
    make_settings: Callable[..., Settings], args: list[str], shown: str
) -> None:
    """A bad scope or name, or a missing option: one Error line and exit 2."""
    settings = make_settings()
    result = run(settings, *args)
    assert result.returncode == 2, result
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: ")
    assert shown in line
    assert result.stdout == ""
