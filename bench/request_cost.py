"""What a keep-alive pixel request costs in process, without sockets: per HTTP protocol class,
on the raw ASGI app or on the whole pixel app (store and writer included).

    .venv/bin/python bench/request_cost.py [--app raw|pixel] [--rounds 300] [module:Class ...]
    .venv/bin/python bench/request_cost.py --app pixel --request events-20 ...

``--request`` is the request of a scenario of bench/scenarios.py: ``pixel`` (the default), or
an event scenario (``events-20``, ``events-beacon``): its POST /e, every eid new (the bodies
are made before the clock starts), so the store never sees a duplicate; or ``redirect``: the
redirect scenario's GET /r/<token> (a signed link to REDIRECT_TARGET, 302), which checks the
revocations on the way.

Each protocol class gets ``--connections`` (64) connections with fake transports on uvloop;
a round feeds each the pixel request ``make bench`` sends (bench/scenarios.py: PIXEL_PATH and
the four browser headers) in one read, then waits until all are answered. ``--app raw``
(bench/raw_app.py) leaves the protocols' own costs; ``--app pixel`` is the real app on a
fresh SQLite file, whose writer commits a round's hits in one batch or a few (``--store
postgresql``: on a fresh PostgreSQL database of PIXEL_BENCH_POSTGRES's cluster, bench/pg.py,
dropped after; the database's own work is then in its backend, not in this process). Printed: wall
and CPU time a request, best of ``--repeats`` (the classes take turns).

For instruction counts, repeatable on a busy machine, run one class under callgrind with
two round counts and divide the difference by the extra requests:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python \
        bench/request_cost.py --app pixel --repeats 1 --rounds 20 pixel_server.protocol:...
    # ... again with --rounds 60: (Ir(60) - Ir(20)) / (40 * 64) instructions a request

Another tree (a commit unpacked with git archive) is measured with PYTHONPATH=<its root>.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import itertools
import os
import tempfile
import time
from typing import Any

import eventload
import pg
import uvloop
from raw_app import app as raw_app
from scenarios import BY_NAME, GIF, HEADERS, PIXEL_PATH, REDIRECT_TARGET, SECRET_KEY
from uvicorn.config import Config
from uvicorn.lifespan.on import LifespanOn
from uvicorn.server import ServerState

PROTOCOLS = (
    "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol",
    "pixel_server.coalesce:CoalescingHttpToolsProtocol",
    "pixel_server.protocol:BoundedHttpToolsProtocol",
)
REQUEST = (
    f"GET {PIXEL_PATH} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
    + "".join(f"{name}: {value}\r\n" for name, value in HEADERS.items())
    + "\r\n"
).encode()
_NUMBERS = itertools.count()
REDIRECT_END = b"\r\n\r\n"  # a 302's head, its body empty
EVENTS_END = b"}]}"  # the end of a POST /e answer: its last result, the list, the object


def redirect_request() -> bytes:
    """The redirect scenario's GET /r/<token>, signed with the benchmark key (make_config)."""
    from pixel_server.config import Settings
    from pixel_server.keys import Keyring
    from pixel_server.payload import build
    from pixel_server.signing import REDIRECT_SALT, TokenSigner

    fields = {"cid": "spring-sale-2026", "uid": "8f14e45f", "utm_source": "newsletter"}
    signer = TokenSigner(Keyring.from_settings(Settings.from_env()), REDIRECT_SALT)
    token = signer.dumps(build(fields, target=REDIRECT_TARGET))
    return REQUEST.replace(PIXEL_PATH.encode(), f"/r/{token}".encode(), 1)


def event_requests(name: str, count: int) -> list[bytes]:
    """``count`` POST /e requests of scenario ``name``, each with eids of its own."""
    sc = BY_NAME[name]
    template = eventload.body_template(sc)
    head = "POST /e HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n" + "".join(
        f"{key}: {value}\r\n" for key, value in sc.headers.items()
    )
    out = []
    for _ in range(count):
        body = eventload.fill(template, f"{os.getpid()}{next(_NUMBERS):010d}")
        out.append(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return out


class Answers:
    """Counts the responses written (each ends with ``end``); wakes the round at ``target``."""

    def __init__(self, end: bytes = GIF) -> None:
        self.end = end
        self.count = 0
        self.target = 0
        self.done = asyncio.Event()

    def expect(self, more: int) -> None:
        self.target += more
        self.done.clear()


class FakeTransport(asyncio.Transport):
    """Counts the answers in what is written; has the addresses uvicorn asks for."""

    def __init__(self, answers: Answers) -> None:
        super().__init__()
        self.answers = answers
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("10.1.2.3", 40000), "sockname": ("127.0.0.1", 8080)}.get(name)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if bytes(data[-len(self.answers.end) :]) == self.answers.end:
            answers = self.answers
            answers.count += 1
            if answers.count >= answers.target:
                answers.done.set()

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def load(name: str) -> type[asyncio.Protocol]:
    module, _, attr = name.partition(":")
    cls: type[asyncio.Protocol] = getattr(importlib.import_module(module), attr)
    return cls


