"""The spill journal's line format: named, versioned records; journals of the previous release
(version 1, positional arrays) still replay; unknown and missing names follow spill.py's rule."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from pixel_server.hits import COLUMNS, Hit
from pixel_server.metrics import Metrics
from pixel_server.spill import V1_COLUMNS, BadRecord, Journal, Spill, decode, encode
from pixel_server.store.memory import MemoryStore
from pixel_server.writer import Writer

from conftest import until

# written by the release before named records (commit 76fb7af), through its Journal.append:
# two appends of two hits each
V1_FIXTURE = Path(__file__).parent / "fixtures" / "spill-v1.jsonl"
V1_HITS = [
    Hit(
        ts=1718000000123,
        kind="view",
        eid="e-1",
        cid="spring",
        uid="r-1042",
        sid="s-9",
        url="https://shop.example/a?b=1",
        ref="newsletter",
        utm_source="mail",
        utm_medium="email",
        utm_campaign="spring-sale",
        utm_term="shoes",
        utm_content="hero",
        utm_id="42",
        params='{"note":"ünïcode ☃ & \\"quotes\\""}',
        referer="https://mail.example/",
        ip="203.0.113.7",
        ua="Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0",
        browser="Firefox",
        browser_version="126.0",
        os="Linux",
        os_version=None,
        device="desktop",
        is_bot=0,
        dnt=1,
        gpc=1,
        method="HEAD",
        flags="control_chars,value_truncated",
    ),
    Hit(
        ts=1718000000456,
        kind="click",
        cid="spring",
        url="https://shop.example/sale",
        is_bot=1,
        device="bot",
    ),
    Hit(ts=1718000000789, kind="event", event="signup", eid="e-3", params='{"plan":"pro"}'),
    Hit(ts=1718000001000, kind="open"),
]


def record(**fields: object) -> bytes:
    return json.dumps({"v": 2, **fields}).encode() + b"\n"


def read_all(path: Path) -> tuple[list[Hit], int]:
    journal = Journal.claim(path)
    assert journal is not None
    try:
        return journal.read(0, 1000)
    finally:
        journal.close()


def test_a_line_names_every_field_after_its_version() -> None:
    """A line is {"v": 2, "ts": ..., ...}: the version, then every Hit field by name, nulls
    included ("v" itself is no column)."""
    line = encode(V1_HITS[1])
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    parsed = json.loads(line)
    assert list(parsed) == ["v", *COLUMNS]
    assert (parsed["v"], parsed["kind"], parsed["ua"]) == (2, "click", None)
    assert decode(line, set()) == V1_HITS[1]
    assert "v" not in COLUMNS


def test_a_record_is_read_by_name_in_any_order() -> None:
    """Only the names count: the same fields in another order are the same hit."""
    fields = dict(zip(COLUMNS, V1_HITS[0].row(), strict=True))
    shuffled = {"v": 2, **dict(reversed(fields.items()))}
    assert decode(json.dumps(shuffled).encode() + b"\n", set()) == V1_HITS[0]


def test_previous_release_refuses_a_new_line_instead_of_misreading_it() -> None:
    """After a rollback, the previous release reads a line as Hit(*tuple(json.loads(line))):
    a record has more keys than Hit has fields, so that raises (the old writer then keeps the
    journal and retries) instead of storing a hit with ts="v"."""
    with pytest.raises(TypeError, match="positional arguments"):
        Hit(*tuple(json.loads(encode(Hit(ts=1, kind="view")))))


def test_previous_release_journal_replays_every_field(tmp_path: Path) -> None:
    """A version 1 journal, as the previous release wrote it, reads back field for field, and
    its byte offsets (kept in spill_replay) step line by line."""
    path = tmp_path / "spill-999-1.jsonl"
    shutil.copy(V1_FIXTURE, path)
    lines = V1_FIXTURE.read_bytes().splitlines(keepends=True)
    journal = Journal.claim(path)
    assert journal is not None
    try:
        first, offset = journal.read(0, 2)
        assert offset == len(lines[0]) + len(lines[1])
        rest, end = journal.read(offset, 1000)
    finally:
        journal.close()
    assert first + rest == V1_HITS
    assert end == V1_FIXTURE.stat().st_size


async def test_previous_release_journal_is_adopted_and_stored(tmp_path: Path) -> None:
    """An orphaned version 1 journal is replayed into the store with every column right."""
    shutil.copy(V1_FIXTURE, tmp_path / "spill-999-2.jsonl")
    store = MemoryStore()
    async with Writer(store, Metrics(), spill=Spill(tmp_path, 1 << 20)):
        await until(lambda: not (tmp_path / "spill-999-2.jsonl").exists(), "not replayed")
    assert [{k: v for k, v in row.items() if k != "id"} for row in store.rows] == [
        dict(zip(COLUMNS, h.row(), strict=True)) for h in V1_HITS
    ]


def test_every_version_1_name_is_still_a_hit_field() -> None:
    """Renaming or removing a column would drop its values from version 1 journals: such a
    change needs a mapping in spill.py, and this test says so."""
    assert set(V1_COLUMNS) <= set(COLUMNS)


def test_unknown_name_is_dropped_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A name this release does not know (a newer release's column) is dropped; the hit is
    kept, and the journal warns once, naming the field."""
    path = tmp_path / "spill-999-3.jsonl"
    path.write_bytes(
        record(ts=1, kind="view", cid="c", country="NZ")
        + record(ts=2, kind="view", country="FR")
        + record(ts=3, kind="view")
    )
    journal = Journal.claim(path)
    assert journal is not None
    with caplog.at_level(logging.WARNING, logger="pixel_server.spill"):
        hits, _ = journal.read(0, 1)
        more, _ = journal.read(len(path.read_bytes().splitlines(keepends=True)[0]), 1000)
    journal.close()
    assert hits + more == [
        Hit(ts=1, kind="view", cid="c"),
        Hit(ts=2, kind="view"),
        Hit(ts=3, kind="view"),
    ]
    assert caplog.messages == [
        "spill journal spill-999-3.jsonl: fields unknown to this release dropped from its "
        "hits: country"
    ]


