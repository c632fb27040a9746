"""``pixel-server copy``: SQLite <-> PostgreSQL and SQLite -> SQLite, every column, dedup, a
copy killed (SIGKILL, Ctrl-C) and resumed without duplicates, the count check, and every bad
input as one line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pgtest
import pytest
from click.testing import CliRunner, Result

from pixel_server import storecopy
from pixel_server.cli import main
from pixel_server.fields import KINDS
from pixel_server.hits import COLUMNS, Hit
from pixel_server.query import HitQuery
from pixel_server.store import Store, opened
from pixel_server.store.base import CopyPosition
from pixel_server.store.pgschema import month_start_ms
from pixel_server.store.postgres import PostgresStore
from pixel_server.store.sqlite import SQLiteStore

from conftest import free_port, wait_until

START = month_start_ms(2026, 7)  # three hits a millisecond every 2.2 hours, over months
STEP_MS = 7_919_000
ROWS_SQL = f"SELECT {', '.join(COLUMNS)} FROM hits ORDER BY ts, id"  # noqa: S608


def sample(n: int, offset: int = 0) -> list[Hit]:
    """``n`` hits with every column set in turns: unicode, empty strings, NULLs, flags; an eid
    on four in five, shared by two kinds (unique per kind), several hits per millisecond."""
    out = []
    for i in range(offset, offset + n):
        kind = KINDS[i % 4]
        out.append(
            Hit(
                ts=START + (i // 3) * STEP_MS,
                kind=kind,
                event="signup" if kind == "event" else None,
                eid=f"e{i // 2}" if i % 5 else None,
                cid=("spring ☀ 春", "", None)[i % 3],
                uid=f"u{i % 97}",
                sid=f"s{i % 13}" if i % 2 else None,
                url=f"https://shop.example/p/{i}?q=a%20b",
                ref="newsletter" if i % 4 == 0 else None,
                utm_source="nl",
                utm_medium="email" if i % 3 else None,
                utm_campaign="spring",
                utm_term="t\u2028x" if i % 9 == 0 else None,
                utm_content="=cmd" if i % 10 == 0 else None,
                utm_id=str(i) if i % 6 == 0 else None,
                params=json.dumps({"k": i, "v": "ü"}) if i % 4 == 1 else None,
                referer="https://mail.example/" if i % 3 == 0 else None,
                ip=f"198.51.100.{i % 250}",
                ua="Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0",
                browser="Firefox",
                browser_version="125.0",
                os="Linux",
                os_version="",
                device="desktop" if i % 8 else "bot",
                is_bot=int(i % 8 == 0),
                dnt=i % 2,
                gpc=int(i % 3 == 0),
                method="POST" if i % 17 == 0 else "GET",
                flags="value_truncated,control_chars" if i % 11 == 0 else None,
            )
        )
    return out


@dataclass
class Place:
    """One store the tests copy from or to: its URL as the command line takes it."""

    kind: str  # "sqlite" or "postgresql"
    arg: str  # what is passed to `pixel-server copy`
    path: Path | None = None  # the SQLite file

    def store(self) -> Store:
        if self.path is not None:
            return SQLiteStore(str(self.path))
        return PostgresStore(self.arg)

    def rows(self, sql: str = ROWS_SQL, wait: float = 5) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` read from the store directly, bypassing pixel_server; an error
        after ``wait`` seconds if a lock held by another connection is in the way."""
        if self.path is None:
            url, settings = self.arg, {"lock_timeout": str(int(wait * 1000))}
            return pgtest.run(lambda: pgtest.fetch(url, sql, settings=settings))
        with closing(sqlite3.connect(self.path, timeout=wait)) as conn:
            return conn.execute(sql).fetchall()

    def write(self, hits: list[Hit]) -> None:
        async def run() -> None:
            async with opened(self.store()) as store:
                for start in range(0, len(hits), 5_000):
                    await store.write(hits[start : start + 5_000])

        asyncio.run(run())

    def position(self) -> tuple[int, int]:
        """(hits the copy into this store has written, hits it holds), 0s before it has a
        schema."""
        try:
            [(held,)] = self.rows("SELECT count(*) FROM hits")
        except Exception:  # the tables are not there yet: the copy is starting
            return 0, 0
        return self.copied(), int(held)

    def copied(self, wait: float = 5) -> int:
        """Hits the copy into this store has written: 0 before it has a schema, or while a
        lock is in the way for more than ``wait`` seconds."""
        try:
            [(copied,)] = self.rows("SELECT coalesce(sum(copied), 0) FROM copy_progress", wait)
        except Exception:  # the tables are not there yet (the copy is starting), or locked
            return 0
        return int(copied)


