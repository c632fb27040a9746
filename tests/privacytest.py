"""Where a string is still stored: the raw bytes of a SQLite file, its WAL and the spill
journals, or the text of every row of every table of a PostgreSQL schema."""

from __future__ import annotations

from pathlib import Path

import pgtest

from pixel_server.config import Settings

TABLES_SQL = (
    "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
)


def files_of(settings: Settings) -> list[Path]:
    """The files the service writes for ``settings``: the SQLite file and its WAL, if any,
    and every spill journal."""
    found: list[Path] = []
    if settings.sqlite_path is not None:
        for suffix in ("", "-wal", "-journal"):
            path = Path(settings.sqlite_path + suffix)
            if path.exists():
                found.append(path)
    spill = settings.spill_path
    if spill is not None and spill.exists():
        found.extend(p for p in spill.iterdir() if p.is_file())
    return found


def traces(settings: Settings, needle: str) -> list[str]:
    """Where ``needle`` is stored: file names (its bytes in them, in UTF-8 or UTF-16, as
    SQLite may keep text), or ``table`` names on PostgreSQL."""
    patterns = (needle.encode(), needle.encode("utf-16-le"), needle.encode("utf-16-be"))
    found = [p.name for p in files_of(settings) if any(x in p.read_bytes() for x in patterns)]
    if settings.sqlite_path is None:
        url = settings.database_url

        async def tables() -> list[str]:
            names = [row[0] for row in await pgtest.fetch(url, TABLES_SQL)]
            hits = []
            for name in names:
                sql = f'SELECT count(*) FROM "{name}" t WHERE strpos(t::text, $1) > 0'  # noqa: S608
                if (await pgtest.fetch(url, sql, needle))[0][0]:
                    hits.append(name)
            return hits

        found.extend(pgtest.run(tables))
    return found


def byte_traces(settings: Settings, data: bytes) -> list[str]:
    """Where the bytes ``data`` are stored: file names, or PostgreSQL tables (a bytea value
    reads as hex there)."""
    found = [p.name for p in files_of(settings) if data in p.read_bytes()]
    if settings.sqlite_path is None:
        found.extend(traces(settings, data.hex()))
    return found
