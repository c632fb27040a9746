"""Which store a deployment uses: ``PIXEL_DATABASE_URL`` read, checked and shown safely.

``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (as SQLAlchemy writes them),
and ``postgresql://user:password@host:port/database?option=value`` (``postgres://`` too), the
libpq URL form that asyncpg reads. Unset: SQLite at ``PIXEL_DB``. A password in the URL is
never shown: :func:`redacted` is what logs and messages print.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
KINDS = (SQLITE, POSTGRESQL)
URL_TEXT = (
    "sqlite:///PATH (relative) or sqlite:////PATH (absolute), or "
    "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?OPTIONS]"
)
_SCHEMES = {"sqlite": SQLITE, "postgresql": POSTGRESQL, "postgres": POSTGRESQL}


@dataclass(frozen=True)
class StoreURL:
    kind: str  # SQLITE or POSTGRESQL
    url: str  # as given (with the password: never log it, use .shown)
    path: str = ""  # the SQLite file

    @property
    def shown(self) -> str:
        return redacted(self.url)


def parse(url: str) -> StoreURL:
    """The store ``url`` names; ValueError saying what is wrong (never echoing a password)."""
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise ValueError("contains spaces or control characters")
    scheme, sep, rest = url.partition("://")
    kind = _SCHEMES.get(scheme.lower()) if sep else None
    if kind is None:
        raise ValueError(f"unknown scheme {scheme[:20]!r}" if sep else "is not a URL")
    if kind == SQLITE:
        if not rest.startswith("/") or rest.strip("/") == "" or rest.endswith("/"):
            raise ValueError("a SQLite URL is sqlite:/// followed by the path of a file")
        if "?" in rest or "#" in rest:
            raise ValueError("a SQLite URL takes no options")
        return StoreURL(SQLITE, url, rest[1:])
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError("is not a valid postgresql:// URL") from None
    if parts.fragment:
        raise ValueError("a PostgreSQL URL has no #fragment")
    if parts.path.strip("/") == "" and "dbname=" not in parts.query:
        raise ValueError("names no database (postgresql://USER@HOST/DATABASE)")
    return StoreURL(POSTGRESQL, url)


def looks_like_url(value: str) -> bool:
    """True for ``scheme://...``: PIXEL_DB takes a file path, a URL belongs in
    PIXEL_DATABASE_URL."""
    scheme, sep, _ = value.partition("://")
    return bool(sep) and scheme.isalnum()


def redacted(url: str) -> str:
    """``url`` with any password replaced by ``***`` (also in ``password=`` options)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}"
    query = "&".join(
        "password=***" if item.lower().startswith("password=") else item
        for item in parts.query.split("&")
        if item
    )
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, ""))
