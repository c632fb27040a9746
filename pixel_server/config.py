"""Settings: one frozen dataclass, built in exactly one place from ``PIXEL_*`` variables.

CLI flags do not build settings of their own: ``cli.py`` turns them into the same
``PIXEL_*`` names and layers them over the environment before :meth:`Settings.from_env`
runs, so every option has one name, one parser and one default.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import validators as v
from .dburl import URL_TEXT, StoreURL
from .dburl import parse as parse_store_url
from .validators import (
    FILE_TEXT,
    HOST_TEXT,
    KEY_ID_TEXT,
    MIN_API_TOKEN_CHARS,
    ORIGINS_TEXT,
    split_list,
)

__all__ = ["ConfigError", "Settings", "accepted", "env_name", "env_text", "split_list"]

IP_MODES = ("truncate", "hash", "full", "none")
CONSENT_MODES = ("optional", "required", "ignore")
SERVERS = ("uvicorn", "granian")
SYNC_MODES = ("FULL", "NORMAL")
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(ValueError):
    """Raised when a setting cannot be used; the message is one line naming the variable and,
    for a bad value, what is accepted. ``setting`` is the ``PIXEL_*`` name (None if not one)."""

    def __init__(self, message: str, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str, str | None]]:
        return (type(self), (str(self), self.setting))


def _setting(
    env: str,
    default: Any,
    help: str,
    *,
    secret: bool = False,
    min: float | None = None,
    max: float | None = None,
    choices: tuple[str, ...] | None = None,
    check: Callable[[str], None] | None = None,
    accepts: str | Callable[[], str] | None = None,
) -> Any:
    """A settings field. Every field says what it accepts (tests/test_config.py enforces it):
    numbers ``min`` and ``max`` (inclusive), enumerations ``choices`` (read in any case,
    stored as written here), other strings a ``check`` raising ValueError plus ``accepts``,
    the text shown after "accepted:". Booleans need nothing."""
    metadata: dict[str, Any] = {"env": env, "help": help, "min": min, "max": max}
    metadata.update(choices=choices, check=check, accepts=accepts)
    return field(default=default, repr=not secret, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    """Every knob of the service. ``repr`` never shows a secret."""

    host: str = _setting(
        "PIXEL_HOST", "127.0.0.1", "Address to listen on.", check=v.host, accepts=HOST_TEXT
    )
    port: int = _setting("PIXEL_PORT", 8000, "TCP port to listen on.", min=1, max=65535)
    workers: int = _setting(
        "PIXEL_WORKERS", 1, "Worker processes (they share the SQLite file).", min=1, max=256
    )
    server: str = _setting(
        "PIXEL_SERVER",
        "uvicorn",
        "HTTP server: uvicorn, or granian (`pip install granian`).",
        choices=SERVERS,
    )
    db: str = _setting(
        "PIXEL_DB",
        "./pixel.db",
        "SQLite database file, created on first start (when PIXEL_DATABASE_URL is unset).",
        check=v.db_path,
        accepts=FILE_TEXT + "; a database URL goes in PIXEL_DATABASE_URL",
    )
    database_url: str = _setting(
        "PIXEL_DATABASE_URL",
        "",
        "The store: postgresql://USER@HOST/DB for PostgreSQL; unset: SQLite at PIXEL_DB.",
        secret=True,  # it may hold a password: never shown, logged only redacted
        check=v.database_url,
        accepts=f"empty (SQLite at PIXEL_DB), or {URL_TEXT}",
    )
    data_dir: str = _setting(
        "PIXEL_DATA_DIR",
        "",
        "Local files (key file, spill journals); default: beside the SQLite file, or"
        " ./pixel-data with PostgreSQL.",
        check=v.data_dir,
        accepts="the path of a directory (created if missing)",
    )
    public_url: str = _setting(
        "PIXEL_PUBLIC_URL",
        "",
        "Base URL printed by `link`/`pixel` (default http://HOST:PORT).",
        check=v.public_url,
        accepts="an absolute http:// or https:// URL, optionally with a path, no query",
    )
    secret_key: str = _setting(
        "PIXEL_SECRET_KEY",
        "",
        "Signing key. Unset: a random key is generated once and kept in PIXEL_SECRET_FILE.",
        secret=True,
        check=v.secret,
        accepts=lambda: f"empty, or a key {v.secret_text()}",
    )
    secret_file: str = _setting(
        "PIXEL_SECRET_FILE",
        "",
        "Where the generated key lives (default: DB path + `.key`; PIXEL_DATA_DIR/pixel.key).",
        check=v.file_path,
        accepts=FILE_TEXT,
    )
    key_id: str = _setting(
        "PIXEL_KEY_ID",
        "",
        "Id of the signing key, written into tokens (default: the key file's id, else k1).",
        check=v.key_id,
        accepts=f"empty (the key file's id, else k1), or an id {KEY_ID_TEXT}",
    )
    verify_keys: str = _setting(
        "PIXEL_VERIFY_KEYS",
        "",
        "Older keys still accepted, as `id:secret,id:secret` (key rotation).",
        secret=True,
        check=v.verify_keys,
        accepts=lambda: (
            "comma-separated id:secret pairs, each id "
            f"{KEY_ID_TEXT}, unique and not PIXEL_KEY_ID, each secret {v.secret_text()}"
        ),
    )
    api_tokens: str = _setting(
        "PIXEL_API_TOKENS",
        "",
        "Comma-separated operator bearer tokens that open every /api endpoint"
        " (none = API keys only: `pixel-server keys create`).",
        secret=True,
        check=v.api_tokens,
        accepts=f"comma-separated tokens of at least {MIN_API_TOKEN_CHARS} visible ASCII "
        "characters (no spaces)",
    )
    ip_mode: str = _setting(
        "PIXEL_IP_MODE",
        "truncate",
        "Client IP storage: truncate (/24, /48), hash (keyed, the key rotates daily), full or"
        " none (docs/privacy.md).",
        choices=IP_MODES,
    )
    honour_signals: str = _setting(
        "PIXEL_HONOUR_SIGNALS",
        "gpc,dnt",
        "Opt-out headers honoured (Sec-GPC: 1, DNT: 1): such a hit is counted but keeps no"
        " identifier (docs/privacy.md); none: recorded only.",
        check=v.honour_signals,
        accepts="gpc,dnt, gpc, dnt or none",
    )
    consent: str = _setting(
        "PIXEL_CONSENT",
        "optional",
        "The consent parameter: optional (consent=denied keeps no identifier), required (only"
        " consent=granted keeps them) or ignore.",
        choices=CONSENT_MODES,
    )
    identifier_params: str = _setting(
        "PIXEL_IDENTIFIER_PARAMS",
        v.IDENTIFIER_PARAMS,
        "Parameter names that identify a person: dropped (from parameters and URLs) where a"
        " hit may keep no identifier.",
        check=v.identifier_params,
        accepts="comma-separated parameter names (letters, digits, _ - .), or empty",
    )
    retain_days: int = _setting(
        "PIXEL_RETAIN_DAYS",
        0,
        "Days a hit is kept (0 = forever); older hits are deleted every hour, the reports'"
        " rollups kept (docs/privacy.md).",
        min=0,
        max=36_500,
    )
    retain_raw_days: int = _setting(
        "PIXEL_RETAIN_RAW_DAYS",
        0,
        "Days a hit keeps its PIXEL_RETAIN_RAW_FIELDS (0 = as long as the hit).",
        min=0,
        max=36_500,
    )
    retain_raw_fields: str = _setting(
        "PIXEL_RETAIN_RAW_FIELDS",
        "ua,referer,params",
        "The fields PIXEL_RETAIN_RAW_DAYS clears: ua, referer, params, url, ref, ip, uid, sid,"
        " msg, visitor.",
        check=v.raw_fields,
        accepts="comma-separated names among ua, referer, params, url, ref, ip, uid, sid,"
        " msg, visitor",
    )
    redact_emails: bool = _setting(
        "PIXEL_REDACT_EMAILS",
        True,
        "Replace an email address sent in a hit's parameters, URLs or UTM values with [email]"
        " (a uid or sid holding one is dropped); false keeps them as sent.",
    )
    visitor_hash: bool = _setting(
        "PIXEL_VISITOR_HASH",
        True,
        "Store a daily visitor hash (address /24 or /48, user agent, campaign or site, a salt"
        " destroyed after its day) for daily uniques without an identifier.",
    )
    trusted_proxies: str = _setting(
        "PIXEL_TRUSTED_PROXIES",
        "",
        "Comma-separated proxy IPs/CIDRs whose X-Forwarded-For is believed.",
        check=v.networks,
        accepts="comma-separated IP addresses or CIDR networks (10.0.0.1, 10.0.0.0/8, fd00::/8)",
    )
    redirect_hosts: str = _setting(
        "PIXEL_REDIRECT_HOSTS",
        "",
        "Comma-separated host allowlist for redirect targets (subdomains included; empty = any).",
        check=v.hosts,
        accepts="comma-separated host names (shop.example) or [IPv6] literals: "
        "no scheme, port, path or wildcard",
    )
    redirect_allow_ip: bool = _setting(
        "PIXEL_REDIRECT_ALLOW_IP", False, "Allow numeric-IP redirect targets."
    )
    exclude_networks: str = _setting(
        "PIXEL_EXCLUDE_NETWORKS",
        "",
        "Comma-separated IPs/CIDRs (your office) whose opens, clicks and events are not stored.",
        check=v.networks,
        accepts="comma-separated IP addresses or CIDR networks (203.0.113.0/24, 2001:db8::/32)",
    )
    revocations_ttl: float = _setting(
        "PIXEL_REVOCATIONS_TTL",
        5.0,
        "Seconds a server keeps its copy of the revoked links before reading them again.",
        min=0.05,
        max=3600,
    )
    queue_max: int = _setting(
        "PIXEL_QUEUE_MAX",
        50_000,
        "Hits held in memory while the store is slow; beyond: dropped.",
        min=1,
        max=10_000_000,
    )
    batch_max: int = _setting(
        "PIXEL_BATCH_MAX", 2_000, "Most hits written in one transaction.", min=1, max=100_000
    )
    ack_timeout: float = _setting(
        "PIXEL_ACK_TIMEOUT",
        2.0,
        "Seconds a response waits for its commit before answering anyway (hit stays queued).",
        min=0.001,
        max=3600,
    )
    drain_timeout: float = _setting(
        "PIXEL_DRAIN_TIMEOUT",
        10.0,
        "Seconds shutdown keeps retrying to store queued hits.",
        min=0.001,
        max=3600,
    )
    graceful_timeout: int = _setting(
        "PIXEL_GRACEFUL_TIMEOUT",
        5,
        "Seconds in-flight requests get after SIGTERM.",
        min=1,
        max=3600,
    )
    spill_dir: str = _setting(
        "PIXEL_SPILL_DIR",
        "",
        "Spill journals while the store is down (default: DB path + `.spill`, or"
        " PIXEL_DATA_DIR/spill); `off` disables.",
        check=v.spill_dir,
        accepts="off, or the path of a directory (created if missing)",
    )
    spill_max_bytes: int = _setting(
        "PIXEL_SPILL_MAX_BYTES",
        1 << 30,
        "Largest spill journal per process; beyond: memory.",
        min=1,
        max=1 << 40,
    )
    busy_timeout: float = _setting(
        "PIXEL_BUSY_TIMEOUT",
        1.0,
        "Seconds a write may wait (SQLite's lock, a PostgreSQL statement) before the store"
        " counts as unavailable.",
        min=0.001,
        max=3600,
        accepts="below PIXEL_ACK_TIMEOUT",
    )
    pg_pool_max: int = _setting(
        "PIXEL_PG_POOL_MAX",
        4,
        "PostgreSQL connections per process (the writer uses one, reads share the rest).",
        min=2,
        max=100,
    )
    sqlite_synchronous: str = _setting(
        "PIXEL_SQLITE_SYNCHRONOUS",
        "FULL",
        "SQLite synchronous mode: FULL (power-safe) or NORMAL.",
        choices=SYNC_MODES,
    )
    max_query_bytes: int = _setting(
        "PIXEL_MAX_QUERY_BYTES",
        8192,
        "Longest query string parsed; the rest is cut and flagged.",
        min=1,
        max=1 << 20,
    )
    max_params: int = _setting(
        "PIXEL_MAX_PARAMS", 50, "Most query parameters kept per hit.", min=1, max=10_000
    )
    max_value_chars: int = _setting(
        "PIXEL_MAX_VALUE_CHARS",
        2048,
        "Longest parameter value kept (longer: cut and flagged).",
        min=1,
        max=1 << 20,
    )
    max_token_bytes: int = _setting(
        "PIXEL_MAX_TOKEN_BYTES",
        2048,
        "Longest signed token looked at (checked before decoding).",
        min=64,
        max=1 << 16,
    )
    events_max_bytes: int = _setting(
        "PIXEL_EVENTS_MAX_BYTES",
        1 << 20,
        "Largest POST /e body, before and after gzip; larger: 413, nothing stored.",
        min=1024,
        max=1 << 28,
    )
    events_max_batch: int = _setting(
        "PIXEL_EVENTS_MAX_BATCH",
        500,
        "Most events in one POST /e body; more: 413, nothing stored.",
        min=1,
        max=100_000,
    )
    events_max_age: int = _setting(
        "PIXEL_EVENTS_MAX_AGE",
        259_200,
        "Seconds in the past a server call's event time (ts) may lie; older: rejected.",
        min=0,
        max=30 * 86_400,
    )
    event_schemas: str = _setting(
        "PIXEL_EVENT_SCHEMAS",
        "",
        "JSON file of event names and their params (docs/events.md); empty: any name and params.",
        check=v.event_schemas,
        accepts="empty, or the path of a readable registry file as docs/events.md shows",
    )
    audit_config: str = _setting(
        "PIXEL_AUDIT_CONFIG",
        "",
        "JSON file of the audit's expectations and thresholds (docs/audit.md); empty: the"
        " defaults.",
        check=v.audit_config,
        accepts="empty, or the path of a readable audit config file as docs/audit.md shows",
    )
    report_zone: str = _setting(
        "PIXEL_REPORT_ZONE",
        "UTC",
        "Time zone of report buckets (stats, dashboard): an IANA name such as Europe/Berlin;"
        " stored times stay UTC (docs/stats.md).",
        check=v.report_zone,
        accepts="an IANA time zone name (Europe/Berlin, America/New_York) or UTC",
    )
    networks: str = _setting(
        "PIXEL_NETWORKS",
        "",
        "Known-network lists (a file, or a directory of *.txt) over the shipped ones: a file"
        " named like a shipped one replaces it, others are added (docs/traffic.md).",
        check=v.networks_lists,
        accepts="empty (the shipped lists), or the path of a list file or a directory of *.txt"
        " lists in the format docs/traffic.md shows",
    )
    cors_origins: str = _setting(
        "PIXEL_CORS_ORIGINS",
        "*",
        "Web origins whose pages may post events to /e (browsers check the answer's"
        " Access-Control-Allow-Origin); others get 403.",
        check=v.origins,
        accepts=ORIGINS_TEXT,
    )
    log_level: str = _setting(
        "PIXEL_LOG_LEVEL", "info", "Log level: debug, info, warning, error.", choices=LOG_LEVELS
    )
    access_log: bool = _setting(
        "PIXEL_ACCESS_LOG", False, "uvicorn access log (off: it would log ids in query strings)."
    )
    max_connections: int = _setting(
        "PIXEL_MAX_CONNECTIONS",
        2048,
        "Open client connections per worker; beyond: refused with 503 (kept below the fd limit).",
        min=1,
        max=1_000_000,
    )
    max_header_bytes: int = _setting(
        "PIXEL_MAX_HEADER_BYTES",
        65536,
        "Largest request head (request line and headers) in bytes; larger: 431, closed.",
        min=1024,
        max=1 << 24,
    )
    header_timeout: float = _setting(
        "PIXEL_HEADER_TIMEOUT",
        10.0,
        "Seconds a connection gets to send a whole request head (from connect or first byte).",
        min=0.001,
        max=3600,
    )
    keepalive_timeout: float = _setting(
        "PIXEL_KEEPALIVE_TIMEOUT",
        5.0,
        "Seconds an idle keep-alive connection stays open between requests (uvicorn).",
        min=0.001,
        max=3600,
    )
    auth_failures: int = _setting(
        "PIXEL_AUTH_FAILURES",
        10,
        "Wrong keys or tokens a client network may send a minute (API, POST /e, dashboard,"
        " /metrics); beyond: 429 until it has waited.",
        min=1,
        max=100_000,
    )
    hsts_seconds: int = _setting(
        "PIXEL_HSTS_SECONDS",
        0,
        "Strict-Transport-Security max-age on every answer (0 = none); only behind TLS.",
        min=0,
        max=63_072_000,
    )
    metrics_token: str = _setting(
        "PIXEL_METRICS_TOKEN",
        "",
        "Bearer token required by /metrics (empty = open, as when only a local proxy reaches it).",
        secret=True,
        check=v.metrics_token,
        accepts=f"empty, or one token of at least {MIN_API_TOKEN_CHARS} visible ASCII characters",
    )
    burst_links: int = _setting(
        "PIXEL_BURST_LINKS",
        2,
        "Distinct links of one message clicked together from one network that make a burst.",
        min=2,
        max=1000,
    )
    burst_seconds: float = _setting(
        "PIXEL_BURST_SECONDS",
        5.0,
        "Seconds between a burst's clicks at most.",
        min=0.001,
        max=3600,
    )
    burst_delivery_seconds: float = _setting(
        "PIXEL_BURST_DELIVERY_SECONDS",
        60.0,
        "Seconds after the send within which a message's clicks from one network are a burst.",
        min=0,
        max=86_400,
    )
    burst_every: float = _setting(
        "PIXEL_BURST_EVERY",
        2.0,
        "Seconds between the burst pass's looks at recent clicks (0 = no pass).",
        min=0,
        max=3600,
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``PIXEL_*`` variables (``os.environ`` by default)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f.metadata["env"])
            if raw is not None and raw != "":
                values[f.name] = _parse(f, raw)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse any value the service cannot use; the ConfigError is one line."""
        for f in dataclasses.fields(self):
            _check(f, getattr(self, f.name))
        fields = {f.name: f for f in dataclasses.fields(self)}
        if not self.busy_timeout < self.ack_timeout:
            problem = f"is not below PIXEL_ACK_TIMEOUT ({self.ack_timeout})"
            raise _invalid(fields["busy_timeout"], self.busy_timeout, problem)
        if self.key_id in v.verify_key_ids(self.verify_keys):
            problem = f"id {self.key_id!r} is the signing key's (PIXEL_KEY_ID)"
            raise _invalid(fields["verify_keys"], self.verify_keys, problem)
        if self.database_url and self.db != fields["db"].default:
            problem = "is set, and so is PIXEL_DB: name the store once"
            raise _invalid(fields["database_url"], self.database_url, problem)
        if self.redirect_hosts.strip():
            # urls.py owns what an allowlist entry may be; imported late (it imports this).
            from .urls import TargetPolicy

            TargetPolicy.from_settings(self)  # ConfigError naming the entry

    @property
    def store(self) -> StoreURL:
        """The store this deployment writes to (PIXEL_DATABASE_URL, else SQLite at PIXEL_DB)."""
        if self.database_url:
            return parse_store_url(self.database_url)
        return StoreURL("sqlite", f"sqlite:///{self.db}", self.db)

    @property
    def sqlite_path(self) -> str | None:
        """The SQLite file, None on another store."""
        store = self.store
        return store.path if store.kind == "sqlite" else None

    @property
    def data_path(self) -> Path | None:
        """Where local files go when PIXEL_DATA_DIR says; None: beside the SQLite file."""
        if self.data_dir:
            return Path(self.data_dir)
        return None if self.sqlite_path is not None else Path("pixel-data")

    @property
    def data_source(self) -> str:
        """The variable the default key and spill paths follow (for messages)."""
        if self.data_dir or self.sqlite_path is None:
            return "PIXEL_DATA_DIR"
        return "PIXEL_DB"

    @property
    def secret_path(self) -> Path:
        if self.secret_file:
            return Path(self.secret_file)
        base = self.data_path
        return Path(f"{self.sqlite_path}.key") if base is None else base / "pixel.key"

    @property
    def spill_path(self) -> Path | None:
        if self.spill_dir == "off":
            return None
        if self.spill_dir:
            return Path(self.spill_dir)
        base = self.data_path
        return Path(f"{self.sqlite_path}.spill") if base is None else base / "spill"

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def api_token_list(self) -> tuple[str, ...]:
        return split_list(self.api_tokens)