async def per_request(
    cls: type[asyncio.Protocol], config: Config, connections: int, rounds: int, request: str
) -> tuple[float, float]:
    """Wall and CPU microseconds a request over ``rounds`` rounds on ``connections``."""
    loop, state = asyncio.get_running_loop(), ServerState()
    ends = {"pixel": GIF, "redirect": REDIRECT_END}
    answers = Answers(ends.get(request, EVENTS_END))
    fixed = {"pixel": REQUEST}
    if request == "redirect":
        fixed["redirect"] = redirect_request()
    protocols: list[Any] = []
    for _ in range(connections):
        protocol: Any = cls(config, state, {}, loop)  # type: ignore[call-arg]
        protocol.connection_made(FakeTransport(answers))
        protocols.append(protocol)
    wall = cpu = 0.0
    for _ in range(rounds):
        # event bodies are made before the round's clock starts (their eids must be new)
        data = (
            [fixed[request]] * connections
            if request in fixed
            else event_requests(request, connections)
        )
        answers.expect(connections)
        started, cpu_started = time.perf_counter(), time.process_time()
        for protocol, one in zip(protocols, data, strict=True):
            protocol.data_received(one)
        await answers.done.wait()
        wall += time.perf_counter() - started
        cpu += time.process_time() - cpu_started
    for protocol in protocols:
        if protocol.transport.is_closing():
            raise RuntimeError(f"{cls.__name__} closed a connection")
        protocol.connection_lost(None)
    requests = connections * rounds
    return wall / requests * 1e6, cpu / requests * 1e6


def make_config(app: str, database: pg.Database | None) -> Config:
    if app == "raw":
        return Config(raw_app, lifespan="off", proxy_headers=False, log_config=None)
    work = tempfile.mkdtemp(prefix="request-cost-")
    os.environ.update(PIXEL_SECRET_KEY=SECRET_KEY, PIXEL_LOG_LEVEL="warning")
    if database is None:
        os.environ["PIXEL_DB"] = os.path.join(work, "pixel.db")
    else:
        os.environ.update(PIXEL_DATABASE_URL=database.url, PIXEL_DATA_DIR=work)
    from pixel_server.app import create_app
    from pixel_server.config import Settings

    pixel = create_app(Settings.from_env())
    return Config(pixel, lifespan="on", proxy_headers=False, access_log=False, log_config=None)


async def measure(args: argparse.Namespace, config: Config) -> dict[str, list[tuple[float, float]]]:
    classes = [load(name) for name in args.protocols]
    lifespan = LifespanOn(config) if args.app == "pixel" else None
    if lifespan is not None:
        await lifespan.startup()
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in args.protocols}
    try:
        for cls in classes:  # warm-up
            await per_request(cls, config, args.connections, 10, args.request)
        for _ in range(args.repeats):
            for name, cls in zip(args.protocols, classes, strict=True):
                runs = await per_request(cls, config, args.connections, args.rounds, args.request)
                results[name].append(runs)
    finally:
        if lifespan is not None:
            await lifespan.shutdown()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", choices=("raw", "pixel"), default="raw")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--request", choices=("pixel", "redirect", "events-20", "events-beacon"), default="pixel"
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("protocols", nargs="*", default=PROTOCOLS, help="module:Class ...")
    args = parser.parse_args()
    database = pg.Database.create() if args.store == "postgresql" else None
    try:
        config = make_config(args.app, database)
        config.load()
        results = uvloop.run(measure(args, config))
    finally:
        if database is not None:
            database.drop()
    for name, runs in results.items():
        wall, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
        print(f"{name:56} {wall:6.2f} us wall, {cpu:6.2f} us CPU a request")


if __name__ == "__main__":
    main()
