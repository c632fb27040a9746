"""The Store protocol every backend implements, and its exceptions.

Exceptions::

    StoreError
     └── StoreUnavailable   transient: locked, busy, read-only, disk full, I/O error.
                            The writer keeps the batch and retries it.

Anything else a backend raises while writing means the rows themselves were refused; the writer
then isolates and drops (and counts) the offending rows instead of retrying forever.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

from ..hits import COLUMNS, Hit
from ..outage import StoreError as StoreError
from ..outage import StoreUnavailable as StoreUnavailable
from ..query import HitQuery

# The order of the values in a row of Store.query_rows(): the row id, then the hit's columns.
ROW_KEYS: tuple[str, ...] = ("id", *COLUMNS)


class Store(Protocol):
    async def open(self) -> None:
        """Connect and bring the schema up to date (safe to run from several processes)."""

    async def write(
        self, hits: Sequence[Hit], progress: tuple[str, int] | None = None
    ) -> Counter[str]:
        """Store ``hits`` in one transaction; return new rows per kind (a duplicate eid adds 0).

        ``progress`` = (journal name, offset) is recorded in the same transaction when the hits
        are replayed from a spill journal (see spill.py).
        """

    async def spill_offset(self, journal: str) -> int:
        """How far ``journal`` has been replayed (0 if never)."""

    async def forget_spill(self, journal: str) -> None:
        """Drop the replay record of a journal that has been deleted."""

    async def query(self, query: HitQuery) -> list[dict[str, Any]]:
        """Hits matching ``query``, newest first, as column dicts including ``id``."""

    async def query_rows(self, query: HitQuery) -> list[Sequence[Any]]:
        """The rows of :meth:`query` as plain value sequences, indexable in ``ROW_KEYS`` order
        (``row[0]`` is the id, ``row[1]`` the ts, ...): a tuple, an asyncpg Record, anything
        that ``row[i]`` and iteration read in that order. Exports format these directly, without
        a dict per row."""

    async def count(self, query: HitQuery) -> int:
        """How many hits match ``query``, ignoring its limit."""

    async def schema_version(self) -> int:
        """The version of the store's schema (its migrations applied)."""

    async def aclose(self) -> None:
        """Close connections; idempotent."""
