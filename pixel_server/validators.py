"""Checks for the string settings: each takes the value and raises ``ValueError(problem)``.

``config.py`` attaches one to a field with ``_setting(..., check=..., accepts=...)`` and turns
the problem into a one-line :class:`~pixel_server.config.ConfigError` naming the variable and
what it accepts. A check of a secret never puts the secret (or a part of it) in its problem.
Checks are pure except for the cheap ``is_dir``/``exists`` look at paths; whether a path is
writable is :mod:`pixel_server.preflight`'s business, at ``serve`` start.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from urllib.parse import urlsplit

from .dburl import looks_like_url
from .dburl import parse as parse_store_url

MIN_API_TOKEN_CHARS = 8
HOST_TEXT = "an IP address (0.0.0.0, ::) or a host name"
FILE_TEXT = "the path of a file (not a directory)"
KEY_ID_TEXT = "of 1-16 letters, digits, _ or -"

# Letters, digits, "-" and "_" (seen in real internal names), or any non-ASCII (IDN labels;
# urls.py turns them into A-labels and refuses what IDNA refuses).
_LABEL = re.compile(r"(?:[A-Za-z0-9_-]|[^\x00-\x7f])+")
_TOKEN = re.compile(r"[\x21-\x7e]+")


def secret_text() -> str:
    from .keys import MIN_SECRET_CHARS  # keys.py imports this package's config: import late

    return f"of at least {MIN_SECRET_CHARS} characters"


def host(value: str) -> None:
    """PIXEL_HOST: what uvicorn and granian can bind to."""
    try:
        ipaddress.ip_address(value)
        return
    except ValueError:
        pass
    _host_name(value)


def hosts(value: str) -> None:
    """PIXEL_REDIRECT_HOSTS: the syntax of each entry (urls.py adds IDNA and suffix rules)."""
    for entry in split_list(value):
        if entry.startswith("[") and entry.endswith("]"):
            try:
                ipaddress.IPv6Address(entry[1:-1])
            except ValueError:
                raise ValueError(f"{entry!r} is not an IPv6 literal") from None
            continue
        if "://" in entry:
            raise ValueError(f"{entry!r} has a scheme")
        for char, what in (
            ("/", "a path"),
            (":", "a port"),
            ("@", "userinfo"),
            ("*", "a wildcard"),
        ):
            if char in entry:
                raise ValueError(f"{entry!r} has {what}")
        _host_name(entry)


def networks(value: str) -> None:
    """PIXEL_TRUSTED_PROXIES: every entry as clientip.py reads it."""
    for entry in split_list(value):
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network") from None


def file_path(value: str) -> None:
    """PIXEL_DB, PIXEL_SECRET_FILE: a file that may not exist yet, but never a directory."""
    if value.endswith("/") or Path(value).name in ("", ".", ".."):
        raise ValueError(f"{value!r} names a directory")
    if Path(value).is_dir():
        raise ValueError(f"{value!r} is a directory")


def db_path(value: str) -> None:
    """PIXEL_DB: a SQLite file path; a URL is refused (it names no file, and PIXEL_DB's
    derived paths, such as DB + `.key`, would land in a folder called `postgresql:`)."""
    if looks_like_url(value):
        raise ValueError("is a URL, not a file path: set PIXEL_DATABASE_URL instead")
    file_path(value)


def database_url(value: str) -> None:
    """PIXEL_DATABASE_URL: a store URL (dburl.py)."""
    parse_store_url(value)


def data_dir(value: str) -> None:
    """PIXEL_DATA_DIR: a directory that may not exist yet."""
    if Path(value).exists() and not Path(value).is_dir():
        raise ValueError(f"{value!r} exists and is not a directory")


def spill_dir(value: str) -> None:
    """PIXEL_SPILL_DIR: ``off``, or a directory that may not exist yet."""
    if value != "off":
        data_dir(value)


def public_url(value: str) -> None:
    """PIXEL_PUBLIC_URL: the base of every printed link, so it must be absolute."""
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ValueError(f"{value!r} contains whitespace or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (reading it validates the port)
    except ValueError:
        raise ValueError(f"{value!r} is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an absolute http(s) URL")
    if parts.username is not None or parts.query or parts.fragment or value.endswith(("?", "#")):
        raise ValueError(f"{value!r} has userinfo, a query or a fragment")


ORIGINS_TEXT = (
    "*, or comma-separated origins as a browser sends them (https://shop.example,"
    " http://localhost:3000): scheme, host, optional port, nothing else"
)


def origins(value: str) -> None:
    """PIXEL_CORS_ORIGINS: ``*`` or origins, each exactly what a browser's Origin header
    holds, so that a plain string comparison decides."""
    if value.strip() == "*":
        return
    entries = split_list(value)
    if not entries:
        raise ValueError("names no origin")
    for entry in entries:
        if entry == "*":
            raise ValueError("* stands alone, not in a list")
        try:
            parts = urlsplit(entry)
            parts.port  # noqa: B018 (reading it validates the port)
        except ValueError:
            raise ValueError(f"{entry!r} is not an origin") from None
        exact = f"{parts.scheme}://{parts.netloc}"
        if parts.scheme not in ("http", "https") or not parts.hostname or entry != exact:
            raise ValueError(f"{entry!r} is not an origin: scheme://host[:port], no path")
        if parts.username is not None or entry != entry.lower():
            raise ValueError(f"{entry!r} is not an origin as a browser sends it (lowercase)")


def event_schemas(value: str) -> None:
    """PIXEL_EVENT_SCHEMAS: a registry file that loads (eventschema.py says why not)."""
    from .eventschema import load

    load(value)


def audit_config(value: str) -> None:
    """PIXEL_AUDIT_CONFIG: an audit config file that loads (audit.py says why not)."""
    from .audit import load_config

    load_config(value)


def report_zone(value: str) -> None:
    """PIXEL_REPORT_ZONE: a time zone the machine knows (buckets.py)."""
    from .buckets import parse_zone

    parse_zone(value)


def networks_lists(value: str) -> None:
    """PIXEL_NETWORKS: list files that load (networks.py says which file and line not)."""
    from .networks import load

    load(value)


def key_id(value: str) -> None:
    """PIXEL_KEY_ID: the id written in front of every token."""
    from .keys import KEY_ID

    if not KEY_ID.fullmatch(value):
        raise ValueError(f"{value!r} must match {KEY_ID.pattern}")


def secret(value: str) -> None:
    """PIXEL_SECRET_KEY: empty (generated) or long enough."""
    from .keys import MIN_SECRET_CHARS

    if value and len(value) < MIN_SECRET_CHARS:
        raise ValueError(f"the key is shorter than {MIN_SECRET_CHARS} characters")


def verify_keys(value: str) -> None:
    """PIXEL_VERIFY_KEYS: ``id:secret`` pairs; the problem names the entry by number and id."""
    from .keys import KEY_ID, MIN_SECRET_CHARS

    seen: set[str] = set()
    for number, entry in enumerate(split_list(value), 1):
        kid, sep, key = entry.partition(":")
        if not sep or not kid or not key:
            raise ValueError(f"entry {number} is not id:secret")
        if not KEY_ID.fullmatch(kid):
            raise ValueError(f"the id of entry {number} must match {KEY_ID.pattern}")
        if kid in seen:
            raise ValueError(f"id {kid!r} appears twice")
        if len(key) < MIN_SECRET_CHARS:
            raise ValueError(f"the key {kid!r} is shorter than {MIN_SECRET_CHARS} characters")
        seen.add(kid)


def verify_key_ids(value: str) -> set[str]:
    """The ids of a PIXEL_VERIFY_KEYS value that :func:`verify_keys` accepted."""
    return {entry.partition(":")[0] for entry in split_list(value)}


def api_tokens(value: str) -> None:
    """PIXEL_API_TOKENS: bearer tokens that fit in an Authorization header and are not trivial."""
    for number, token in enumerate(split_list(value), 1):
        if not _TOKEN.fullmatch(token):
            raise ValueError(f"token {number} has spaces or non-ASCII characters")
        if len(token) < MIN_API_TOKEN_CHARS:
            raise ValueError(f"token {number} is shorter than {MIN_API_TOKEN_CHARS} characters")


def metrics_token(value: str) -> None:
    """PIXEL_METRICS_TOKEN: one bearer token, by the same rules as the API's."""
    if "," in value:
        raise ValueError("is a list; give one token")
    api_tokens(value)


