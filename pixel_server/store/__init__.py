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
    from ..dburl import StoreURL

__all__ = ["Store", "StoreError", "StoreUnavailable", "open_store", "opened", "store_at"]


def open_store(settings: Settings) -> Store:
    """The store the settings name, not yet opened (``await store.open()``, or
    ``async with opened(store)``)."""
    return store_at(settings.store, settings, settings.busy_timeout)


def store_at(url: StoreURL, settings: Settings, timeout: float) -> Store:
    """The store at ``url`` (not yet opened), tuned by ``settings``; a write waits up to
    ``timeout`` seconds (SQLite's lock, a PostgreSQL statement) before it is unavailable."""
    from ..eventschema import load
    from ..rollup import Spec

    registry = load(settings.event_schemas) if settings.event_schemas else None
    spec = Spec.from_registry(registry, settings.report_zone)
    if url.kind == "sqlite":
        from .sqlite import SQLiteStore

        return SQLiteStore(url.path, settings.sqlite_synchronous, int(timeout * 1000), spec)
    from .postgres import PostgresStore

    return PostgresStore(
        url.url, pool_max=settings.pg_pool_max, statement_timeout=timeout, spec=spec
    )


@asynccontextmanager
async def opened(store: Store) -> AsyncIterator[Store]:
    """``store`` opened for the block, closed after it."""
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()
