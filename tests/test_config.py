"""Settings: parsing PIXEL_* variables, refusing bad values, and the README staying in sync."""

from __future__ import annotations

import dataclasses
import pickle
import re
from pathlib import Path

import pytest

from pixel_server.config import ConfigError, Settings, accepted, env_name, rules_missing
from pixel_server.server import settings_env

README = Path(__file__).resolve().parent.parent / "README.md"
ROW = re.compile(r"^\| `(PIXEL_[A-Z_]+)` \| (.+?) \| (.+?) \|$", re.MULTILINE)
ACCEPTED_ROW = re.compile(r"^\| `(PIXEL_[A-Z_]+)` \| ([^|]+) \|$", re.MULTILINE)


def test_defaults_need_no_environment() -> None:
    """With no PIXEL_* variables the service has a complete, valid configuration."""
    settings = Settings.from_env({})
    assert (settings.host, settings.port, settings.db) == ("127.0.0.1", 8000, "./pixel.db")
    assert settings.ip_mode == "truncate"


def test_values_are_parsed_by_type() -> None:
    """ints, floats and booleans are read from their strings."""
    settings = Settings.from_env(
        {"PIXEL_PORT": "9001", "PIXEL_ACK_TIMEOUT": "1.5", "PIXEL_REDIRECT_ALLOW_IP": "yes"}
    )
    assert (settings.port, settings.ack_timeout, settings.redirect_allow_ip) == (9001, 1.5, True)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PIXEL_PORT": "eighty"}, "PIXEL_PORT"),
        ({"PIXEL_PORT": "70000"}, "PIXEL_PORT"),
        ({"PIXEL_WORKERS": "0"}, "PIXEL_WORKERS"),
        ({"PIXEL_IP_MODE": "partial"}, "PIXEL_IP_MODE"),
        ({"PIXEL_REDIRECT_ALLOW_IP": "maybe"}, "PIXEL_REDIRECT_ALLOW_IP"),
        ({"PIXEL_SQLITE_SYNCHRONOUS": "OFF"}, "PIXEL_SQLITE_SYNCHRONOUS"),
    ],
)
def test_bad_values_name_their_variable(env: dict[str, str], message: str) -> None:
    """A value that cannot be used fails with the variable's name in the message."""
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_settings_are_frozen() -> None:
    """Settings cannot change after start-up."""
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]


def test_readme_configuration_table_matches_settings() -> None:
    """Every setting is in the README table with its default and help, and nothing else is."""
    rows = {env: (default, text) for env, default, text in ROW.findall(README.read_text())}
    fields = dataclasses.fields(Settings)
    assert set(rows) == {f.metadata["env"] for f in fields}
    for f in fields:
        default, text = rows[f.metadata["env"]]
        shown = str(f.default).lower() if isinstance(f.default, bool) else str(f.default)
        assert default == (f"`{shown}`" if shown else "—"), f.name
        assert text == f.metadata["help"], f.name


def test_env_name_maps_fields_to_variables() -> None:
    """env_name gives the PIXEL_* name of a field."""
    assert env_name("queue_max") == "PIXEL_QUEUE_MAX"
    with pytest.raises(KeyError):
        env_name("nope")


def test_every_setting_states_its_rules() -> None:
    """Each field has a range, choices, or a check with its text: new settings too."""
    missing = {f.metadata["env"]: rules_missing(f) for f in dataclasses.fields(Settings)}
    assert {env: need for env, need in missing.items() if need} == {}, "add to _setting(...)"


def test_readme_lists_what_every_setting_accepts() -> None:
    """The README's accepted-values table says, for each setting, what config.accepted says."""
    rows = dict(ACCEPTED_ROW.findall(README.read_text()))
    expected = {f.metadata["env"]: accepted(f) for f in dataclasses.fields(Settings)}
    table = "\n".join(f"| `{env}` | {text} |" for env, text in expected.items())
    assert rows == expected, f"the README's accepted-values table should read:\n{table}"


