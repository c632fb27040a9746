"""The Store contract, one suite for every backend: memory, SQLite and PostgreSQL.

Write, dedup per (kind, eid) across and within batches, every filter, keyset paging (newest
and oldest first, with a snapshot bound), spill replay offsets, count (also per kind), the
answers to values no row can hold, and what a copy needs: the store's id, copied rows and their
position in one transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from pixel_server.apikeys import new_key
from pixel_server.bursts import Relabel
from pixel_server.hits import COLUMNS, Hit
from pixel_server.loss import DAY_MS
from pixel_server.query import EQUALITY_FILTERS, FILTER_COLUMNS, HitQuery
from pixel_server.store import Store, opened
from pixel_server.store.base import CopyPosition, PositionMoved
from pixel_server.store.memory import MemoryStore
from pixel_server.store.postgres import PostgresStore
from pixel_server.store.sqlite import SQLiteStore
from pixel_server.traffic import RULES_VERSION

STORES = ("memory", "sqlite", "postgresql")


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    kind = request.param
    backend: Store
    if kind == "memory":
        backend = MemoryStore()
    elif kind == "sqlite":
        backend = SQLiteStore(str(tmp_path / "contract.db"))
    else:
        backend = PostgresStore(request.getfixturevalue("pg_url"))
    async with opened(backend) as ready:
        yield ready


def sample(n: int, **fields: str) -> list[Hit]:
    """``n`` hits, one per millisecond from ts=1000, each field of ``fields`` on every one."""
    return [Hit(ts=1000 + i, kind="view", **fields) for i in range(n)]  # type: ignore[arg-type]


async def all_rows(store: Store, query: HitQuery | None = None) -> list[dict[str, object]]:
    return await store.query(replace(query or HitQuery(), limit=10_000))


async def test_written_rows_come_back_with_every_column(store: Store) -> None:
    hit = Hit(
        ts=1_790_000_000_123,
        kind="event",
        **{
            c: f"v-{c}"
            for c in COLUMNS
            if c not in ("ts", "kind", "is_bot", "dnt", "gpc", "method", "seq", "sent_ts")
        },
        is_bot=1,
        dnt=1,
        gpc=0,
        method="POST",
        seq=2**31 - 1,
        sent_ts=1_790_000_000_000,
    )
    assert +await store.write([hit]) == {"event": 1}
    (row,) = await all_rows(store)
    assert isinstance(row["id"], int)
    assert row["id"] >= 1
    assert {c: row[c] for c in COLUMNS} == dict(zip(COLUMNS, hit.row(), strict=True))


async def test_unicode_and_empty_values_survive(store: Store) -> None:
    hit = Hit(ts=5, kind="view", cid="spring ☀ 春", uid="", ua="\uff2dozilla \u2028 x")
    await store.write([hit])
    (row,) = await all_rows(store)
    assert (row["cid"], row["uid"], row["ua"]) == ("spring ☀ 春", "", "\uff2dozilla \u2028 x")


async def test_eid_is_unique_per_kind_across_and_within_batches(store: Store) -> None:
    first = await store.write(
        [
            Hit(ts=1, kind="view", eid="x"),
            Hit(ts=1, kind="open", eid="x"),
            Hit(ts=2, kind="open", eid="x"),  # within the batch: a duplicate
            Hit(ts=3, kind="click", eid="y"),
            Hit(ts=3, kind="view"),  # no eid: never a duplicate
            Hit(ts=3, kind="view"),
        ]
    )
    assert +first == {"view": 3, "open": 1, "click": 1}
    again = await store.write([Hit(ts=9, kind="open", eid="x"), Hit(ts=9, kind="event", eid="x")])
    assert +again == {"event": 1}
    assert await store.count(HitQuery(equals={"eid": "x"})) == 3
    # the first of the duplicates is the one kept
    (kept,) = await all_rows(store, HitQuery(equals={"eid": "x", "kind": "open"}))
    assert kept["ts"] == 1


async def test_empty_batch_writes_nothing(store: Store) -> None:
    assert sum((await store.write([])).values()) == 0
    assert await store.count(HitQuery()) == 0


@pytest.mark.parametrize("name", EQUALITY_FILTERS)
async def test_every_equality_filter_selects_exactly_its_rows(store: Store, name: str) -> None:
    column = FILTER_COLUMNS.get(name, name)
    value = "click" if name == "kind" else "wanted"
    other = "view" if name == "kind" else "other"
    hits = [
        *[Hit(ts=10 + i, kind="view") for i in range(3)],
        *[replace(Hit(ts=20 + i, kind="view"), **{column: value}) for i in range(4)],  # type: ignore[arg-type]
        *[replace(Hit(ts=30 + i, kind="view"), **{column: other}) for i in range(2)],  # type: ignore[arg-type]
    ]
    if name == "eid":  # eids are unique per kind
        hits = [replace(h, eid=f"{h.eid}" if h.eid is None else h.eid) for h in hits[:3]]
        hits += [Hit(ts=20, kind="view", eid=value), Hit(ts=21, kind="open", eid=value)]
        expected = 2
    else:
        expected = 4
    await store.write(hits)
    query = HitQuery(equals={name: value})
    rows = await all_rows(store, query)
    assert len(rows) == expected == await store.count(query)
    assert {row[column] for row in rows} == {value}


async def test_time_bounds_are_since_inclusive_until_exclusive(store: Store) -> None:
    await store.write(sample(10))  # ts 1000..1009
    query = HitQuery(since_ms=1003, until_ms=1007)
    rows = await all_rows(store, query)
    assert [row["ts"] for row in rows] == [1006, 1005, 1004, 1003]
    assert await store.count(query) == 4


async def test_filters_combine_with_and(store: Store) -> None:
    await store.write(
        [
            *sample(5, cid="a", utm_source="nl"),
            *sample(5, cid="a"),
            *sample(5, cid="b", utm_source="nl"),
        ]
    )
    query = HitQuery(since_ms=1002, equals={"cid": "a", "utm_source": "nl"})
    assert await store.count(query) == 3
    assert {(r["cid"], r["utm_source"]) for r in await all_rows(store, query)} == {("a", "nl")}


async def test_pages_are_newest_first_and_the_cursor_visits_each_row_once(store: Store) -> None:
    # several rows share a millisecond, so the id decides within one ts
    await store.write([Hit(ts=1000 + i // 3, kind="view", cid="c") for i in range(25)])
    seen: list[tuple[int, int]] = []
    query = HitQuery(equals={"cid": "c"}, limit=4)
    while True:
        page = await store.query(query)
        seen += [(int(r["ts"]), int(r["id"])) for r in page]
        if len(page) < 4:
            break
        query = query.after(page[-1])
    assert len(seen) == len(set(seen)) == 25
    assert seen == sorted(seen, reverse=True)


async def test_oldest_first_pages_within_a_bound_visit_each_row_once(store: Store) -> None:
    """A copy's read: oldest first by (ts, id), after a cursor, up to a snapshot bound."""
    await store.write([Hit(ts=1000 + i // 3, kind="view") for i in range(25)])
    newest = (await store.query(HitQuery(limit=25)))[5]  # the bound: 5 newer rows left out
    bound = (int(newest["ts"]), int(newest["id"]))
    query = HitQuery(through=bound, oldest_first=True, limit=4)
    seen: list[tuple[int, int]] = []
    while page := await store.query(query):
        seen += [(int(r["ts"]), int(r["id"])) for r in page]
        query = query.after(page[-1])
    assert len(seen) == len(set(seen)) == 20
    assert seen == sorted(seen)
    assert seen[-1] == bound
    assert await store.count(HitQuery(through=bound)) == 20
    assert await store.count(HitQuery(beyond=seen[9], through=bound)) == 10


async def test_count_by_kind(store: Store) -> None:
    await store.write([Hit(ts=i, kind=("view", "open", "open", "click")[i % 4]) for i in range(10)])
    assert await store.count_by_kind(HitQuery()) == {"view": 3, "open": 5, "click": 2}
    assert await store.count_by_kind(HitQuery(since_ms=8)) == {"view": 1, "open": 1}
    assert await store.count_by_kind(HitQuery(equals={"kind": "event"})) == {}


def copied(*hits: Hit) -> list[tuple[object, ...]]:
    """Rows as query_rows() gives them: (id, *COLUMNS), ids as in some other store."""
    return [(500 + n, *hit.row()) for n, hit in enumerate(hits)]


async def test_copied_rows_keep_every_column_and_their_position_commits_with_them(
    store: Store,
) -> None:
    hit = Hit(
        ts=1_790_000_000_123,
        kind="click",
        **{
            c: f"v-{c}"
            for c in COLUMNS
            if c not in ("ts", "kind", "is_bot", "dnt", "gpc", "seq", "sent_ts")
        },
        is_bot=1,
        dnt=0,
        gpc=1,
        seq=7,
        sent_ts=1_789_999_999_000,
    )
    source = "0123456789abcdef0123456789abcdef"
    assert await store.copy_position(source) is None
    first = CopyPosition(source, "sqlite:///old.db", (1_790_000_000_123, 41))
    assert +await store.copy_in(copied(hit, *sample(2)), first) == {"click": 1, "view": 2}
    assert await store.copy_position(source) == replace(first, copied=3)
    (row,) = await all_rows(store, HitQuery(equals={"kind": "click"}))
    assert {c: row[c] for c in COLUMNS} == dict(zip(COLUMNS, hit.row(), strict=True))
    # the same eid again adds nothing (also twice in one chunk: the first is kept), and the
    # position counts only the new rows
    twice = [Hit(ts=7, kind="open", eid="x", uid="first"), Hit(ts=8, kind="open", eid="x")]
    again = CopyPosition(source, "sqlite:///old.db", (1_790_000_000_500, 90), after=first.last)
    assert +await store.copy_in(copied(hit, *twice), again) == {"open": 1}
    assert await store.copy_position(source) == replace(again, copied=4, after=None)
    assert [r["uid"] for r in await all_rows(store, HitQuery(equals={"eid": "x"}))] == ["first"]
    assert await store.copy_position("another source") is None
    assert await store.count(HitQuery()) == 4


async def test_query_rows_gives_the_rows_of_query_as_tuples(store: Store) -> None:
    await store.write(sample(5, cid="c"))
    query = HitQuery(oldest_first=True, limit=3)
    rows = await store.query(query)
    assert await store.query_rows(query) == [tuple(row.values()) for row in rows]
    assert [tuple(row) for row in rows] == [("id", *COLUMNS)] * 3


async def test_a_chunk_that_does_not_continue_the_position_writes_nothing(
    store: Store,
) -> None:
    """Two copies from one source into one store: the second one's chunk is refused."""
    source = "feedfacefeedfacefeedfacefeedface"
    start = CopyPosition(source, "a.db", (10, 1))
    await store.copy_in(copied(*sample(2)), start)
    for stale in (
        CopyPosition(source, "a.db", (20, 2)),  # a first chunk again
        CopyPosition(source, "a.db", (20, 2), after=(5, 5)),  # continuing elsewhere
    ):
        with pytest.raises(PositionMoved):
            await store.copy_in(copied(Hit(ts=30, kind="open", eid="y"), *sample(2)), stale)
    assert await store.copy_position(source) == replace(start, copied=2)
    assert await store.count(HitQuery()) == 2
    # the transaction was rolled back whole, eid claims too: "y" is new when it comes again
    going_on = CopyPosition(source, "a.db", (30, 3), after=(10, 1))
    assert +await store.copy_in(copied(Hit(ts=30, kind="open", eid="y")), going_on) == {"open": 1}


async def test_the_store_id_is_its_own_and_stays(store: Store, tmp_path: Path) -> None:
    own = await store.store_id()
    assert len(own) == 32
    assert int(own, 16) >= 0
    other: Store = (
        MemoryStore() if isinstance(store, MemoryStore) else SQLiteStore(str(tmp_path / "other.db"))
    )
    async with opened(other):
        assert await other.store_id() != own
    if not isinstance(store, MemoryStore):
        await store.aclose()
        await store.open()
    assert await store.store_id() == own


async def test_count_ignores_the_limit(store: Store) -> None:
    await store.write(sample(7))
    assert await store.count(HitQuery(limit=2)) == 7
    assert len(await store.query(HitQuery(limit=2))) == 2


@pytest.mark.parametrize("value", ["\x00", "nul\x00inside", "\ud800", "x" * 100_000])
async def test_values_no_row_can_hold_match_nothing(store: Store, value: str) -> None:
    """A filter value no stored hit can have (NUL, a lone surrogate, huge) is no match, not an
    error: hits never store control characters or invalid UTF-8 (hits.py)."""
    await store.write(sample(3, cid="c"))
    query = HitQuery(equals={"cid": value})
    assert await store.query(query) == []
    assert await store.count(query) == 0


async def test_spill_offsets_are_recorded_with_the_rows_and_forgotten(store: Store) -> None:
    assert await store.spill_offset("spill-1-1.jsonl") == 0
    await store.write(sample(2), progress=("spill-1-1.jsonl", 120))
    await store.write(sample(1), progress=("spill-1-1.jsonl", 180))
    await store.write(sample(1), progress=("spill-2-2.jsonl", 60))
    assert await store.spill_offset("spill-1-1.jsonl") == 180
    assert await store.spill_offset("spill-2-2.jsonl") == 60
    assert await store.count(HitQuery()) == 4
    await store.forget_spill("spill-1-1.jsonl")
    assert await store.spill_offset("spill-1-1.jsonl") == 0
    assert await store.spill_offset("spill-2-2.jsonl") == 60


async def test_reopening_keeps_rows_and_dedup(store: Store) -> None:
    await store.write([Hit(ts=1, kind="open", eid="z")])
    if isinstance(store, MemoryStore):
        return  # nothing to reopen
    await store.aclose()
    await store.open()
    assert sum((await store.write([Hit(ts=2, kind="open", eid="z")])).values()) == 0
    assert await store.count(HitQuery()) == 1


async def test_close_is_idempotent(store: Store) -> None:
    await store.aclose()
    await store.aclose()
    await store.open()  # and the fixture closes it again


def events(*eids: str | None) -> list[Hit]:
    return [
        Hit(ts=2000 + i, kind="event", event="video_started", eid=eid, seq=i, method="POST")
        for i, eid in enumerate(eids)
    ]


async def test_write_events_says_per_event_whether_it_is_new(store: Store) -> None:
    """write_events answers True for a new event and False for a duplicate: an eid stored
    before, or earlier in the same batch; an event without an eid is always new."""
    assert await store.write_events(events("a", "b", None)) == [True, True, True]
    outcome = await store.write_events(events("b", "c", "c", None, "a", "d"))
    assert outcome == [False, True, False, True, False, True]
    rows = await all_rows(store, HitQuery(equals={"kind": "event"}))
    assert sorted(str(row["eid"]) for row in rows) == ["None", "None", "a", "b", "c", "d"]
    assert {row["seq"] for row in rows if row["eid"] == "c"} == {1}  # the first "c" won
    assert await store.write_events([]) == []


async def test_write_events_dedups_per_kind(store: Store) -> None:
    """An event's eid is its own: a view or click with the same eid does not make the event
    a duplicate, nor the other way round."""
    await store.write([Hit(ts=1, kind="view", eid="same"), Hit(ts=2, kind="click", eid="same")])
    assert await store.write_events(events("same")) == [True]
    assert +await store.write([Hit(ts=3, kind="view", eid="same")]) == {}


async def test_api_keys_are_kept_listed_and_revoked(store: Store) -> None:
    """A key is stored with its hash and scopes, listed oldest first, and revoked once: a
    second revoke keeps the first time; an unknown id is None."""
    text, key = new_key("checkout service", ["ingest"], now_ms=1_000)
    _, reader = new_key("dashboard", ["read", "ingest"], now_ms=2_000)
    await store.add_api_key(key)
    await store.add_api_key(reader)
    assert await store.api_keys() == [key, reader]
    assert reader.scopes == ("ingest", "read")
    assert text not in repr(await store.api_keys())  # the secret is not stored
    assert (await store.revoke_api_key(key.id, 5_000)) == replace(key, revoked_ms=5_000)
    assert (await store.revoke_api_key(key.id, 9_000)) == replace(key, revoked_ms=5_000)
    assert await store.revoke_api_key("nosuchkey000", 9_000) is None
    assert await store.api_keys() == [replace(key, revoked_ms=5_000), reader]


def session(sid: str, seqs: list[int], start_ms: int, cid: str | None = "spring") -> list[Hit]:
    """Events of one session, one per minute from ``start_ms``, numbered ``seqs``."""
    return [
        Hit(
            ts=start_ms + 60_000 * i,
            kind="event",
            event="e",
            eid=f"{sid}-{i}",
            sid=sid,
            cid=cid,
            seq=seq,
            method="POST",
        )
        for i, seq in enumerate(seqs)
    ]


async def test_the_loss_report_counts_gaps_repeats_and_duplicates(store: Store) -> None:
    """Per day and campaign: a session's numbers below its highest that never came are lost,
    a number stored twice is repeated, a retried eid is a duplicate; a session counts on the
    day it began, whole (its events past midnight too), and only sessions that began in the
    span count."""
    day = 20_400 * DAY_MS  # 2025-11-08, a day's start
    await store.write_events(
        [
            *session("a", [1, 2, 3, 4], day + 1000),  # complete
            *session("b", [1, 3, 5], day + 2000),  # 2 and 4 lost
            *session("c", [2, 2, 3], day + 3000),  # 1 lost, 2 repeated (a new eid)
            *session("d", [1, 2], day + DAY_MS - 60_000),  # began before midnight
            *session("e", [1, 4], day + 5000, cid=None),  # no campaign: 2 lost
            *session("f", [1, 2], day - 3_600_000),  # began the day before: not in the span
            Hit(ts=day + 9000, kind="event", event="e", eid="x", seq=7, method="POST"),  # no sid
        ]
    )
    retry = session("b", [1, 3, 5], day + 2000)[:2]  # sent again: answered duplicate
    assert await store.write_events(retry) == [False, False]
    rows = await store.loss_report((day, day + DAY_MS))
    assert [(r.date, r.cid) for r in rows] == [("2025-11-08", ""), ("2025-11-08", "spring")]
    blank, spring = rows
    assert (blank.sessions, blank.received, blank.lost, blank.repeated) == (1, 2, 2, 0)
    assert (spring.sessions, spring.received, spring.lost, spring.repeated) == (4, 12, 3, 1)
    assert spring.duplicates == 2
    assert spring.sent == 14
    assert [r.cid for r in await store.loss_report((day, day + DAY_MS), "spring")] == ["spring"]
    assert await store.loss_report((day + DAY_MS, day + 2 * DAY_MS)) == []


async def test_clicks_since_reads_the_clicks_oldest_first(store: Store) -> None:
    hits = [
        Hit(ts=5000, kind="click", cid="c", uid="u", url="https://a.example/", ip="192.0.2.0"),
        Hit(ts=4000, kind="click", msg="m1", sent_ts=3000, traffic="human"),
        Hit(ts=4500, kind="open", cid="c", uid="u"),
        Hit(ts=1000, kind="click", cid="c", uid="u"),
    ]
    await store.write(hits)
    seen = await store.clicks_since(2000, 10)
    assert [(s.ts, s.msg, s.sent_ts, s.traffic) for s in seen] == [
        (4000, "m1", 3000, "human"),
        (5000, None, None, None),
    ]
    assert (seen[1].cid, seen[1].uid, seen[1].url, seen[1].ip) == (
        "c",
        "u",
        "https://a.example/",
        "192.0.2.0",
    )
    assert len(await store.clicks_since(0, 1)) == 1


async def test_relabel_compares_and_sets(store: Store) -> None:
    await store.write(
        [Hit(ts=1000 + i, kind="click", traffic="human", traffic_rules="0") for i in range(3)]
    )
    a, b, c = await store.clicks_since(0, 10)
    changes = [
        Relabel(a.id, a.ts, "human", "link_scanner", "burst:3_links"),
        Relabel(b.id, b.ts, "probe", "link_scanner", "burst:3_links"),  # changed meanwhile
        Relabel(c.id, c.ts, "human", "human", ""),
    ]
    assert await store.relabel(changes) == 2
    rows = {r["id"]: r for r in await all_rows(store)}
    assert (rows[a.id]["traffic"], rows[a.id]["traffic_reasons"], rows[a.id]["is_bot"]) == (
        "link_scanner",
        "burst:3_links",
        1,
    )
    assert rows[a.id]["traffic_rules"] == RULES_VERSION
    assert (rows[b.id]["traffic"], rows[b.id]["is_bot"], rows[b.id]["traffic_rules"]) == (
        "human",
        0,
        "0",
    )
    assert (rows[c.id]["traffic"], rows[c.id]["traffic_reasons"]) == ("human", None)
    assert await store.relabel(changes[:1]) == 0  # no longer human: nothing to do
    assert await store.relabel([]) == 0
