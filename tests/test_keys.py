"""Signing keys: the key file (its id, its format, its permissions) and the rotation settings."""

from __future__ import annotations

import multiprocessing
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from pixel_server.config import ConfigError, Settings
from pixel_server.files import InsecureFile
from pixel_server.keys import KeyFile, KeyMissing, Keyring
from pixel_server.signing import REDIRECT_SALT, TokenSigner

NOBODY = 65534
LEGACY_SECRET = "legacy-secret-generated-before-ids-0123"


@pytest.fixture
def file_settings(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    """Settings that take the key from the key file (PIXEL_SECRET_KEY empty)."""

    def make(**overrides: str) -> Settings:
        return make_settings(secret_key="", **overrides)

    return make


def write_key_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_generated_key_is_private_persistent_and_records_its_id(tmp_path: Path) -> None:
    """The server's first start writes `k1:<secret>` (mode 0600) once; later starts reuse it."""
    path = tmp_path / "pixel.db.key"
    assert KeyFile.create(path, "k1")
    kid, secret = path.read_text().strip().split(":")
    assert kid == "k1"
    assert len(secret) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not KeyFile.create(path, "k1")
    assert KeyFile.read(path).keys == (("k1", secret),)


def test_keyring_uses_generated_key_next_to_database(
    file_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """The default key file is the database path plus .key; its id is the signing id."""
    keyring = Keyring.create_or_load(file_settings())
    assert keyring.signing_id == "k1"
    assert f"k1:{keyring.secrets['k1']}" == (tmp_path / "pixel.db.key").read_text().strip()


def test_loading_keys_never_creates_one(
    file_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Without a key, load() says where it looked and how to point at the server's key."""
    with pytest.raises(KeyMissing) as caught:
        Keyring.load(file_settings())
    message = str(caught.value)
    assert str(tmp_path / "pixel.db.key") in message
    for name in ("PIXEL_DB", "PIXEL_SECRET_FILE", "PIXEL_SECRET_KEY"):
        assert name in message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_key_file_from_before_key_ids_is_read_as_k1(
    file_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """A file holding just the secret (the old format) keeps signing and verifying as k1."""
    write_key_file(tmp_path / "pixel.db.key", LEGACY_SECRET + "\n")
    old_link = TokenSigner(Keyring("k1", {"k1": LEGACY_SECRET}), REDIRECT_SALT).dumps({"u": "x"})
    keyring = Keyring.load(file_settings())
    assert (keyring.signing_id, keyring.secrets) == ("k1", {"k1": LEGACY_SECRET})
    assert TokenSigner(keyring, REDIRECT_SALT).loads(old_link) == {"u": "x"}


@pytest.mark.parametrize(
    "text", [LEGACY_SECRET + "\n", f"k1:{LEGACY_SECRET}\n"], ids=["old-format", "with-id"]
)
def test_key_id_that_would_relabel_the_key_file_is_refused(
    file_settings: Callable[..., Settings], tmp_path: Path, text: str
) -> None:
    """PIXEL_KEY_ID=k2 without a new key would sign k1's key as k2: refused, rotation shown."""
    write_key_file(tmp_path / "pixel.db.key", text)
    with pytest.raises(ConfigError) as caught:
        Keyring.load(file_settings(key_id="k2"))
    message = str(caught.value)
    assert "PIXEL_KEY_ID=k2" in message
    assert "is k1" in message
    assert "keys rotate" in message
    assert "PIXEL_VERIFY_KEYS" in message


def test_key_id_equal_to_the_key_files_id_is_accepted(
    file_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Naming the key file's own id in PIXEL_KEY_ID is harmless."""
    write_key_file(tmp_path / "pixel.db.key", f"k7:{LEGACY_SECRET}\n")
    assert Keyring.load(file_settings(key_id="k7")).signing_id == "k7"


@pytest.mark.parametrize(
    "text", [LEGACY_SECRET + "\n", f"k1:{LEGACY_SECRET}\n"], ids=["old-format", "with-id"]
)
def test_rotated_key_file_signs_with_the_new_key_and_verifies_the_old(
    file_settings: Callable[..., Settings], tmp_path: Path, text: str
) -> None:
    """After rotate, k2 signs and a link signed with k1 before still verifies."""
    path = write_key_file(tmp_path / "pixel.db.key", text)
    old_link = TokenSigner(Keyring.load(file_settings()), REDIRECT_SALT).dumps({"u": "old"})
    KeyFile.read(path).rotated(None).replace()
    keyring = Keyring.load(file_settings())
    assert keyring.signing_id == "k2"
    assert set(keyring.secrets) == {"k1", "k2"}
    signer = TokenSigner(keyring, REDIRECT_SALT)
    assert signer.loads(old_link) == {"u": "old"}
    assert signer.dumps({"u": "new"}).startswith("k2.")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["pixel.db.key"]


def test_rotation_refuses_an_id_already_in_the_file(tmp_path: Path) -> None:
    """A new key never takes the id of a key that links were signed with."""
    path = write_key_file(tmp_path / "k.key", f"k2:{LEGACY_SECRET}\nk1:{LEGACY_SECRET}x\n")
    with pytest.raises(ConfigError, match="already in"):
        KeyFile.read(path).rotated("k1")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o644, 0o666])
def test_key_file_open_to_other_users_is_refused(
    file_settings: Callable[..., Settings], tmp_path: Path, mode: int
) -> None:
    """A key file with any group or other permission is refused, as ssh refuses such keys."""
    write_key_file(tmp_path / "pixel.db.key", f"k1:{LEGACY_SECRET}\n", mode)
    with pytest.raises(InsecureFile, match=f"mode {mode:04o}.*chmod 600"):
        Keyring.load(file_settings())


def test_key_file_owned_by_someone_else_is_refused(
    file_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """A key file the current user does not own is refused (its owner could change it)."""
    path = write_key_file(tmp_path / "pixel.db.key", f"k1:{LEGACY_SECRET}\n")
    if os.geteuid() != 0:
        pytest.skip("needs root to give the file to another user")
    os.chown(path, NOBODY, NOBODY)
    with pytest.raises(InsecureFile, match=f"owned by uid {NOBODY}"):
        Keyring.load(file_settings())


def test_one_key_id_with_two_secrets_is_refused(
    file_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """k1 in the key file and another k1 in PIXEL_VERIFY_KEYS: refused, not one silently won."""
    write_key_file(tmp_path / "pixel.db.key", f"k1:{LEGACY_SECRET}\n")
    with pytest.raises(ConfigError, match="two different keys"):
        Keyring.load(file_settings(verify_keys="k1:another-secret-0123456789"))


@pytest.mark.parametrize("text", ["", "\n# only a comment\n", "k1:aaaa\nnot an id line\n"])
def test_malformed_key_file_is_refused(
    file_settings: Callable[..., Settings], tmp_path: Path, text: str
) -> None:
    """An empty key file, or a line that is not id:secret, is a config error."""
    write_key_file(tmp_path / "pixel.db.key", text)
    with pytest.raises(ConfigError, match="key file"):
        Keyring.load(file_settings())


def _create(path: str, queue: multiprocessing.Queue[str]) -> None:
    KeyFile.create(Path(path), "k1")
    queue.put(Path(path).read_text())


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
    assert "super-secret" not in repr(Keyring.load(settings))


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
        Keyring.load(make_settings(**overrides))