@pytest.fixture
def places(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[[str], Place]]:
    """Makes fresh places: a new SQLite path, or a new PostgreSQL schema."""
    drops: list[Callable[[], None]] = []
    count = 0

    def make(kind: str) -> Place:
        nonlocal count
        count += 1
        if kind == "sqlite":
            path = tmp_path / f"store-{count}.db"
            return Place(kind, str(path), path)
        url, drop = pgtest.new_schema(request.getfixturevalue("pg_database"))
        drops.append(drop)
        return Place(kind, url)

    yield make
    for drop in drops:
        drop()


def copy(*args: str) -> Result:
    return CliRunner().invoke(main, ["copy", *args])


def assert_one_line(result: Result, code: int, *words: str, alone: bool = True) -> str:
    """The command failed with exit status ``code`` and one ``Error:`` line naming
    ``words``: the whole of stderr, or (``alone=False``, a copy that had begun) its last
    line after the progress lines."""
    assert result.exit_code == code, (result.exit_code, result.output, result.stderr)
    assert "Traceback" not in result.output + result.stderr
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if "Error" in line] == lines[-1:], result.stderr
    if alone:
        assert len(lines) == 1, result.stderr
    assert lines[-1].startswith("Error: "), lines
    for word in words:
        assert word in lines[-1], (word, lines[-1])
    return lines[-1]


PAIRS = [("sqlite", "postgresql"), ("postgresql", "sqlite"), ("sqlite", "sqlite")]


@pytest.mark.parametrize(("source_kind", "dest_kind"), PAIRS)
def test_every_hit_and_column_arrives_in_order(
    places: Callable[[str], Place], source_kind: str, dest_kind: str
) -> None:
    source, dest = places(source_kind), places(dest_kind)
    hits = sample(2_500)
    source.write(hits)
    result = copy(source.arg, dest.arg, "--chunk-size", "300")
    assert result.exit_code == 0, result.output + result.stderr
    kinds = ", ".join(f"{kind} {sum(h.kind == kind for h in hits)}" for kind in KINDS)
    assert result.stdout == f"copied 2500 hits ({kinds}); source and destination agree\n"
    copied = dest.rows()
    assert copied == source.rows()  # oldest first by (ts, id): ties in the source's order
    assert Counter(copied) == Counter(hit.row() for hit in hits)


@pytest.mark.parametrize("dest_kind", ["sqlite", "postgresql"])
def test_dedup_holds_in_the_destination(places: Callable[[str], Place], dest_kind: str) -> None:
    """Each copied (kind, eid) is claimed in DEST (hit_eids on PostgreSQL): the same eid sent
    to DEST after the move is a duplicate, another kind's is not."""
    source, dest = places("sqlite"), places(dest_kind)
    source.write(sample(400))
    assert copy(source.arg, dest.arg).exit_code == 0
    if dest_kind == "postgresql":
        claims = dest.rows("SELECT kind, eid FROM hit_eids ORDER BY kind, eid")
        assert claims == sorted(dest.rows("SELECT kind, eid FROM hits WHERE eid IS NOT NULL"))

    async def resend() -> tuple[int, int]:
        async with opened(dest.store()) as store:
            again = await store.write([Hit(ts=START, kind="open", eid="e0")])  # sample's 2nd
            other = await store.write([Hit(ts=START, kind="view", eid="e0")])
            return again.total(), other.total()

    assert asyncio.run(resend()) == (0, 1)


def test_copied_history_goes_into_its_monthly_partitions(
    places: Callable[[str], Place],
) -> None:
    source, dest = places("sqlite"), places("postgresql")
    source.write(sample(3_000))  # July to September 2026
    assert copy(source.arg, dest.arg).exit_code == 0
    spread = dest.rows("SELECT tableoid::regclass::text, count(*) FROM hits GROUP BY 1 ORDER BY 1")
    assert [name.rpartition(".")[2] for name, _ in spread] == [
        "hits_2026_07",
        "hits_2026_08",
        "hits_2026_09",
    ]
    assert sum(n for _, n in spread) == 3_000


