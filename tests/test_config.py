"""Settings: parsing PIXEL_* variables, refusing bad values, and the README staying in sync."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from pixel_server.config import ConfigError, Settings, env_name

README = Path(__file__).resolve().parent.parent / "README.md"
ROW = re.compile(r"^\| `(PIXEL_[A-Z_]+)` \| (.+?) \| (.+?) \|$", re.MULTILINE)


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
