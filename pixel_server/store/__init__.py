"""Hit stores: the protocol, SQLite (default), PostgreSQL, and an in-memory store for tests.

:func:`open_store` is the one place a store is chosen (by ``PIXEL_DATABASE_URL``); backends
are imported only when chosen, so a CLI command that never reads hits stays fast.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from .base import Store, StoreError, StoreUnavailable

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["Store", "StoreError", "StoreUnavailable", "open_store", "opened"]


def open_store(settings: Settings) -> Store:
    """The store the settings name, not yet opened (``await store.open()``, or
    ``async with opened(store)``)."""
    url = settings.store
    if url.kind == "sqlite":
        from .sqlite import SQLiteStore

        return SQLiteStore(url.path, settings.sqlite_synchronous, int(settings.busy_timeout * 1000))
    from .postgres import PostgresStore

    return PostgresStore(
        url.url, pool_max=settings.pg_pool_max, statement_timeout=settings.busy_timeout
    )


@asynccontextmanager
async def opened(store: Store) -> AsyncIterator[Store]:
    """``store`` opened for the block, closed after it."""
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()