def test_spill_replay_offsets_stay_with_their_deployment(
    places: Callable[[str], Place],
) -> None:
    source, dest = places("sqlite"), places("postgresql")

    async def replayed() -> None:
        async with opened(source.store()) as store:
            await store.write(sample(3), progress=("spill-1-1.jsonl", 420))

    asyncio.run(replayed())
    assert copy(source.arg, dest.arg).exit_code == 0
    assert dest.rows("SELECT journal FROM spill_replay") == []
    assert len(dest.rows()) == 3


def test_resume_adds_the_hits_written_since(places: Callable[[str], Place]) -> None:
    source, dest = places("sqlite"), places("postgresql")
    source.write(sample(500))
    assert copy(source.arg, dest.arg).exit_code == 0
    source.write(sample(40, offset=500))  # newer: beyond the first copy's bound
    again = copy(source.arg, dest.arg)
    assert_one_line(again, 2, "already holds a copy", "--resume")
    resumed = copy("--resume", source.arg, dest.arg)
    assert resumed.exit_code == 0, resumed.output + resumed.stderr
    assert resumed.stdout.startswith("copied 40 hits, 540 in all (view 135, ")
    assert "resuming after 500 hits copied" in resumed.stderr
    assert dest.rows() == source.rows()


def test_an_empty_source_copies_nothing_and_agrees(places: Callable[[str], Place]) -> None:
    source, dest = places("sqlite"), places("sqlite")
    source.write([])
    result = copy(source.arg, dest.arg)
    assert result.exit_code == 0, result.output + result.stderr
    assert result.stdout == (
        "copied 0 hits (view 0, open 0, click 0, event 0); source and destination agree\n"
    )


def test_a_late_hit_below_the_position_is_a_disagreement(
    places: Callable[[str], Place],
) -> None:
    """A hit that reaches SOURCE below the copy's position (as a spill replay can) is not
    copied by --resume; the count check says so, exit 1."""
    source, dest = places("sqlite"), places("postgresql")
    source.write(sample(300))
    assert copy(source.arg, dest.arg).exit_code == 0
    source.write([Hit(ts=START + 5, kind="open")])
    result = copy("--resume", source.arg, dest.arg)
    line = assert_one_line(
        result, 1, "SOURCE and DEST disagree", "open 76 in SOURCE, 75 in DEST", alone=False
    )
    assert "view" not in line.partition("(")[0]


def test_something_else_writing_to_dest_stops_a_resume(places: Callable[[str], Place]) -> None:
    source, dest = places("sqlite"), places("sqlite")
    source.write(sample(100))
    assert copy(source.arg, dest.arg).exit_code == 0
    dest.write([Hit(ts=START, kind="view", eid="from-a-server")])
    result = copy("--resume", source.arg, dest.arg)
    assert_one_line(result, 2, "holds 101 hits but the copy", "wrote 100")


def test_a_dest_with_other_hits_is_refused(places: Callable[[str], Place]) -> None:
    source, dest = places("sqlite"), places("postgresql")
    source.write(sample(10))
    dest.write(sample(3))
    for args in ([source.arg, dest.arg], ["--resume", source.arg, dest.arg]):
        assert_one_line(copy(*args), 2, "is not empty", "3 hits")
    assert len(dest.rows()) == 3


def cli(*args: str) -> subprocess.Popen[str]:
    """``pixel-server copy ...`` as a real process."""
    return subprocess.Popen(
        [sys.executable, "-m", "pixel_server", "copy", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("PIXEL_")},
    )


def stop_after_first_chunk(proc: subprocess.Popen[str], dest: Place, sig: signal.Signals) -> None:
    """Send ``sig`` to a running copy once it has committed a chunk, and long before its last.

    The copy runs in slices of 20 ms (SIGCONT, then SIGSTOP) and the destination is read only
    while the copy is stopped, so a busy machine that makes each look slow cannot let the copy
    race to its end between two looks: a slice is a small part of the copy's 1,000
    transactions, whatever the machine's speed. A look never waits on a lock the stopped copy
    holds (its schema being created): it counts as "nothing yet"."""
    deadline = time.monotonic() + 240
    while True:
        time.sleep(0.02)
        proc.send_signal(signal.SIGSTOP)
        wait_until(lambda: process_state(proc.pid) in "TZX", "the copy stopped")
        assert proc.poll() is None, "the copy ended before it could be stopped"
        if dest.copied(wait=0.1) > 0:
            proc.send_signal(sig)  # SIGINT stays pending until SIGCONT
            proc.send_signal(signal.SIGCONT)
            return
        proc.send_signal(signal.SIGCONT)
        assert time.monotonic() < deadline, "no chunk copied within 240 s"


