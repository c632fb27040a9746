"""PostgreSQL outages as they happen: killed connections, a database refusing connections,
a read-only server, an answer lost after the commit, and three instances on one database.

Every test runs real server processes (or the real store) against the machine's PostgreSQL;
afterwards every acknowledged eid is stored exactly once.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import asyncpg
import httpx
import pgtest
import pytest

from pixel_server.hits import Hit
from pixel_server.query import HitQuery
from pixel_server.store import opened
from pixel_server.store.base import StoreUnavailable
from pixel_server.store.postgres import PostgresStore

from conftest import ACK_DEADLINE, API_TOKEN, Load, ServerProcess, running, wait_until

AUTH = {"authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def backend() -> str:
    """Every server_factory server here runs on PostgreSQL."""
    return "postgresql"


def database_of(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?", 1)[0]


def admin(sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Run ``sql`` on the admin database (not the one under test)."""
    return pgtest.run(lambda: pgtest.fetch(pgtest.ADMIN_URL, sql, *args))


def terminate_backends(url: str) -> int:
    """pg_terminate_backend on every connection to the test database; how many."""
    rows = admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = $1 AND pid <> pg_backend_pid()",
        database_of(url),
    )
    return len(rows)


@contextmanager
def database_unavailable(url: str) -> Iterator[None]:
    """The database refuses connections (ALLOW_CONNECTIONS false) and loses the ones it had."""
    name = database_of(url)
    admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        terminate_backends(url)
        yield
    finally:
        admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