SIGNAL_NAMES = ("gpc", "dnt")
# parameter names that commonly carry a person's identity (PIXEL_IDENTIFIER_PARAMS' default)
IDENTIFIER_PARAMS = (
    "uid,sid,email,e_mail,mail,user,user_id,userid,username,login,recipient,recipient_id,rid,"
    "subscriber,subscriber_id,contact,contact_id,customer,customer_id,client_id,visitor,"
    "visitor_id,vid,session,session_id,phone,mobile,ip"
)
_PARAM_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def honour_signals(value: str) -> None:
    """PIXEL_HONOUR_SIGNALS: gpc and/or dnt, or none."""
    items = [item.lower() for item in split_list(value)]
    if items == ["none"]:
        return
    unknown = [item for item in items if item not in SIGNAL_NAMES]
    if unknown or not items:
        raise ValueError(f"{', '.join(unknown) or 'nothing'} is not a signal (gpc, dnt, none)")


RAW_FIELD_NAMES = ("ua", "referer", "params", "url", "ref", "ip", "uid", "sid", "msg", "visitor")


def raw_fields(value: str) -> None:
    """PIXEL_RETAIN_RAW_FIELDS: hit fields a raw retention may clear (retention.py)."""
    unknown = [item for item in split_list(value) if item not in RAW_FIELD_NAMES]
    if unknown:
        raise ValueError(f"{', '.join(unknown)} cannot be cleared")


def identifier_params(value: str) -> None:
    for item in split_list(value):
        if not _PARAM_NAME.fullmatch(item):
            raise ValueError(f"{item!r} is not a parameter name")


def split_list(raw: str) -> tuple[str, ...]:
    """The entries of a comma-separated setting, stripped, blanks dropped."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _host_name(value: str) -> None:
    if value.endswith(".") or value.startswith("."):
        raise ValueError(f"{value!r} starts or ends with a dot")
    labels = value.split(".")
    if len(value) > 253 or not all(len(lb) <= 63 and _LABEL.fullmatch(lb) for lb in labels):
        raise ValueError(f"{value!r} is not a host name")
