"""A real PostgreSQL for the tests: one database per run, one schema per test.

The server is the machine's (127.0.0.1:5432, trust auth, user postgres; override with
PIXEL_TEST_POSTGRES). Without it, tests that need it skip with the reason, unless
PIXEL_REQUIRE_POSTGRES=1 (CI), where they fail instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

ADMIN_URL = os.environ.get("PIXEL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRED = os.environ.get("PIXEL_REQUIRE_POSTGRES") == "1"
T = TypeVar("T")


def run(make: Callable[[], Awaitable[T]]) -> T:
    """Run the coroutine ``make()`` returns from synchronous code (fixtures, server-process
    checks), on a thread of its own: the caller may be inside a running event loop."""

    async def wrapped() -> T:
        return await make()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, wrapped()).result()


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def with_schema(url: str, schema: str) -> str:
    """``url`` whose connections use ``schema`` (asyncpg passes unknown URL options on as
    server settings)."""
    parts = urlsplit(url)
    query = f"{parts.query}&search_path={schema}" if parts.query else f"search_path={schema}"
    return urlunsplit(parts._replace(query=query))


def unavailable(reason: str) -> None:
    message = f"PostgreSQL not available at {ADMIN_URL}: {reason}"
    if REQUIRED:
        pytest.fail(f"{message} (PIXEL_REQUIRE_POSTGRES=1)")
    pytest.skip(message)


async def execute(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def fetch(
    url: str, sql: str, *args: Any, settings: dict[str, str] | None = None
) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on a connection of its own; ``settings`` are session settings (for
    example ``lock_timeout``)."""
    conn = await asyncpg.connect(url, timeout=10, server_settings=settings)
    try:
        return [tuple(row) for row in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


def create_run_database() -> tuple[str, Callable[[], None]]:
    """A fresh database for this run and the function that drops it."""
    name = f"pixel_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        run(lambda: execute(ADMIN_URL, f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        unavailable(f"{type(exc).__name__}: {exc}")

    def drop() -> None:
        run(lambda: execute(ADMIN_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return with_database(ADMIN_URL, name), drop


def new_schema(database_url: str) -> tuple[str, Callable[[], None]]:
    """A fresh schema in the run's database: the URL using it, and its drop."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    run(lambda: execute(database_url, f"CREATE SCHEMA {schema}"))

    def drop() -> None:
        run(lambda: execute(database_url, f"DROP SCHEMA IF EXISTS {schema} CASCADE"))

    return with_schema(database_url, schema), drop


@contextlib.contextmanager
def holding_lock(url: str, *tables: str) -> Iterator[None]:
    """An ACCESS EXCLUSIVE lock on ``tables`` held by another connection for the block (a
    migration or a VACUUM FULL looks like this to the writer)."""
    started = threading.Event()
    release = threading.Event()
    failure: list[BaseException] = []

    async def hold() -> None:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            async with conn.transaction():
                await conn.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")
                started.set()
                await asyncio.get_running_loop().run_in_executor(None, release.wait)
        finally:
            await conn.close()

    def main() -> None:
        try:
            asyncio.run(hold())
        except BaseException as exc:  # reported to the test below
            failure.append(exc)
            started.set()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    started.wait(30)
    if failure:
        raise failure[0]
    try:
        yield
    finally:
        release.set()
        thread.join(30)