def test_enumerations_are_read_in_any_case_and_stored_canonically() -> None:
    """WARNING, Normal, GRANIAN, Full: read case-insensitively, kept as the code spells them."""
    settings = Settings.from_env(
        {
            "PIXEL_LOG_LEVEL": "WARNING",
            "PIXEL_SQLITE_SYNCHRONOUS": "normal",
            "PIXEL_SERVER": "Granian",
            "PIXEL_IP_MODE": " FULL ",
        }
    )
    assert (settings.log_level, settings.sqlite_synchronous) == ("warning", "NORMAL")
    assert (settings.server, settings.ip_mode) == ("granian", "full")


def test_workers_rebuild_exactly_the_settings_the_parent_checked() -> None:
    """settings_env (what serve hands its workers) parses back to the same, valid settings."""
    settings = Settings.from_env(
        {
            "PIXEL_LOG_LEVEL": "DEBUG",
            "PIXEL_ACK_TIMEOUT": "0.25",
            "PIXEL_BUSY_TIMEOUT": "0.001",
            "PIXEL_TRUSTED_PROXIES": "10.0.0.0/8, ::1",
            "PIXEL_REDIRECT_HOSTS": "shop.example,[2001:db8::1]",
            "PIXEL_VERIFY_KEYS": "k0:0123456789abcdef",
            "PIXEL_PUBLIC_URL": "https://t.example/track/",
            "PIXEL_ACCESS_LOG": "on",
            "PIXEL_SPILL_DIR": "off",
        }
    )
    assert Settings.from_env(settings_env(settings)) == settings


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PIXEL_ACK_TIMEOUT": "nan"}, "PIXEL_ACK_TIMEOUT: nan is not a finite number"),
        ({"PIXEL_PORT": "٨٠٠٠"}, "PIXEL_PORT: '٨٠٠٠' cannot be read as an integer"),
        ({"PIXEL_BUSY_TIMEOUT": "3"}, "PIXEL_BUSY_TIMEOUT: 3.0 is not below PIXEL_ACK_TIMEOUT"),
        ({"PIXEL_TRUSTED_PROXIES": "10.0.0.1,nope"}, "'nope' is not an IP address or network"),
        ({"PIXEL_LOG_LEVEL": "bogus"}, "accepted: one of debug, info, warning, error"),
        ({"PIXEL_VERIFY_KEYS": "k0:0123456789abcdef,k0:x"}, "id 'k0' appears twice"),
        (
            {"PIXEL_VERIFY_KEYS": "k2:0123456789abcdef", "PIXEL_KEY_ID": "k2"},
            "PIXEL_VERIFY_KEYS: id 'k2' is the signing key's (PIXEL_KEY_ID)",
        ),
    ],
)
def test_messages_say_what_is_wrong_and_what_is_accepted(env: dict[str, str], message: str) -> None:
    """The one-line message names the variable, the problem and the accepted values."""
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        Settings.from_env(env)
    assert "\n" not in str(caught.value)
    assert "accepted: " in str(caught.value)
    assert caught.value.setting == next(iter(env))


def test_constructed_settings_are_checked_like_parsed_ones() -> None:
    """validate() refuses a bad value given to Settings(...) directly, as from_env does."""
    with pytest.raises(ConfigError, match="PIXEL_WORKERS: 0 is out of range"):
        Settings(workers=0).validate()
    with pytest.raises(ConfigError, match="PIXEL_LOG_LEVEL: 'INFO' is unknown"):
        Settings(log_level="INFO").validate()


def test_config_error_survives_pickling() -> None:
    """A ConfigError crossing a process boundary keeps its message and variable."""
    pickled = pickle.dumps(ConfigError("PIXEL_PORT: bad", "PIXEL_PORT"))
    error = pickle.loads(pickled)  # noqa: S301 (our own bytes, made on the line above)
    assert (str(error), error.setting) == ("PIXEL_PORT: bad", "PIXEL_PORT")
