"""Shared fixtures: settings and app factories, an in-process client, a real server process."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pgtest
import pytest
from asgi_lifespan import LifespanManager

from pixel_server.app import PixelApp, create_app
from pixel_server.config import Settings
from pixel_server.runtime import Runtime
from pixel_server.store.base import Store
from pixel_server.writer import Writer

SECRET = "test-secret-key-0123456789abcdef"
API_TOKEN = "test-api-token"
# Hypothesis' two wall-clock checks are off for every property test, present and future: the
# 200 ms per-example deadline and the "data generation is too slow" health check both fail at
# random on a busy 2-core machine, and neither says anything about the code under test.
hypothesis.settings.register_profile(
    "busy-machine", deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow]
)
hypothesis.settings.load_profile("busy-machine")

# Deadlines for things that must happen eventually (readiness, answers): generous, because the
# suite runs on 2 shared cores; they only turn a hang into a clear failure, they prove nothing.
READY_DEADLINE = 60.0
ACK_DEADLINE = 60.0
CHROME_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)


BACKENDS = ("sqlite", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_stores: run the test on SQLite and on PostgreSQL (fixture `backend`)"
    )
    config.addinivalue_line(
        "markers", "sqlite_only(reason): in a both_stores module, a test of SQLite's own files"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``both_stores`` (a module's ``pytestmark``) that use the store, through
    ``make_settings``, ``harness``, ``server_factory`` or ``backend`` itself, run once per
    store; every other test runs on SQLite."""
    both = metafunc.definition.get_closest_marker("both_stores") is not None
    if metafunc.definition.get_closest_marker("sqlite_only") is not None:
        both = False
    if "backend" in metafunc.fixturenames and both:
        metafunc.parametrize("backend", BACKENDS, indirect=True)


WRAP_BASE = "https://t.example.com"
WRAP_EMAIL = """<html><body style="margin:0">
<p>Grüße &amp; hello</p>
<a href="https://shop.example/sale?a=1&amp;b=2">Sale</a>
<a href="mailto:help@shop.example">Help</a> <a href="{{ unsubscribe }}">Unsubscribe</a>
<!--[if mso]><v:roundrect href="https://shop.example/vml"><![endif]-->
</body></html>
"""


@pytest.fixture
def wrap_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The environment `pixel-server wrap` and friends sign in (a database, the test key,
    WRAP_BASE as the public URL); returns the path of WRAP_EMAIL written to a file."""
    for name, value in {
        "PIXEL_DB": str(tmp_path / "pixel.db"),
        "PIXEL_SECRET_KEY": SECRET,
        "PIXEL_PUBLIC_URL": WRAP_BASE,
    }.items():
        monkeypatch.setenv(name, value)
    email = tmp_path / "spring.html"
    email.write_text(WRAP_EMAIL, encoding="utf-8")
    return email


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database for this test run (dropped at the end)."""
    url, drop = pgtest.create_run_database()
    yield url
    drop()


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    """A ``postgresql://`` URL of an empty schema of its own, dropped after the test."""
    url, drop = pgtest.new_schema(pg_database)
    yield url
    drop()


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The store under test: "sqlite" unless the test is parametrised by both_stores."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def store_env(backend: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """The PIXEL_* variables that point a server or CLI at the store under test ({} means
    SQLite at the PIXEL_DB the caller sets)."""
    if backend == "sqlite":
        return {}
    return {"PIXEL_DATABASE_URL": request.getfixturevalue("pg_url")}


@pytest.fixture
def make_settings(tmp_path: Path, store_env: dict[str, str]) -> Callable[..., Settings]:
    """Settings on a fresh store (a SQLite file under tmp_path, or a PostgreSQL schema);
    keyword overrides use field names."""

    def make(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "secret_key": SECRET,
            "api_tokens": API_TOKEN,
        }
        if "PIXEL_DATABASE_URL" in store_env and "db" not in overrides:
            base["database_url"] = store_env["PIXEL_DATABASE_URL"]
            base["data_dir"] = str(tmp_path / "data")
        else:
            base["db"] = str(tmp_path / "pixel.db")
        base.update(overrides)
        settings = Settings(**base)
        settings.validate()
        return settings

    return make


@dataclass
class Harness:
    app: PixelApp
    client: httpx.AsyncClient
    auth: dict[str, str] = field(default_factory=lambda: {"authorization": f"Bearer {API_TOKEN}"})

    @property
    def rt(self) -> Runtime:
        return self.app.runtime

    def metric(self, name: str, **labels: str) -> float:
        value = self.rt.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    async def hits(self, **params: str) -> list[dict[str, Any]]:
        response = await self.client.get("/api/hits", params=params, headers=self.auth)
        assert response.status_code == 200, response.text
        rows: list[dict[str, Any]] = response.json()["hits"]
        return rows


@asynccontextmanager
async def running(settings: Settings, store: Store | None = None) -> AsyncIterator[Harness]:
    app = create_app(settings, store=store)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(manager.app, client=("203.0.113.77", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Harness(app, client)


@pytest.fixture
async def harness(make_settings: Callable[..., Settings]) -> AsyncIterator[Harness]:
    async with running(make_settings()) as h:
        yield h


def stored_rows(settings: Settings, sql: str = "SELECT eid FROM hits") -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (portable SQL) read straight from the settings' store, SQLite or
    PostgreSQL, bypassing the service."""
    if settings.sqlite_path is None:
        url = settings.database_url
        return pgtest.run(lambda: pgtest.fetch(url, sql))
    with contextlib.closing(sqlite3.connect(settings.sqlite_path)) as conn:
        return conn.execute(sql).fetchall()


