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
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..adminlog import AdminEntry
from ..apikeys import ApiKey
from ..bursts import Relabel, Seen
from ..hits import COLUMNS, Hit
from ..loss import LossRow
from ..outage import StoreError as StoreError
from ..outage import StoreUnavailable as StoreUnavailable
from ..query import HitQuery
from ..retention import Plan, Report
from ..revocations import Revocation
from ..rollup import CellAnswer, CellQuery, Spec
from ..totals import Campaign

# The order of the values in a row of Store.query_rows(): the row id, then the hit's columns.
ROW_KEYS: tuple[str, ...] = ("id", *COLUMNS)
# a row as copies move it: (id, *hits.COLUMNS), the order of a query's columns
Row = tuple[Any, ...]
ROW_ID, ROW_TS, ROW_KIND = 0, 1, 2


class PositionMoved(StoreError):
    """A copied chunk does not continue from where the copy's position stands: another copy
    from the same source is writing into this store. Nothing of the chunk was written."""


@dataclass(frozen=True)
class CopyPosition:
    """How far a copy from another store has come (``pixel-server copy``, storecopy.py): kept
    in the destination, written in the transaction of the rows it covers."""

    source: str  # the source store's id (its store_id())
    shown: str  # the source as the user named it, password redacted (for messages)
    last: tuple[int, int]  # (ts, id) in the source of the last hit copied
    copied: int = 0  # hits the copy has written; a copy_in() adds its chunk's new rows
    # on a write: the position the chunk continues from (None: the copy's first chunk)
    after: tuple[int, int] | None = None


