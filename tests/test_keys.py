"""Signing keys: the generated default key and the rotation settings."""

from __future__ import annotations

import multiprocessing
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from pixel_server.config import ConfigError, Settings
from pixel_server.keys import Keyring, load_or_create_secret


def test_generated_key_is_private_and_persistent(tmp_path: Path) -> None:
    """Without PIXEL_SECRET_KEY a random key is written once (mode 0600) and reused."""
    path = tmp_path / "pixel.db.key"
    first = load_or_create_secret(path)
    assert len(first) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == first


def test_keyring_uses_generated_key_next_to_database(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """The default key file is the database path plus .key."""
    keyring = Keyring.from_settings(make_settings(secret_key=""))
    assert keyring.secrets["k1"] == (tmp_path / "pixel.db.key").read_text().strip()


def _create(path: str, queue: multiprocessing.Queue[str]) -> None:
    queue.put(load_or_create_secret(Path(path)))


def test_workers_racing_to_create_the_key_agree(tmp_path: Path) -> None:
    """Several processes creating the key at once all end up with the same key."""
    ctx = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[str] = ctx.Queue()
    path = str(tmp_path / "race.key")
    procs = [ctx.Process(target=_create, args=(path, queue)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
    keys = {queue.get(timeout=5) for _ in procs}
    assert len(keys) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".race.key")]


def test_secret_never_appears_in_settings_repr(make_settings: Callable[..., Settings]) -> None:
    """repr(settings) hides the signing key, old keys and API tokens."""
    settings = make_settings(
        secret_key="super-secret-value-123456", verify_keys="k0:older-secret-value-1234"
    )
    text = repr(settings)
    assert "super-secret-value-123456" not in text
    assert "older-secret-value-1234" not in text
    assert "test-api-token" not in text
    assert "super-secret" not in repr(Keyring.from_settings(settings))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"verify_keys": "no-colon"}, "id:secret"),
        ({"verify_keys": "k0:short"}, "shorter"),
        ({"key_id": "bad id!"}, "must match"),
        ({"secret_key": "short"}, "shorter"),
    ],
)
def test_bad_key_settings_are_refused(
    make_settings: Callable[..., Settings], overrides: dict[str, str], message: str
) -> None:
    """Malformed key configuration fails at start-up with a clear message."""
    with pytest.raises(ConfigError, match=message):
        Keyring.from_settings(make_settings(**overrides))
