"""The key commands and the key checks of the CLI: no command but the server makes a key, and
a key that would give dead links or that others can touch stops the command in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from pixel_server.config import Settings

from conftest import ServerProcess, free_port, running

NOBODY = 65534
KEY_LINE = "k1:a-key-file-secret-0123456789abcdef"


def cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the real `pixel-server` with no PIXEL_* variables but ``env``."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith("PIXEL_")}
    return subprocess.run(
        [sys.executable, "-m", "pixel_server", *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def refused(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused command prints; it exits 2 and prints no traceback."""
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def private_key(path: Path, text: str = KEY_LINE + "\n") -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("command", [["link", "https://shop.example/"], ["pixel", "--cid", "c"]])
def test_signing_without_a_key_fails_instead_of_making_one(
    tmp_path: Path, command: list[str]
) -> None:
    """`link`/`pixel` in a directory without the server's key: exit 2, where it looked, how
    to point it at the key; no key file is created."""
    line = refused(cli(*command, cwd=tmp_path))
    assert str(tmp_path / "pixel.db.key") in line
    for name in ("PIXEL_DB", "PIXEL_SECRET_FILE", "PIXEL_SECRET_KEY"):
        assert name in line
    assert list(tmp_path.iterdir()) == []


def test_link_signed_with_the_servers_generated_key_redirects(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """`serve` makes the key; `link --db <the server's db>` from elsewhere signs with it."""
    data = tmp_path / "data"
    server = server_factory(env={"PIXEL_SECRET_KEY": "", "PIXEL_DB": str(data / "pixel.db")})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = cli("link", "https://shop.example/sale", "--db", str(data / "pixel.db"), cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip().rsplit("/r/", 1)[1]
    assert token.startswith("k1.")
    response = httpx.get(f"{server.url}/r/{token}")
    assert response.status_code == 302
    assert response.headers["location"] == "https://shop.example/sale"


def test_serve_refuses_a_key_id_that_relabels_the_key_file(tmp_path: Path) -> None:
    """`serve` with PIXEL_KEY_ID=k2 and a k1 key file exits 2 before serving anything."""
    private_key(tmp_path / "pixel.db.key")
    line = refused(cli("serve", cwd=tmp_path, PIXEL_KEY_ID="k2", PIXEL_PORT=str(free_port())))
    assert "PIXEL_KEY_ID=k2" in line
    assert "is k1" in line
    assert "keys rotate" in line


def test_serve_refuses_a_key_file_others_can_read(tmp_path: Path) -> None:
    """A pre-planted world-readable key file stops the server at start."""
    private_key(tmp_path / "pixel.db.key").chmod(0o644)
    line = refused(cli("serve", cwd=tmp_path, PIXEL_PORT=str(free_port())))
    assert "mode 0644" in line
    assert "chmod 600" in line
    assert not (tmp_path / "pixel.db").exists()


def test_link_refuses_a_key_file_owned_by_another_user(tmp_path: Path) -> None:
    """A key file owned by someone else is refused by `link` (its owner could forge links)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give the file to another user")
    os.chown(private_key(tmp_path / "pixel.db.key"), NOBODY, NOBODY)
    line = refused(cli("link", "https://shop.example/", cwd=tmp_path))
    assert f"owned by uid {NOBODY}" in line


def test_keys_init_creates_a_key_once_and_never_overwrites(tmp_path: Path) -> None:
    """`keys init` writes a private k1 key file; a second run refuses and leaves it alone."""
    result = cli("keys", "init", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    key = tmp_path / "pixel.db.key"
    assert str(key) in result.stdout
    assert "back this file up" in result.stdout
    text = key.read_text()
    assert text.startswith("k1:")
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    line = refused(cli("keys", "init", cwd=tmp_path))
    assert "already exists" in line
    assert key.read_text() == text


def test_keys_init_refuses_when_the_key_is_in_the_environment(tmp_path: Path) -> None:
    """With PIXEL_SECRET_KEY set there is no key file to create."""
    line = refused(cli("keys", "init", cwd=tmp_path, PIXEL_SECRET_KEY="x" * 32))
    assert "PIXEL_SECRET_KEY" in line
    assert list(tmp_path.iterdir()) == []


def test_keys_show_lists_ids_and_sources_but_never_a_secret(tmp_path: Path) -> None:
    """`keys show` prints each id, its role, a fingerprint and where it came from."""
    key = private_key(tmp_path / "pixel.db.key")
    old = "an-old-verify-only-secret-0123456789"
    result = cli("keys", "show", cwd=tmp_path, PIXEL_VERIFY_KEYS=f"k0:{old}")
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [(r[0], r[1], r[3]) for r in rows] == [
        ("k1", "signs", str(key)),
        ("k0", "verifies", "PIXEL_VERIFY_KEYS"),
    ]
    assert all(len(r[2]) == 8 for r in rows)
    assert KEY_LINE.split(":")[1] not in result.stdout
    assert old not in result.stdout


async def test_links_from_before_and_after_a_rotation_both_redirect(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """`keys rotate`: new links are signed k2, a k1 link from before still redirects."""
    private_key(tmp_path / "pixel.db.key")
    before = cli("link", "https://shop.example/old", cwd=tmp_path)
    rotate = cli("keys", "rotate", cwd=tmp_path)
    assert rotate.returncode == 0, rotate.stderr
    assert "new key k2 signs" in rotate.stdout
    assert "k1 still verify" in rotate.stdout
    after = cli("link", "https://shop.example/new", cwd=tmp_path)
    tokens = [r.stdout.strip().rsplit("/r/", 1)[1] for r in (before, after)]
    assert [t[:3] for t in tokens] == ["k1.", "k2."]
    async with running(make_settings(secret_key="")) as h:
        for token, target in zip(tokens, ["old", "new"], strict=True):
            response = await h.client.get(f"/r/{token}")
            assert response.status_code == 302
            assert response.headers["location"] == f"https://shop.example/{target}"


def test_keys_rotate_refuses_when_the_key_is_in_the_environment(tmp_path: Path) -> None:
    """Keys given as PIXEL_SECRET_KEY are rotated in the environment; rotate says how."""
    line = refused(cli("keys", "rotate", cwd=tmp_path, PIXEL_SECRET_KEY="x" * 32))
    assert "PIXEL_VERIFY_KEYS" in line