class Store(Protocol):
    spec: Spec  # which event parameters the rollups keep (rollup.py)

    async def open(self) -> None:
        """Connect and bring the schema up to date (safe to run from several processes)."""

    async def write(
        self, hits: Sequence[Hit], progress: tuple[str, int] | None = None
    ) -> Counter[str]:
        """Store ``hits`` in one transaction; return new rows per kind (a duplicate eid adds 0).

        ``progress`` = (journal name, offset) is recorded in the same transaction when the hits
        are replayed from a spill journal (see spill.py).
        """

    async def write_events(self, hits: Sequence[Hit]) -> list[bool]:
        """Store ``hits`` in one transaction, or none of them; per hit, True if it is new,
        False if it is a duplicate (its kind and eid were stored before, or came earlier in
        ``hits``), the duplicates counted per day and campaign for the loss report in the same
        transaction. Raises StoreUnavailable when nothing was stored and a retry may work.

        POST /e answers with these outcomes, so unlike :meth:`write` it is never retried or
        spilled behind the caller's back: a sender retries, and the eid keeps that safe."""

    async def loss_report(self, span: tuple[int, int], cid: str | None = None) -> list[LossRow]:
        """The loss report (loss.py) of the sessions that began in ``span`` (ms, whole UTC
        days), per day and campaign, oldest first; only campaign ``cid`` ("" for none) if
        given."""

    async def campaign_groups(self, cid: str, span: tuple[int, int]) -> Campaign:
        """The hits of campaign ``cid`` in ``span`` (ms, since inclusive, until exclusive)
        grouped for totals.py: its groups, and its ``(traffic, traffic_reasons, n)``."""

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

    async def count_by_kind(self, query: HitQuery) -> Counter[str]:
        """How many hits match ``query`` per kind, ignoring its limit."""

    async def store_id(self) -> str:
        """This store's own id, made when its schema was created: the same store under any
        name (a path, a URL with another host name) has the same id."""

    async def copy_position(self, source: str) -> CopyPosition | None:
        """How far the copy from the store with id ``source`` has come (None: never began)."""

    async def prepare_span(self, first_ms: int, last_ms: int) -> None:
        """Get ready to hold hits from ``first_ms`` to ``last_ms``, e.g. a copied history
        (PostgreSQL makes the months' partitions; the other stores have nothing to do)."""

    async def copy_in(
        self,
        rows: Sequence[Row],
        position: CopyPosition,
        previous: Awaitable[object] | None = None,
    ) -> Counter[str]:
        """Store rows copied from another store (as :meth:`query_rows` gives them), every
        column but ``id`` (the rows are numbered anew, in the order given), and ``position``
        (its ``copied`` plus the new rows), in one transaction; return new rows per kind (a
        duplicate eid adds 0, as in :meth:`write`). Raises PositionMoved, writing nothing,
        unless the stored position is ``position.after`` (none for a first chunk).

        ``previous`` is the write of the chunk before, still going on: this one may be sent
        meanwhile, but commits only once that one has (if it fails, so does this one)."""

    async def add_api_key(self, key: ApiKey) -> None:
        """Store a new API key (its id is new: made at random by apikeys.new_key)."""

    async def api_keys(self) -> list[ApiKey]:
        """Every API key, revoked ones included, oldest first."""

    async def revoke_api_key(self, key_id: str, now_ms: int) -> ApiKey | None:
        """Revoke the key ``key_id`` as of ``now_ms`` (a key revoked before keeps its time);
        the key as it now stands, None if there is no such key."""

    async def add_revocation(self, rule: Revocation) -> None:
        """Store a revocation; one with the same id (the same link, campaign or target) is
        replaced: its reason, offer and time are the new ones."""

    async def revocations(self) -> list[Revocation]:
        """Every revocation, oldest first."""

    async def remove_revocation(self, rule_id: str) -> Revocation | None:
        """Undo the revocation ``rule_id``; the one removed, None if there was none."""

    async def clicks_since(self, since_ms: int, limit: int) -> list[Seen]:
        """Up to ``limit`` clicks at or after ``since_ms``, oldest first (the burst pass)."""

    async def relabel(self, changes: Sequence[Relabel]) -> int:
        """Set each change's hit (by id and ts) to its class and reasons, the current rules'
        version and ``is_bot`` to match, only where the hit's class is still the change's
        ``expected`` (compare and set: a row changed meanwhile is left); the rows changed."""

    async def rollup_cells(self, query: CellQuery) -> CellAnswer:
        """The rollup cells ``query`` asks for (rollup.py), summed as CellAnswer says."""

    async def rollups_complete(self) -> bool:
        """Whether the rollups cover every stored hit (not when hits were stored before
        the rollups existed, until :meth:`rebuild_rollups`)."""

    async def rebuild_rollups(self) -> int:
        """Recompute every rollup cell from the stored hits, in one transaction; the rollups
        are then complete. The number of hits read."""

    async def add_rejects(self, day: int, counts: Mapping[tuple[str, str], int]) -> None:
        """Add ``counts`` of refused requests per ``(kind, reason)`` to UTC day ``day``."""

    async def rejects(self, days: tuple[int, int]) -> list[tuple[int, str, str, int]]:
        """The refused requests of the UTC days in ``[days[0], days[1])``: rows of
        ``(day, kind, reason, n)``."""

    async def day_salt(self, day: int, offered: bytes, keep_from: int) -> bytes:
        """The salt of ``day`` (salts.py): ``offered`` if the store had none, else the one it
        has; the salts of days before ``keep_from`` destroyed, their bytes gone from the
        files where the store can do that (docs/privacy.md)."""

    async def purge(self, plan: Plan) -> Report:
        """Delete the hits and clear the raw fields ``plan`` says (retention.py), and give the
        space back; RollupsIncomplete (unless dry) when the rollups do not cover every hit."""

    async def log_admin(self, ts: int, action: str, actor: str, detail: dict[str, Any]) -> None:
        """Add an entry to the admin log (adminlog.py)."""

    async def admin_log(self, span: tuple[int, int], limit: int) -> list[AdminEntry]:
        """The admin log's entries in ``span`` (epoch ms), oldest first, at most ``limit``."""

    async def subject_hits(self, uid: str) -> list[dict[str, Any]]:
        """Every hit of the data subject ``uid`` (erasure.py), oldest first, as :meth:`query`'s."""

    async def erase_subject(self, uid: str) -> tuple[int, int]:
        """Delete every hit of the data subject ``uid``, replace it where other hits mention
        it, and recompute the rollup cells of both, in one transaction; then leave no bytes
        of it in the files where the store can (docs/privacy.md). (deleted, redacted)."""

    async def schema_version(self) -> int:
        """The version of the store's schema (its migrations applied)."""

    async def aclose(self) -> None:
        """Close connections; idempotent."""