def store_cli_env(settings: Settings) -> dict[str, str]:
    """The PIXEL_* variables that point a CLI command at the settings' store."""
    if settings.sqlite_path is None:
        return {"PIXEL_DATABASE_URL": settings.database_url, "PIXEL_DATA_DIR": settings.data_dir}
    return {"PIXEL_DB": settings.sqlite_path}


def run_cli_env(settings: Settings, **env: str) -> dict[str, str]:
    """:func:`run_cli`'s env for the settings' store (its PIXEL_DB default unset for
    PostgreSQL), plus ``env``."""
    found = {**store_cli_env(settings), **env}
    return {**found, "PIXEL_DB": ""} if settings.sqlite_path is None else found


@contextlib.contextmanager
def store_locked(where: Settings | ServerProcess) -> Iterator[None]:
    """Another program holds the store's write lock for the block: an exclusive transaction
    on the SQLite file, or an exclusive lock on PostgreSQL's tables."""
    if isinstance(where, Settings):
        sqlite_path, database_url = where.sqlite_path, where.database_url
    else:
        sqlite_path = None if where.database_url else str(where.db)
        database_url = where.database_url or ""
    if sqlite_path is None:
        with pgtest.holding_lock(database_url, "hits", "hit_eids"):
            yield
        return
    locker = sqlite3.connect(sqlite_path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        locker.execute("ROLLBACK")
        locker.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    """A real ``pixel-server serve`` process on a free loopback port."""

    proc: subprocess.Popen[bytes]
    port: int
    db: Path
    log: Path
    database_url: str | None = None  # PostgreSQL; None: SQLite at db

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def spill_dir(self) -> Path:
        """Where this server's spill journals go by default (beside the SQLite file, or
        pixel-data/spill in its working directory on PostgreSQL)."""
        if self.database_url:
            return self.log.parent / "pixel-data" / "spill"
        return self.db.with_name(self.db.name + ".spill")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Signal the server and wait for its exit status. By design it exits within
        PIXEL_GRACEFUL_TIMEOUT + PIXEL_DRAIN_TIMEOUT (5 + 10 s); 20 s leaves 5 s for a busy
        machine to schedule the exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill_all(self) -> None:
        """SIGKILL the server and every process it started (granian's workers too)."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        pids = children.read_text().split() if children.exists() else []
        self.proc.kill()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        self.proc.wait(10)

    def rows(self, sql: str = "SELECT eid FROM hits") -> list[tuple[Any, ...]]:
        """Rows of ``sql`` (portable SQL), read from the server's store directly."""
        if self.database_url is not None:
            url = self.database_url
            return pgtest.run(lambda: pgtest.fetch(url, sql))
        with sqlite3.connect(self.db) as conn:
            return conn.execute(sql).fetchall()


PIXEL_SERVER = Path(sys.executable).parent / "pixel-server"  # the console script


def run_cli(
    *args: str, env: dict[str, str], cwd: Path, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run the real console script; with valid settings `serve` would start 2 workers, so a
    run that does not stop by itself is killed with its whole process group."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PIXEL_")}
    base = {"PIXEL_SECRET_KEY": SECRET, "PIXEL_DB": str(cwd / "pixel.db"), "PIXEL_WORKERS": "2"}
    proc = subprocess.Popen(
        [*prefix, str(PIXEL_SERVER), *args],
        env={**clean, **base, "PIXEL_PORT": str(free_port()), **env},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def start_server(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> ServerProcess:
    """A server on a free port, or on ``env``'s PIXEL_PORT (a port a client already uses)."""
    port = int(env["PIXEL_PORT"]) if env and "PIXEL_PORT" in env else free_port()
    db = Path(env["PIXEL_DB"]) if env and "PIXEL_DB" in env else tmp_path / "pixel.db"
    log = tmp_path / f"server-{port}.log"
    database_url = (env or {}).get("PIXEL_DATABASE_URL")
    full_env = {
        **os.environ,
        **({} if database_url else {"PIXEL_DB": str(db)}),
        "PIXEL_PORT": str(port),
        "PIXEL_SECRET_KEY": SECRET,
        "PIXEL_API_TOKENS": API_TOKEN,
        **(env or {}),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pixel_server", "serve", *args],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    server = ServerProcess(proc, port, db, log, database_url)
    # a readiness poll, not a bound: a start takes ~0.5 s idle and a few seconds on a busy
    # 2-core machine; the deadline only turns a server that never gets ready into a failure
    deadline = time.monotonic() + READY_DEADLINE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log.read_text()}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    server.kill_all()
    raise RuntimeError(f"server did not become ready:\n{log.read_text()}")


@pytest.fixture
def server_factory(
    tmp_path: Path, store_env: dict[str, str]
) -> Iterator[Callable[..., ServerProcess]]:
    """Starts real servers on the store under test (``env`` may override it)."""
    started: list[ServerProcess] = []

    def make(*args: str, env: dict[str, str] | None = None) -> ServerProcess:
        merged = {**store_env, **(env or {})}
        if "PIXEL_DB" in (env or {}):
            merged.pop("PIXEL_DATABASE_URL", None)  # the test asked for this SQLite file
        server = start_server(tmp_path, *args, env=merged)
        started.append(server)
        return server

    yield make
    for server in started:
        if server.proc.poll() is None:
            server.kill_all()


class Load:
    """Client threads sending unique-eid pixels to ``server`` until stopped or it goes away.

    ``acked`` collects every eid answered 200 and ``latencies`` every response time; tests wait
    for a number of answers with :meth:`wait_for` (an event, not a sleep). As a context
    manager it starts the clients on entry and stops and joins them on exit.
    """

    def __init__(
        self,
        server: ServerProcess,
        clients: int,
        prefix: str,
        *,
        stop: threading.Event | None = None,
        acked: list[str] | None = None,
        latencies: list[float] | None = None,
    ) -> None:
        self.server, self.prefix = server, prefix
        self.stop = threading.Event() if stop is None else stop
        self.acked: list[str] = [] if acked is None else acked
        self.latencies: list[float] = [] if latencies is None else latencies
        self._changed = threading.Condition()
        self._threads = [threading.Thread(target=self._client, args=(n,)) for n in range(clients)]
        self._running = 0
        self.events = 0  # > 0: each request posts that many events to /e instead of a pixel

    def _send(self, http: httpx.Client, eid: str) -> httpx.Response:
        if not self.events:
            return http.get(f"/p.gif?cid=load&eid={eid}")
        batch = [{"name": "load", "eid": f"{eid}.{k}"} for k in range(self.events)]
        return http.post("/e", json=batch)

    def _stored(self, response: httpx.Response, eid: str) -> list[str]:
        """The eids a 200 answer says are stored (a pixel's; each accepted event's)."""
        if not self.events:
            return [eid]
        results = response.json()["results"]
        return [f"{eid}.{r['index']}" for r in results if r["status"] in ("accepted", "duplicate")]

    def __enter__(self) -> Load:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

    def __len__(self) -> int:
        with self._changed:
            return len(self.acked)

    def start(self) -> None:
        self._running = len(self._threads)
        for thread in self._threads:
            thread.start()

    def join(self) -> None:
        for thread in self._threads:
            thread.join(30)

    def finish(self) -> list[str]:
        """Stop the clients, wait for them and return the acknowledged eids."""
        self.stop.set()
        self.join()
        return self.acked

    def wait_for(self, count: int, timeout: float = ACK_DEADLINE) -> None:
        """Block until at least ``count`` hits have been answered 200.

        Fails if every client has stopped first (the server went away) or after ``timeout``
        seconds, a deadline for a stuck load, not a bound: 6 clients got 325 answers a second
        with both cores busy (stress-ng plus other test runs, load average 10).
        """
        with self._changed:
            self._changed.wait_for(lambda: len(self.acked) >= count or self._running == 0, timeout)
            got = len(self.acked)
        assert got >= count, f"only {got} of {count} hits answered ({timeout:.0f} s)"

    def _client(self, n: int) -> None:
        try:
            with httpx.Client(base_url=self.server.url, timeout=10) as http:
                i = 0
                while not self.stop.is_set():
                    eid = f"{self.prefix}-{n}-{i}"
                    started = time.monotonic()
                    try:
                        response = self._send(http, eid)
                    except httpx.TimeoutException:
                        # unanswered for 10 s: keep its time, so a latency bound sees it
                        with self._changed:
                            self.latencies.append(time.monotonic() - started)
                        return
                    except httpx.TransportError:
                        return  # the server closed: stop this client
                    with self._changed:
                        self.latencies.append(time.monotonic() - started)
                        if response.status_code == 200:
                            self.acked.extend(self._stored(response, eid))
                            self._changed.notify_all()
                    i += 1
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()


def load(
    server: ServerProcess,
    clients: int,
    stop: threading.Event,
    prefix: str,
    acked: list[str] | None = None,
    latencies: list[float] | None = None,
) -> list[str]:
    """Send unique-eid pixels from ``clients`` threads until ``stop`` or the server goes away;
    return (and append to ``acked``) every eid that was answered 200, and append each
    response time to ``latencies``."""
    run = Load(server, clients, prefix, stop=stop, acked=acked, latencies=latencies)
    run.start()
    run.join()
    return run.acked


def wait_until(condition: Callable[[], object], what: str, timeout: float = 60) -> None:
    """Poll ``condition`` every 50 ms until it is true; fail after ``timeout`` seconds (a
    deadline for something that never happens, generous so that a busy machine never hits it)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.05)


async def until(condition: Callable[[], object], what: str, timeout: float = 30) -> None:
    """The asyncio form of :func:`wait_until`, for in-process tests; ``condition`` may be a
    coroutine function."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await _truth(condition()):
        assert loop.time() < deadline, f"{what}: not within {timeout:.0f} s"
        await asyncio.sleep(0.01)


async def closing_line(writer: Writer, caplog: pytest.LogCaptureFixture) -> str:
    """Close ``writer`` and return the line it logged last ("final flush done: ...")."""
    with caplog.at_level(logging.INFO, logger="pixel_server.writer"):
        await writer.aclose()
    return caplog.messages[-1]


async def _truth(value: object) -> bool:
    return bool(await value if inspect.isawaitable(value) else value)
