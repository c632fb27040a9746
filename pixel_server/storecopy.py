"""``pixel-server copy``: a hit log moved from one store to another, resumably, and checked.

The copy reads the source oldest first by ``(ts, id)`` in chunks, and writes each chunk to the
destination in one transaction together with its position there (``copy_progress``: the
source's store id, the ``(ts, id)`` of the chunk's last row, the running count; see
:meth:`Store.copy_in`). However it stops — Ctrl-C, ``kill -9``, a lost connection — a chunk
and its position are committed together or not at all, so ``--resume`` goes on after the last
committed row and never writes a row twice, eids or not.

Oldest first, because the destination numbers copied rows itself (ids are not kept) in the
order it receives them: so rows that share a millisecond keep the source's order, PostgreSQL's
monthly partitions fill one after another, and the hits a source receives after the copy
come after its position, where ``--resume`` finds them.

A copy is bounded by a snapshot: the source's newest hit when it starts. Hits written during
the copy are left for the next ``--resume``. At the end the hits of each kind in the source up
to that bound are counted and compared with the destination's, which must hold nothing but the
copy: a destination that held hits before (not from this source's copy) is refused. A hit that
reaches the source late, below the position (a spill journal replayed during the copy), makes
the counts differ: reported, never passed over in silence.

Not copied: ids, the spill replay offsets (``spill_replay``: a deployment's own journals),
PostgreSQL's write batch records, the source's own copy positions, its store id.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing, suppress
from dataclasses import dataclass, replace
from pathlib import Path

from .dburl import SQLITE, StoreURL, looks_like_url, parse
from .export import iso_time
from .fields import KINDS
from .preflight import SQLITE_HEADER
from .query import HitQuery
from .store.base import ROW_ID, ROW_TS, CopyPosition, PositionMoved, Row, Store

CHUNK = 10_000  # hits per transaction: ~0.2 s of work, few enough to redo after a kill
IN_FLIGHT = 2  # chunks written at once (PostgreSQL's write pool has two connections)
TIMEOUT = 60.0  # seconds a chunk may wait for a lock or take as a statement


class CopyRefused(Exception):
    """The copy cannot start as asked (the same store twice, a destination in use, a missing
    source): nothing was written."""


class CopyFailed(Exception):
    """The copy ran but its result is not what the source holds."""


@dataclass(frozen=True)
class Named:
    """SOURCE or DEST as given: the store URL and how to show it (no password)."""

    role: str  # "SOURCE" or "DEST"
    url: StoreURL

    @property
    def shown(self) -> str:
        return self.url.path if self.url.kind == SQLITE else self.url.shown


@dataclass(frozen=True)
class Plan:
    """What a copy is about to do, every check passed."""

    source: Store
    dest: Store
    source_id: str
    shown: str  # the source as named
    position: CopyPosition | None  # where an earlier copy stopped; None: from the start
    bound: tuple[int, int] | None  # the source's newest hit at the start; None: it is empty
    remaining: int  # hits to copy, up to the bound


def named(role: str, text: str) -> Named:
    """SOURCE or DEST from the command line: a store URL, or the path of a SQLite file."""
    if not looks_like_url(text):
        if text == "":
            raise CopyRefused(f"{role}: give a store URL or the path of a SQLite file")
        return Named(role, StoreURL(SQLITE, text, text))
    try:
        return Named(role, parse(text))
    except ValueError as exc:
        raise CopyRefused(f"{role}: {StoreURL('', text).shown} {exc}") from None


def check_files(source: Named, dest: Named) -> None:
    """What can be told before connecting: the two are not one file, a SQLite source exists
    (it is never created), a SQLite destination can be one."""
    if source.url.kind == dest.url.kind == SQLITE:
        if Path(source.url.path).resolve() == Path(dest.url.path).resolve():
            raise CopyRefused(f"SOURCE and DEST are the same file: {source.shown}")
    elif source.url.url == dest.url.url:
        raise CopyRefused(f"SOURCE and DEST are the same store: {source.shown}")
    if source.url.kind == SQLITE:
        _check_sqlite(source, must_exist=True)
    if dest.url.kind == SQLITE:
        _check_sqlite(dest, must_exist=False)


def _check_sqlite(where: Named, *, must_exist: bool) -> None:
    path = Path(where.url.path)
    role = where.role
    if path.is_dir():
        raise CopyRefused(f"{role}: {path} is a directory, not an SQLite database file")
    if not path.exists():
        if must_exist:
            raise CopyRefused(f"{role}: no database at {path} (nothing to copy)")
        if not path.parent.is_dir():
            raise CopyRefused(f"{role}: no directory {path.parent} to create {path.name} in")
        return
    try:
        with path.open("rb") as fh:
            header = fh.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise CopyRefused(f"{role}: cannot read {path}: {exc.strerror or exc}") from None
    if header == SQLITE_HEADER or (not header and not must_exist):
        return
    raise CopyRefused(f"{role}: {path} is {'empty' if not header else 'not'} an SQLite database")


async def plan(
    source: Store, dest: Store, source_name: Named, dest_name: Named, *, resume: bool
) -> Plan:
    """Every check on the two opened stores; the plan of the copy if they pass."""
    source_id = await source.store_id()
    if source_id == await dest.store_id():
        raise CopyRefused(
            f"SOURCE and DEST are the same store (store id {source_id}): "
            f"{source_name.shown} and {dest_name.shown}"
        )
    position = await dest.copy_position(source_id)
    held = await dest.count(HitQuery())
    if position is None and held:
        raise CopyRefused(
            f"DEST {dest_name.shown} is not empty: it holds {held} hits, not from a copy of "
            f"{source_name.shown}; copy into an empty store"
        )
    if position is not None and not resume:
        raise CopyRefused(
            f"DEST {dest_name.shown} already holds a copy of {position.shown} "
            f"({position.copied} hits, up to {iso_time(position.last[0])}): add --resume to "
            "continue it with the hits the source has beyond that"
        )
    if position is not None and held != position.copied:
        raise CopyRefused(
            f"DEST {dest_name.shown} holds {held} hits but the copy of {position.shown} wrote "
            f"{position.copied}: something else writes to it; a copy goes into a store nothing "
            "else writes to"
        )
    newest = await source.query(HitQuery(limit=1))
    bound = (int(newest[0]["ts"]), int(newest[0]["id"])) if newest else None
    beyond = position.last if position is not None else None
    remaining = 0
    if bound is not None:
        remaining = await source.count(HitQuery(beyond=beyond, through=bound))
        oldest = HitQuery(beyond=beyond, through=bound, oldest_first=True, limit=1)
        first = await source.query(oldest)
        if first:
            await dest.prepare_span(int(first[0]["ts"]), bound[0])
    return Plan(source, dest, source_id, source_name.shown, position, bound, remaining)


async def run(
    plan: Plan, chunk: int = CHUNK, advance: Callable[[int], object] | None = None
) -> int:
    """Copy the plan's hits, ``chunk`` a transaction, calling ``advance(n)`` after each
    commit; return how many were copied.

    A pipeline: the next chunk is read while one is written, and up to IN_FLIGHT chunks are
    written at once (on PostgreSQL one is sent and processed while the one before commits).
    They commit in order: each waits for the one before (Store.copy_in's ``previous``), and
    names the position it continues from, which the store moves on from there only. A chunk
    never ends within a millisecond that goes on in the next one (_chunks), so two chunks
    numbered at once in DEST keep the source's order by ``(ts, id)``.
    """
    copied = 0
    if plan.bound is None:
        return copied
    after = plan.position.last if plan.position else None
    query = HitQuery(beyond=after, through=plan.bound, oldest_first=True, limit=chunk)
    writing: deque[tuple[asyncio.Future[Counter[str]], int, tuple[int, int]]] = deque()
    try:
        async with aclosing(_chunks(plan.source, query)) as chunks:
            async for rows in chunks:
                last = _key(rows[-1])
                position = CopyPosition(plan.source_id, plan.shown, last, after=after)
                previous = writing[-1][0] if writing else None
                write = asyncio.ensure_future(plan.dest.copy_in(rows, position, previous))
                writing.append((write, len(rows), last))
                after = last
                if len(writing) == IN_FLIGHT:
                    copied += await _committed(*writing.popleft(), advance)
        while writing:
            copied += await _committed(*writing.popleft(), advance)
    finally:
        for task, _, _ in writing:
            task.cancel()
        await asyncio.gather(*(task for task, _, _ in writing), return_exceptions=True)
    return copied


async def _committed(
    task: asyncio.Future[Counter[str]],
    sent: int,
    last: tuple[int, int],
    advance: Callable[[int], object] | None,
) -> int:
    """The hits a chunk's write added, once it committed (``sent`` hits up to ``last``)."""
    try:
        added = (await task).total()
    except PositionMoved:
        raise CopyFailed(
            "another copy from SOURCE is writing into DEST at the same time: let one run"
            " (and add --resume to the other)"
        ) from None
    if added != sent:
        raise CopyFailed(
            f"DEST refused {sent - added} of the {sent} hits up to {iso_time(last[0])} as"
            " duplicates of eids it holds: it is not a copy of SOURCE alone"
        )
    if advance is not None:
        advance(added)
    return added


async def _page(source: Store, query: HitQuery) -> list[Row]:
    """One page as tuples (SQLite's rows already are: tuple() gives them back as they are)."""
    return [tuple(row) for row in await source.query_rows(query)]


async def _chunks(source: Store, query: HitQuery) -> AsyncGenerator[list[Row], None]:
    """The pages of ``query`` in order, each next one read while the caller works. A full
    page ends before its last millisecond (unless that is all of it): the rest of that
    millisecond comes first in the next page."""
    pending = asyncio.ensure_future(_page(source, query))
    try:
        while rows := await pending:
            if len(rows) == query.page_size:
                rows = _whole_milliseconds(rows)
            pending = asyncio.ensure_future(_page(source, replace(query, beyond=_key(rows[-1]))))
            yield rows
    finally:
        pending.cancel()
        with suppress(asyncio.CancelledError, Exception):
            await pending  # its thread is done with it before the store closes


def _whole_milliseconds(rows: list[Row]) -> list[Row]:
    """``rows`` without the trailing rows of their last ``ts``, if any others are left."""
    end = len(rows)
    last_ts = rows[-1][ROW_TS]
    while end > 0 and rows[end - 1][ROW_TS] == last_ts:
        end -= 1
    return rows[:end] if end else rows


def _key(row: Row) -> tuple[int, int]:
    return int(row[ROW_TS]), int(row[ROW_ID])


async def verify(plan: Plan) -> Counter[str]:
    """The destination's hits per kind, if they are the source's up to the bound."""
    expected: Counter[str] = Counter()
    if plan.bound is not None:
        expected = await plan.source.count_by_kind(HitQuery(through=plan.bound))
    found = await plan.dest.count_by_kind(HitQuery())
    if found != expected:
        differences = ", ".join(
            f"{kind} {expected[kind]} in SOURCE, {found[kind]} in DEST"
            for kind in sorted(set(expected) | set(found), key=_kind_order)
            if expected[kind] != found[kind]
        )
        until = iso_time(plan.bound[0]) if plan.bound else "the start"
        raise CopyFailed(
            f"SOURCE and DEST disagree: {differences} (SOURCE counted up to its newest hit at "
            f"the start, {until}). Either hits reached SOURCE late, below the copy's position "
            "(a spill journal replayed during the copy), or something else writes to DEST: "
            "copy again into an empty DEST, with SOURCE's servers stopped"
        )
    return found


def summary(copied: int, totals: Counter[str], resumed: bool) -> str:
    """``copied N hits (view a, open b, ...); source and destination agree``."""
    names = sorted(set(KINDS) | set(totals), key=_kind_order)
    kinds = ", ".join(f"{kind} {totals[kind]}" for kind in names)
    in_all = f", {totals.total()} in all" if resumed else ""
    return f"copied {copied} hits{in_all} ({kinds}); source and destination agree"


def _kind_order(kind: str) -> tuple[int, str]:
    return (KINDS.index(kind) if kind in KINDS else len(KINDS), kind)
