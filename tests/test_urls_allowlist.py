"""PIXEL_REDIRECT_HOSTS entries: host names on label boundaries, never a public suffix."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pixel_server.config import ConfigError, Settings
from pixel_server.urls import TargetPolicy, TargetRejected, normalize_target


def _reason(target: str, policy: TargetPolicy) -> str:
    with pytest.raises(TargetRejected) as info:
        normalize_target(target, policy)
    return info.value.reason


@pytest.mark.parametrize(
    "entry",
    # ICANN suffixes, an IDN TLD in both forms, a wildcard rule's child, private suffixes.
    [
        *("com", "uk", "co.uk", "COM", "xn--p1ai", "\u0440\u0444", "foo.kawasaki.jp"),
        *("github.io", "blogspot.com", "s3.amazonaws.com"),
    ],
)
def test_public_suffix_entry_is_refused(entry: str) -> None:
    """An entry that is a public suffix would admit every site under it, so it is refused."""
    with pytest.raises(TargetRejected) as info:
        TargetPolicy.from_strings([entry])
    assert info.value.reason == "public_suffix"
    assert repr(entry) in str(info.value)


@pytest.mark.parametrize(
    ("entry", "stored"),
    [
        ("example.com", "example.com"),
        ("shop.example.co.uk", "shop.example.co.uk"),
        ("city.kawasaki.jp", "city.kawasaki.jp"),  # an exception rule of the list
        ("someone.github.io", "someone.github.io"),
        ("b\u00fccher.example", "xn--bcher-kva.example"),
        ("localhost", "localhost"),
        ("intranet", "intranet"),
        ("192.0.2.1", "192.0.2.1"),
    ],
)
def test_registrable_and_private_entries_are_kept(entry: str, stored: str) -> None:
    """Registered domains, their subdomains and single-label intranet names are entries."""
    assert TargetPolicy.from_strings([entry], allow_ip=True).allow_hosts == (stored,)


@pytest.mark.parametrize(
    "entry",
    [
        *("http://example.com", "https://example.com/", "example.com/path", "example.com:443"),
        *("*.example.com", ".example.com", "example.com.", "exa mple.com", "user@example.com"),
        *("ex\u200bample.com", "ex\u00adample.com", "127.1", "2001:db8::1", "[not-ipv6]"),
        "ex%41mple.com",
    ],
)
def test_malformed_entry_is_a_config_error_naming_variable_and_entry(
    make_settings: Callable[..., Settings], entry: str
) -> None:
    """A bad entry raises ConfigError with PIXEL_REDIRECT_HOSTS and the entry, on one line."""
    with pytest.raises(ConfigError) as info:
        make_settings(redirect_hosts=f"example.com,{entry}")
    message = str(info.value)
    assert message.startswith("PIXEL_REDIRECT_HOSTS: ")
    assert repr(entry.strip()) in message or repr(entry) in message
    assert "\n" not in message


def test_public_suffix_setting_is_a_config_error(make_settings: Callable[..., Settings]) -> None:
    """PIXEL_REDIRECT_HOSTS=com is refused when the settings are built."""
    with pytest.raises(ConfigError, match=r"PIXEL_REDIRECT_HOSTS: .*'com' is a public suffix"):
        make_settings(redirect_hosts="example.com, com")


def test_cli_with_bad_allowlist_exits_2_without_traceback(tmp_path: Path) -> None:
    """pixel-server link with --redirect-hosts http://bad fails cleanly, exit status 2."""
    env = {**os.environ, "PIXEL_DB": str(tmp_path / "pixel.db"), "PIXEL_SECRET_KEY": "k" * 32}
    env.pop("PIXEL_REDIRECT_HOSTS", None)
    argv = [sys.executable, "-m", "pixel_server", "link", "https://example.com/"]
    for bad in ("http://bad", "com"):
        done = subprocess.run(
            [*argv, "--redirect-hosts", bad], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        # settings' syntax check or urls.py's list check, whichever refuses it first
        (line,) = done.stderr.splitlines()
        assert "PIXEL_REDIRECT_HOSTS" in line
        assert repr(bad) in line


ALLOW = TargetPolicy.from_strings(["example.com", "b\u00fccher.example"])


@pytest.mark.parametrize(
    "host",
    [
        *("evil-example.com", "notexample.com", "xexample.com", "example.com.evil.net"),
        *("example.co", "example.comm", "com", "ample.com", "evil.net"),
        *("xn--bcher-kva.example.evil.net", "evil-xn--bcher-kva.example", "bcher.example"),
    ],
)
def test_allowlist_matches_only_on_label_boundaries(host: str) -> None:
    """A host that merely ends with (or contains) an entry's text is not admitted."""
    assert _reason(f"https://{host}/", ALLOW) in {"not_allowed", "bad_host"}


@pytest.mark.parametrize(
    "host",
    [
        "example.com",
        "EXAMPLE.com",
        "www.example.com",
        "a.b.example.com",
        "shop.b\u00fccher.example",
    ],
)
def test_allowlist_admits_the_entry_and_its_subdomains(host: str) -> None:
    """An entry admits itself and any subdomain, whatever the case or script of the target."""
    assert normalize_target(f"https://{host}/", ALLOW).startswith("https://")
