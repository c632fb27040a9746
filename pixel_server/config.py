"""Settings: one frozen dataclass, built in exactly one place from ``PIXEL_*`` variables.

CLI flags do not build settings of their own: ``cli.py`` turns them into the same
``PIXEL_*`` names and layers them over the environment before :meth:`Settings.from_env`
runs, so every option has one name, one parser and one default.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IP_MODES = ("truncate", "full", "none")
SERVERS = ("uvicorn", "granian")
SYNC_MODES = ("FULL", "NORMAL")


class ConfigError(ValueError):
    """Raised when a ``PIXEL_*`` value cannot be parsed; the message names the variable."""


def _setting(env: str, default: Any, help: str, *, secret: bool = False) -> Any:
    return field(default=default, repr=not secret, metadata={"env": env, "help": help})


@dataclass(frozen=True)
class Settings:
    """Every knob of the service. ``repr`` never shows a secret."""

    host: str = _setting("PIXEL_HOST", "127.0.0.1", "Address to listen on.")
    port: int = _setting("PIXEL_PORT", 8000, "TCP port to listen on.")
    workers: int = _setting("PIXEL_WORKERS", 1, "Worker processes (they share the SQLite file).")
    server: str = _setting(
        "PIXEL_SERVER", "uvicorn", "HTTP server: uvicorn, or granian (`pip install granian`)."
    )
    db: str = _setting("PIXEL_DB", "./pixel.db", "SQLite database file, created on first start.")
    public_url: str = _setting(
        "PIXEL_PUBLIC_URL", "", "Base URL printed by `link`/`pixel` (default http://HOST:PORT)."
    )
    secret_key: str = _setting(
        "PIXEL_SECRET_KEY",
        "",
        "Signing key. Unset: a random key is generated once and kept in PIXEL_SECRET_FILE.",
        secret=True,
    )
    secret_file: str = _setting(
        "PIXEL_SECRET_FILE", "", "Where the generated key lives (default: DB path + `.key`)."
    )
    key_id: str = _setting(
        "PIXEL_KEY_ID",
        "",
        "Id of the signing key, written into tokens (default: the key file's id, else k1).",
    )
    verify_keys: str = _setting(
        "PIXEL_VERIFY_KEYS",
        "",
        "Older keys still accepted, as `id:secret,id:secret` (key rotation).",
        secret=True,
    )
    api_tokens: str = _setting(
        "PIXEL_API_TOKENS",
        "",
        "Comma-separated bearer tokens for /api (none = API disabled).",
        secret=True,
    )
    ip_mode: str = _setting(
        "PIXEL_IP_MODE", "truncate", "Client IP storage: truncate (/24, /48), full or none."
    )
    trusted_proxies: str = _setting(
        "PIXEL_TRUSTED_PROXIES",
        "",
        "Comma-separated proxy IPs/CIDRs whose X-Forwarded-For is believed.",
    )
    redirect_hosts: str = _setting(
        "PIXEL_REDIRECT_HOSTS",
        "",
        "Comma-separated host allowlist for redirect targets (subdomains included; empty = any).",
    )
    redirect_allow_ip: bool = _setting(
        "PIXEL_REDIRECT_ALLOW_IP", False, "Allow numeric-IP redirect targets."
    )
    queue_max: int = _setting(
        "PIXEL_QUEUE_MAX", 50_000, "Hits held in memory while the store is slow; beyond: dropped."
    )
    batch_max: int = _setting("PIXEL_BATCH_MAX", 2_000, "Most hits written in one transaction.")
    ack_timeout: float = _setting(
        "PIXEL_ACK_TIMEOUT",
        2.0,
        "Seconds a response waits for its commit before answering anyway (hit stays queued).",
    )
    drain_timeout: float = _setting(
        "PIXEL_DRAIN_TIMEOUT", 10.0, "Seconds shutdown keeps retrying to store queued hits."
    )
    graceful_timeout: int = _setting(
        "PIXEL_GRACEFUL_TIMEOUT", 5, "Seconds in-flight requests get after SIGTERM."
    )
    spill_dir: str = _setting(
        "PIXEL_SPILL_DIR",
        "",
        "Spill journals while the store is down (default: DB path + `.spill`); `off` disables.",
    )
    spill_max_bytes: int = _setting(
        "PIXEL_SPILL_MAX_BYTES", 1 << 30, "Largest spill journal per process; beyond: memory."
    )
    busy_timeout: float = _setting(
        "PIXEL_BUSY_TIMEOUT",
        1.0,
        "Seconds a write waits for the SQLite lock before the store counts as unavailable.",
    )
    sqlite_synchronous: str = _setting(
        "PIXEL_SQLITE_SYNCHRONOUS", "FULL", "SQLite synchronous mode: FULL (power-safe) or NORMAL."
    )
    max_query_bytes: int = _setting(
        "PIXEL_MAX_QUERY_BYTES", 8192, "Longest query string parsed; the rest is cut and flagged."
    )
    max_params: int = _setting("PIXEL_MAX_PARAMS", 50, "Most query parameters kept per hit.")
    max_value_chars: int = _setting(
        "PIXEL_MAX_VALUE_CHARS", 2048, "Longest parameter value kept (longer: cut and flagged)."
    )
    max_token_bytes: int = _setting(
        "PIXEL_MAX_TOKEN_BYTES", 2048, "Longest signed token looked at (checked before decoding)."
    )
    log_level: str = _setting("PIXEL_LOG_LEVEL", "info", "Log level: debug, info, warning, error.")
    access_log: bool = _setting(
        "PIXEL_ACCESS_LOG", False, "uvicorn access log (off: it would log ids in query strings)."
    )
    max_connections: int = _setting(
        "PIXEL_MAX_CONNECTIONS",
        2048,
        "Open client connections per worker; beyond: refused with 503 (kept below the fd limit).",
    )
    max_header_bytes: int = _setting(
        "PIXEL_MAX_HEADER_BYTES",
        65536,
        "Largest request head (request line and headers) in bytes; larger: 431, closed.",
    )
    header_timeout: float = _setting(
        "PIXEL_HEADER_TIMEOUT",
        10.0,
        "Seconds a connection gets to send a whole request head (from connect or first byte).",
    )
    keepalive_timeout: float = _setting(
        "PIXEL_KEEPALIVE_TIMEOUT",
        5.0,
        "Seconds an idle keep-alive connection stays open between requests (uvicorn).",
    )
    metrics_token: str = _setting(
        "PIXEL_METRICS_TOKEN",
        "",
        "Bearer token required by /metrics (empty = open, as when only a local proxy reaches it).",
        secret=True,
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
        if self.ip_mode not in IP_MODES:
            raise ConfigError(f"PIXEL_IP_MODE must be one of {', '.join(IP_MODES)}")
        if self.server not in SERVERS:
            raise ConfigError(f"PIXEL_SERVER must be one of {', '.join(SERVERS)}")
        if self.sqlite_synchronous.upper() not in SYNC_MODES:
            raise ConfigError(f"PIXEL_SQLITE_SYNCHRONOUS must be one of {', '.join(SYNC_MODES)}")
        for name in ("port", "workers", "queue_max", "batch_max", "max_params"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{env_name(name)} must be at least 1")
        if not 0 < self.busy_timeout < self.ack_timeout:
            raise ConfigError("PIXEL_BUSY_TIMEOUT must be above 0 and below PIXEL_ACK_TIMEOUT")
        if not (0 < self.port < 65536):
            raise ConfigError("PIXEL_PORT must be between 1 and 65535")
        self._validate_bounds()
        if self.redirect_hosts.strip():
            # urls.py owns what an allowlist entry may be; imported late (it imports this).
            from .urls import TargetPolicy

            TargetPolicy.from_settings(self)  # ConfigError naming the entry

    def _validate_bounds(self) -> None:
        if self.max_connections < 1:
            raise ConfigError("PIXEL_MAX_CONNECTIONS must be at least 1")
        if not 1024 <= self.max_header_bytes <= 1 << 24:
            raise ConfigError("PIXEL_MAX_HEADER_BYTES must be between 1024 and 16777216")
        for name in ("header_timeout", "keepalive_timeout"):
            if not 0 < getattr(self, name) <= 3600:
                raise ConfigError(f"{env_name(name)} must be above 0 and at most 3600 seconds")

    @property
    def secret_path(self) -> Path:
        return Path(self.secret_file or f"{self.db}.key")

    @property
    def spill_path(self) -> Path | None:
        if self.spill_dir == "off":
            return None
        return Path(self.spill_dir or f"{self.db}.spill")

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


def split_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    env = f.metadata["env"]
    default: Any = f.default
    kind = type(default)
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
    except ValueError:
        raise ConfigError(f"{env}: cannot read {raw!r} as {kind.__name__}") from None
    return raw