def env_name(field_name: str) -> str:
    """The ``PIXEL_*`` variable behind a settings field."""
    for f in dataclasses.fields(Settings):
        if f.name == field_name:
            return str(f.metadata["env"])
    raise KeyError(field_name)


def env_text(value: Any) -> str:
    """A settings value as its ``PIXEL_*`` string (booleans as true/false)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def accepted(f: dataclasses.Field[Any]) -> str:
    """What a settings field accepts, in words (error messages and the README)."""
    meta = f.metadata
    if isinstance(f.default, bool):
        return "true or false (also 1/0, yes/no, on/off)"
    if meta.get("choices"):
        return f"one of {', '.join(meta['choices'])} (in any case)"
    if _has_range(f):
        kind = "an integer" if isinstance(f.default, int) else "a number"
        extra = f", {meta['accepts']}" if meta.get("accepts") else ""
        return f"{kind} from {meta['min']} to {meta['max']}{extra}"
    accepts = meta.get("accepts")
    if accepts is None:
        return f"see the README ({meta['env']} states no rule yet)"
    return str(accepts() if callable(accepts) else accepts)


def rules_missing(f: dataclasses.Field[Any]) -> str | None:
    """What a field lacks for validation (tests/test_config.py requires None for each)."""
    if isinstance(f.default, bool):
        return None
    if isinstance(f.default, int | float):
        return None if _has_range(f) else "min= and max="
    if f.metadata.get("choices"):
        return None
    if f.metadata.get("check") and f.metadata.get("accepts"):
        return None
    return "choices=, or check= and accepts="


def _has_range(f: dataclasses.Field[Any]) -> bool:
    return f.metadata.get("min") is not None and f.metadata.get("max") is not None


def _invalid(f: dataclasses.Field[Any], value: Any, problem: str) -> ConfigError:
    env = f.metadata["env"]
    shown = "" if not f.repr else f"{_short(value)} "
    return ConfigError(f"{env}: {shown}{problem}; accepted: {accepted(f)}", env)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _check(f: dataclasses.Field[Any], value: Any) -> None:
    meta = f.metadata
    kind: type[Any] = type(f.default)
    if type(value) is not kind and not (kind is float and type(value) is int):
        raise _invalid(f, value, f"is not {_KINDS.get(kind, kind.__name__)}")
    if kind in (int, float):
        if not math.isfinite(value):
            raise _invalid(f, value, "is not a finite number")
        if _has_range(f) and not meta["min"] <= value <= meta["max"]:
            raise _invalid(f, value, "is out of range")
    elif meta.get("choices"):
        if value not in meta["choices"]:
            raise _invalid(f, value, "is unknown")
    elif kind is str and meta.get("check") and not (value == "" == f.default):
        # ("" is "unset" for the strings whose default is computed, see the properties)
        try:
            meta["check"](value)
        except ValueError as exc:
            message = f"{meta['env']}: {exc}; accepted: {accepted(f)}"
            raise ConfigError(message, meta["env"]) from None


_KINDS = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    """The typed value of a ``PIXEL_*`` string (the range and syntax checks are _check's)."""
    kind: type[Any] = type(f.default)
    text = raw.strip()
    if kind is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
    elif kind in (int, float):
        try:
            # ASCII only: int() also reads other scripts' digits, which no one means here
            if text.isascii():
                return kind(text)
        except ValueError:
            pass
    elif f.metadata.get("choices"):
        for choice in f.metadata["choices"]:
            if text.lower() == choice.lower():
                return choice
        raise _invalid(f, raw, "is unknown")
    else:
        return raw
    raise _invalid(f, raw, f"cannot be read as {_KINDS[kind]}")