def test_missing_name_takes_the_field_default(tmp_path: Path) -> None:
    """A record without some fields (written before they existed) reads them as Hit's
    defaults: None, and for the others their own default (method GET, is_bot 0)."""
    path = tmp_path / "spill-999-4.jsonl"
    full = dict(zip(COLUMNS, V1_HITS[0].row(), strict=True))
    for name in ("flags", "method", "is_bot", "ua"):
        del full[name]
    path.write_bytes(record(**full))
    [hit], _ = read_all(path)
    assert (hit.flags, hit.method, hit.is_bot, hit.ua) == (None, "GET", 0, None)
    assert (hit.ts, hit.browser, hit.dnt) == (1718000000123, "Firefox", 1)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (record(kind="view"), "has no ts"),
        (b'{"v":3,"ts":1,"kind":"view"}\n', "version 3"),
        (b'{"ts":1,"kind":"view"}\n', "version None"),
        (b'{"v":2,"hit":{"ts":1,"kind":"view"}}\n', "has no kind, ts"),
        (b'[1,"view"]\n', "has 29 values, not 2"),
        (b'"a string"\n', "not a spill record"),
        (b"not json\n", "Expecting value"),
    ],
)
def test_unreadable_line_is_refused(tmp_path: Path, line: bytes, message: str) -> None:
    """A complete line that is no record this release reads raises BadRecord, naming the
    journal and the byte offset, instead of being guessed at."""
    path = tmp_path / "spill-999-5.jsonl"
    path.write_bytes(encode(Hit(ts=0, kind="view")) + line)
    journal = Journal.claim(path)
    assert journal is not None
    try:
        # the hit before the bad line is read; the read from the bad line raises
        hits, offset = journal.read(0, 1000)
        assert hits == [Hit(ts=0, kind="view")]
        with pytest.raises(BadRecord, match=message) as info:
            journal.read(offset, 1000)
        assert f"spill-999-5.jsonl, line at byte {offset}" in str(info.value)
    finally:
        journal.close()


async def test_replay_stops_at_a_refused_line_and_keeps_the_journal(tmp_path: Path) -> None:
    """Replay stores the hits before a line of an unknown version, then keeps retrying (store
    unhealthy, reason logged); the journal stays on disk for a release that can read it."""
    path = tmp_path / "spill-999-6.jsonl"
    future = b'{"v":3,"ts":9,"kind":"view"}\n'
    path.write_bytes(encode(Hit(ts=1, kind="view")) + future + encode(Hit(ts=2, kind="view")))
    store = MemoryStore()
    spill = Spill(tmp_path, 1 << 20)
    async with Writer(store, Metrics(), spill=spill) as writer:
        await until(lambda: writer.last_error is not None, "the bad line was not refused")
        assert [row["ts"] for row in store.rows] == [1]
        assert not writer.healthy
        assert "version 3" in (writer.last_error or "")
    spill.close()
    assert path.exists()


def test_torn_v2_last_line_is_skipped(tmp_path: Path) -> None:
    """A partial record at the end (a crash mid-append, never acknowledged) is stepped over:
    the offset moves past it, so the journal counts as fully replayed."""
    path = tmp_path / "spill-999-7.jsonl"
    whole = encode(Hit(ts=1, kind="view", eid="e1"))
    torn = encode(Hit(ts=2, kind="view", eid="e2"))[:-7]
    path.write_bytes(whole + torn)
    hits, end = read_all(path)
    assert hits == [Hit(ts=1, kind="view", eid="e1")]
    assert end == len(whole) + len(torn)