@contextmanager
def read_only(url: str) -> Iterator[None]:
    """New transactions are read-only (as on a standby, or a full-disk safety switch)."""
    name = database_of(url)
    admin(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    try:
        terminate_backends(url)  # so every connection picks the setting up
        yield
    finally:
        admin(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        terminate_backends(url)


def ready_status(server: ServerProcess) -> int:
    try:
        return httpx.get(f"{server.url}/readyz", timeout=5).status_code
    except httpx.TransportError:
        return 0


def recovered(server: ServerProcess) -> bool:
    return ready_status(server) == 200


def stored_counts(server: ServerProcess) -> Counter[str]:
    return Counter(eid for (eid,) in server.rows("SELECT eid FROM hits WHERE eid IS NOT NULL"))


def assert_each_stored_once(server: ServerProcess, acked: set[str] | list[str]) -> None:
    assert acked, "the load produced no acknowledged hits"
    counts = stored_counts(server)
    twice = [eid for eid, n in counts.items() if n > 1]
    assert not twice, f"{len(twice)} eids stored more than once, e.g. {twice[:3]}"
    missing = set(acked) - set(counts)
    assert not missing, f"{len(missing)} of {len(set(acked))} acknowledged eids are not stored"


OUTAGE_SECONDS = 10.0


@pytest.mark.timeout(240)
def test_killed_connections_mid_load_lose_nothing(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """pg_terminate_backend on every connection, three times under load: the pool reconnects,
    and every acknowledged hit is stored once."""
    server = server_factory()
    with Load(server, 6, "kill") as run:
        for _ in range(3):
            run.wait_for(len(run) + 100)
            assert terminate_backends(server.database_url or "") >= 1
        run.wait_for(len(run) + 100)
    wait_until(lambda: ready_status(server) == 200, "the server did not recover")
    assert server.stop() == 0
    assert_each_stored_once(server, run.acked)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("outage", [database_unavailable, read_only], ids=["refusing", "read-only"])
def test_database_outage_keeps_pixels_answering_and_loses_nothing(
    server_factory: Callable[..., ServerProcess], outage: Callable[[str], Any]
) -> None:
    """For 10 s under load the database refuses connections (or is read-only): pixels keep
    answering 200 (from the spill journal), /readyz says degraded, and after it every
    acknowledged hit is stored once, the journal replayed away."""
    server = server_factory("--log-level", "info")
    url = server.database_url or ""
    with Load(server, 6, "out") as run:
        run.wait_for(50)
        with outage(url):
            began = time.monotonic()
            wait_until(lambda: ready_status(server) == 503, "/readyz never said degraded")
            run.wait_for(len(run) + 100)  # answered during the outage
            time.sleep(max(0.0, began + OUTAGE_SECONDS - time.monotonic()))
        wait_until(lambda: ready_status(server) == 200, "the server did not recover", ACK_DEADLINE)
        run.wait_for(len(run) + 50)
    assert server.stop() == 0
    assert_each_stored_once(server, run.acked)
    assert not list(server.spill_dir.glob("*.jsonl")), "the journal was not replayed away"


# what a lost answer looks like from asyncpg: the connection closed under the statement, or
# the driver's own state machine confused by it (both seen when backends are terminated)
LOSSES = [
    asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    asyncpg.exceptions.InternalClientError("cannot switch to state 12"),
    asyncpg.InterfaceError("cannot call Connection.terminate()"),
    TimeoutError(),
]


class LostAnswer(PostgresStore):
    """Commits the batch, then loses the answer with ``loss``."""

    loss: BaseException | None = None

    async def _execute(self, conn: Any, args: Any) -> list[Any]:
        rows = await super()._execute(conn, args)
        if self.loss is not None:
            loss, self.loss = self.loss, None
            raise loss
        return rows


@pytest.mark.parametrize("loss", LOSSES, ids=lambda e: type(e).__name__)
async def test_a_commit_whose_answer_was_lost_is_resolved_not_repeated(
    pg_url: str, loss: BaseException
) -> None:
    """The batch committed but its answer was lost: write() finds the commit (write_batches)
    and reports it, so the writer neither retries nor spills it (eid-less hits are stored
    once, not twice) and never mistakes it for rows the database refused (which the writer
    would drop)."""
    store = LostAnswer(pg_url)
    async with opened(store):
        store.loss = loss
        added = await store.write([Hit(ts=1, kind="view"), Hit(ts=1, kind="view", eid="e")])
        assert +added == {"view": 2}
        assert await store.count(HitQuery()) == 2
        assert store.in_doubt == 0


class LostBeforeCommit(PostgresStore):
    """Loses the connection without sending the batch (it never reaches the database)."""

    loss: BaseException = LOSSES[0]

    async def _execute(self, conn: Any, args: Any) -> list[Any]:
        raise self.loss


@pytest.mark.parametrize("loss", LOSSES, ids=lambda e: type(e).__name__)
async def test_a_write_that_never_arrived_is_unavailable_to_be_retried(
    pg_url: str, loss: BaseException
) -> None:
    """No commit found for the batch: StoreUnavailable, so the writer retries or spills it."""
    store = LostBeforeCommit(pg_url)
    store.loss = loss
    async with opened(store):
        with pytest.raises(StoreUnavailable):
            await store.write([Hit(ts=1, kind="view")])
        assert await store.count(HitQuery()) == 0
        assert store.in_doubt == 0


@pytest.mark.timeout(420)
def test_three_instances_store_every_acknowledged_eid_exactly_once(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """The multi-instance proof: three instances on one database; clients send unique eids and
    eids deliberately sent to all three at once; one instance gets SIGTERM mid-load; every
    connection is killed mid-load; the database refuses connections for 10 s. Afterwards
    every eid answered 200 by any instance is stored exactly once."""
    servers = [server_factory() for _ in range(3)]
    url = servers[0].database_url or ""
    acked: set[str] = set()
    answered = threading.Condition()
    stop = threading.Event()

    def send(http: httpx.Client, server: ServerProcess, eid: str) -> None:
        try:
            response = http.get(f"{server.url}/p.gif?cid=multi&eid={eid}", timeout=10)
        except httpx.TransportError:
            return  # that instance is gone (SIGTERM): the others carry on
        if response.status_code == 200:
            with answered:
                acked.add(eid)
                answered.notify_all()

    def unique_client(n: int) -> None:
        with httpx.Client() as http:
            for i in range(1_000_000):
                if stop.is_set():
                    return
                send(http, servers[(n + i) % 3], f"u-{n}-{i}")

    def duplicate_client(n: int) -> None:
        """Each eid to all three instances at the same moment (three threads, one barrier)."""
        rng = random.Random(n)
        with httpx.Client() as http:
            for i in range(1_000_000):
                if stop.is_set():
                    return
                eid = f"d-{n}-{i}"
                barrier = threading.Barrier(3)

                def at_once(server: ServerProcess, eid: str = eid, b: Any = barrier) -> None:
                    with httpx.Client() as own:
                        b.wait(10)
                        send(own, server, eid)

                threads = [threading.Thread(target=at_once, args=(s,)) for s in servers]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(30)
                if rng.random() < 0.5:  # and the same eid once more, later, to one of them
                    send(http, servers[rng.randrange(3)], eid)

    def wait_for(count: int) -> None:
        with answered:
            answered.wait_for(lambda: len(acked) >= count, ACK_DEADLINE)
            assert len(acked) >= count, f"only {len(acked)} of {count} answered"

    clients = [threading.Thread(target=unique_client, args=(n,)) for n in range(4)]
    clients += [threading.Thread(target=duplicate_client, args=(n,)) for n in range(2)]
    for client in clients:
        client.start()
    try:
        wait_for(200)
        servers[2].proc.send_signal(signal.SIGTERM)  # one instance leaves mid-load
        assert servers[2].proc.wait(20) == 0
        wait_for(len(acked) + 150)
        assert terminate_backends(url) >= 1  # every connection killed mid-load
        wait_for(len(acked) + 150)
        with database_unavailable(url):  # and the database gone for 10 s
            began = time.monotonic()
            wait_for(len(acked) + 100)  # still answered, from the journals
            time.sleep(max(0.0, began + OUTAGE_SECONDS - time.monotonic()))
        for server in servers[:2]:
            wait_until(partial(recovered, server), "an instance did not recover")
        wait_for(len(acked) + 100)
    finally:
        stop.set()
        for client in clients:
            client.join(60)
    for server in servers[:2]:
        assert server.stop() == 0
    duplicated = {eid for eid in acked if eid.startswith("d-")}
    assert len(duplicated) >= 20, "too few duplicated eids to prove anything"
    assert_each_stored_once(servers[0], acked)


async def test_reads_while_the_database_refuses_connections_are_503s(
    make_settings: Callable[..., Any],
) -> None:
    """The API while PostgreSQL refuses connections: a 503 store_unavailable in the error
    shape with Retry-After, for a page and for both exports (nothing was sent yet)."""
    settings = make_settings()
    async with running(settings) as h:
        assert (await h.client.get("/p.gif?cid=r&eid=1")).status_code == 200
        with database_unavailable(settings.database_url):
            for path in ("/api/hits", "/api/hits.csv", "/api/hits.ndjson"):
                response = await h.client.get(path, headers=h.auth)
                assert response.status_code == 503, (path, response.text)
                assert response.json()["error"]["code"] == "store_unavailable"
                assert response.headers["retry-after"] == "5"
        assert [row["eid"] for row in await h.hits()] == ["1"]


def test_an_export_cut_off_by_an_outage_is_not_completed(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """A real server: an export's first page arrives, then PostgreSQL refuses connections:
    the body ends without its last chunk (a client sees an incomplete transfer, not a short
    file that looks whole), and the server goes on serving."""
    server = server_factory()
    url = server.database_url or ""

    rows = 40_000  # ~10 MB of export: more than the socket buffers hold, so the server is
    # still reading pages (held back by the client) when the outage begins

    async def fill() -> None:
        async with opened(PostgresStore(url)) as store:
            for start in range(0, rows, 5000):
                await store.write(
                    [
                        Hit(ts=1_793_491_200_000 + i, kind="view", eid=f"x{i}", ua="u" * 200)
                        for i in range(start, start + 5000)
                    ]
                )

    pgtest.run(fill)
    for path in ("/api/hits.csv", "/api/hits.ndjson"):
        received: list[bytes] = []
        with httpx.stream("GET", server.url + path, headers=AUTH, timeout=60) as response:
            assert response.status_code == 200
            chunks = response.iter_bytes()
            received.append(next(chunks))  # the first page is on the wire
            with (
                database_unavailable(url),
                pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"),
            ):
                received.extend(chunks)
        assert b"".join(received).count(b"\n") < rows
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