def process_state(pid: int) -> str:
    """The one-letter state of a process (R, S, T for stopped, Z), "X" once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return "X"
    return stat.rsplit(")", 1)[1].split()[0]


@pytest.mark.timeout(600)  # the copy runs in slices (stop_after_first_chunk): slow when busy
@pytest.mark.parametrize(("source_kind", "dest_kind"), PAIRS)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_a_stopped_copy_resumes_where_it_stopped_without_duplicates(
    places: Callable[[str], Place], source_kind: str, dest_kind: str, sig: signal.Signals
) -> None:
    """A real copy is stopped once it has committed some chunks; what it wrote is exactly
    what its position says, and --resume writes the rest once."""
    source, dest = places(source_kind), places(dest_kind)
    hits = sample(20_000)
    source.write(hits)
    proc = cli(source.arg, dest.arg, "--chunk-size", "20")  # 1,000 transactions
    try:
        stop_after_first_chunk(proc, dest, sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    copied, held = dest.position()
    assert 0 < copied < len(hits), "the copy was not stopped midway"
    assert held == copied  # each chunk committed with its position, or neither
    if sig == signal.SIGINT:
        assert proc.returncode == 1
        assert stderr.strip().splitlines()[-1] == (
            "Error: interrupted: the hits copied so far are kept; run the same command with"
            " --resume to continue"
        )
        assert "Traceback" not in stderr
    else:
        assert proc.returncode == -signal.SIGKILL
    resumed = cli("--resume", source.arg, dest.arg, "--chunk-size", "5000")
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert stdout.startswith(f"copied {len(hits) - copied} hits, {len(hits)} in all (")
    assert stdout.endswith("; source and destination agree\n")
    assert dest.rows() == source.rows()
    assert len(set(dest.rows())) == len(hits)


def with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{password}@{parts.hostname}"))


def test_bad_places_are_one_line_and_create_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    good = tmp_path / "good.db"
    asyncio.run(_create(good))
    (tmp_path / "notes.txt").write_text("not a database\n")
    (tmp_path / "empty.db").touch()
    unreachable = f"postgresql://pixel:hunter2-pw@127.0.0.1:{free_port()}/pixel"
    cases: list[tuple[list[str], int, tuple[str, ...]]] = [
        ([str(missing), str(tmp_path / "out.db")], 2, ("SOURCE", "no database at")),
        ([str(tmp_path), str(tmp_path / "out.db")], 2, ("SOURCE", "is a directory")),
        ([str(tmp_path / "notes.txt"), str(tmp_path / "out.db")], 2, ("not an SQLite",)),
        ([str(tmp_path / "empty.db"), str(tmp_path / "out.db")], 2, ("is empty",)),
        ([str(good), str(tmp_path / "notes.txt")], 2, ("DEST", "not an SQLite database")),
        ([str(good), str(tmp_path / "no" / "dir.db")], 2, ("DEST", "no directory")),
        ([str(good), str(tmp_path)], 2, ("DEST", "is a directory")),
        ([str(good), str(good)], 2, ("same file",)),
        ([str(good), f"sqlite:///{good}"], 2, ("same file",)),
        (["mysql://u:hunter2-pw@h/db", str(good)], 2, ("SOURCE", "unknown scheme")),
        ([str(good), "postgresql://u:hunter2-pw@h/"], 2, ("DEST", "names no database")),
        ([str(good), "sqlite:///"], 2, ("DEST", "sqlite:///")),
        ([str(good), ""], 2, ("DEST", "give a store URL")),
        ([unreachable, str(tmp_path / "out.db")], 1, ("SOURCE", "PostgreSQL unavailable")),
        ([str(good), unreachable], 1, ("DEST", "postgresql://pixel:***@127.0.0.1")),
    ]
    for args, code, words in cases:
        result = copy(*args)
        assert_one_line(result, code, *words)
        assert "hunter2-pw" not in result.output + result.stderr
    assert not missing.exists()
    assert not (tmp_path / "out.db").exists()
    assert (tmp_path / "notes.txt").read_text() == "not a database\n"


async def _create(path: Path) -> None:
    async with opened(SQLiteStore(str(path))) as store:
        await store.write([Hit(ts=START, kind="view")])


def test_the_same_store_under_two_names_is_refused(places: Callable[[str], Place]) -> None:
    """Told apart by the store's own id, not by how it is spelt."""
    store = places("postgresql")
    store.write(sample(5))
    other_name = store.arg.replace("127.0.0.1", "localhost")
    assert other_name != store.arg
    assert_one_line(copy(store.arg, other_name), 2, "same store (store id")
    assert_one_line(copy(store.arg, store.arg), 2, "same store")
    assert len(store.rows()) == 5


def test_a_password_in_a_url_is_never_printed(places: Callable[[str], Place]) -> None:
    source, dest = places("sqlite"), places("postgresql")
    source.write(sample(5))
    url = with_password(dest.arg, "hunter2-pw")  # trust auth: any password is accepted
    result = copy(source.arg, url)
    assert result.exit_code == 0, result.output + result.stderr
    assert "hunter2-pw" not in result.output + result.stderr
    assert "note: the password in DEST shows in the process list" in result.stderr
    again = copy(source.arg, url)
    assert_one_line(again, 2, "already holds a copy")
    assert "hunter2-pw" not in again.output + again.stderr


def test_two_copies_from_one_source_into_one_store_do_not_both_write(
    places: Callable[[str], Place],
) -> None:
    """Two chunks that continue the same position, sent at once on two connections: one
    commits, the other waits for it, finds the position moved and writes nothing."""
    source, dest = places("sqlite"), places("postgresql")
    hits = sample(30)
    source.write(hits)

    async def race() -> tuple[object, ...]:
        async with opened(source.store()) as src, opened(dest.store()) as dst:
            rows = [tuple(r) for r in await src.query_rows(HitQuery(oldest_first=True, limit=100))]
            source_id = await src.store_id()
            start = CopyPosition(source_id, "s", (int(rows[9][1]), int(rows[9][0])))
            await dst.copy_in(rows[:10], start)
            end = CopyPosition(source_id, "s", (int(rows[-1][1]), int(rows[-1][0])))
            return await asyncio.gather(
                dst.copy_in(rows[10:], replace(end, after=start.last)),
                dst.copy_in(rows[10:], replace(end, after=start.last)),
                return_exceptions=True,
            )

    outcomes = asyncio.run(race())
    assert sorted(type(o).__name__ for o in outcomes) == ["Counter", "PositionMoved"]
    assert dest.rows() == source.rows()  # each hit once, eid or not
    assert dest.position() == (30, 30)


def test_a_copy_that_lost_the_race_says_so(places: Callable[[str], Place]) -> None:
    """What the loser of that race reports: one line, exit 1 (storecopy.CopyFailed)."""
    source, dest = places("sqlite"), places("sqlite")
    source.write(sample(30))
    assert copy(source.arg, dest.arg).exit_code == 0

    async def late_start() -> None:
        async with opened(source.store()) as src, opened(dest.store()) as dst:
            # planned before the other copy wrote its first chunk: from the start
            plan = storecopy.Plan(src, dst, await src.store_id(), "s", None, (2**62, 1), 30)
            await storecopy.run(plan)

    with pytest.raises(storecopy.CopyFailed, match="another copy from SOURCE is writing"):
        asyncio.run(late_start())
    assert len(dest.rows()) == 30


@pytest.mark.parametrize("dest_kind", ["sqlite", "postgresql"])
def test_a_millisecond_with_more_hits_than_a_chunk(
    places: Callable[[str], Place], dest_kind: str
) -> None:
    """Chunks end between milliseconds; one millisecond of more hits than a chunk is the one
    case where a chunk is all of one ts, and it is copied whole too."""
    source, dest = places("sqlite"), places(dest_kind)
    crowd = [replace(hit, ts=START + 5) for hit in sample(35, offset=3)]
    hits = [*sample(3), *crowd, *sample(12, offset=1000)]
    source.write(hits)
    result = copy(source.arg, dest.arg, "--chunk-size", "10")
    assert result.exit_code == 0, result.output + result.stderr
    assert Counter(dest.rows()) == Counter(hit.row() for hit in hits)
    assert Counter(dest.rows()) == Counter(source.rows())
