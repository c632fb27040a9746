"""The scenarios of ``make bench`` and the request every one of them sends.

Adding a scenario is one entry in ``SCENARIOS``; the order of the list is the order of the run
and of the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"

CONNECTIONS = 64
WRK_CPUS = "0"
SERVER_CPUS = "1"

PIXEL_PATH = (
    "/p.gif?cid=spring-sale-2026&uid=8f14e45fceea167a5a36dedd4bea2543"
    "&utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale_2026"
    "&utm_content=hero_banner"
)
USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
# The four headers every browser sends with an image load (research/perf-baseline.md, 1.3).
HEADERS = {
    "User-Agent": USER_AGENT,
    "Accept": "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8",
    "Accept-Language": "en-US,en;q=0.9",
    "Accept-Encoding": "gzip, deflate, br",
}
# POST /e (docs/events.md): the event scenarios' path and headers (the body: eventload.py).
EVENTS_PATH = "/e"
EVENT_HEADERS = {
    "User-Agent": USER_AGENT,
    "Accept": "*/*",
    "Accept-Language": "en-US,en;q=0.9",
    "Accept-Encoding": "gzip, deflate, br",
}
BEACON_TYPE = "text/plain;charset=UTF-8"  # what navigator.sendBeacon sends with a string
BEACON_ORIGIN = "https://shop.example"  # a page of the shop posting to the tracking host
REDIRECT_TARGET = "https://shop.example/spring-sale"
LINK_ARGS = (
    "link",
    REDIRECT_TARGET,
    "--cid",
    "spring-sale-2026",
    "--uid",
    "8f14e45f",
    "--utm-source",
    "newsletter",
)
SIGNED_PIXEL_ARGS = ("pixel", "--cid", "spring-sale-2026", "--uid", "8f14e45f")
# A fixed key, so tokens are reproducible; it signs nothing but benchmark traffic.
SECRET_KEY = "bench-only-signing-key-0123456789abcdef"  # noqa: S105 - not a secret
# nginx's empty_gif, byte for byte; every server must answer exactly this.
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x01\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x01\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02L\x01\x00;"
)


@dataclass(frozen=True)
class Scenario:
    """One line of the table.

    ``server``: nginx | naive (bench/naive_app.py) | raw (bench/raw_app.py) | pixel.
    ``http_server`` (raw and pixel): uvicorn | granian; for pixel it adds ``--server granian``.
    ``store`` (pixel): sqlite (a fresh file) | postgresql (a fresh database on the machine's
    PostgreSQL, bench/pg.py); ``instances`` pixel-server processes on that one database, each
    on its own port, loaded by one wrk with a thread per instance (bench/ports.lua).
    ``pg_cpus``: the cores PostgreSQL's backends for this run are pinned to (None: unpinned).
    ``target="events"``: ``POST /e`` with ``events_per_request`` events of ``content_type``
    in each body (bench/events.lua); every figure per request is also given per event.
    """

    name: str
    server: str
    title: str
    target: str = "pixel"  # pixel: /p.gif?...; signed: /p/<token>.gif; redirect: /r/<token>;
    # events: POST /e
    close: bool = False  # wrk sends `Connection: close`: one request per TCP connection
    serve_args: tuple[str, ...] = ()  # extra `pixel-server serve` arguments
    env: tuple[tuple[str, str], ...] = ()  # extra environment of the server
    http_server: str = "uvicorn"
    server_cpus: str = SERVER_CPUS
    wrk_cpus: str | None = WRK_CPUS  # None: wrk runs unpinned
    script: str | None = None  # a wrk Lua script in bench/
    paced: bool = False  # half of `pixel`'s rps instead of saturation
    extra: bool = False  # informative only: in no target
    note: str = ""
    store: str = "sqlite"
    instances: int = 1
    pg_cpus: str | None = None
    events_per_request: int = 1  # rows stored per answered request
    content_type: str = ""  # of the body (events)

    @property
    def events(self) -> bool:
        """POSTs events to /e (instead of loading a pixel or a redirect)."""
        return self.target == "events"

    @property
    def headers(self) -> dict[str, str]:
        """The headers of every request: an image load's, or an event post's (with the
        page's Origin for a beacon)."""
        if not self.events:
            return HEADERS
        headers = dict(EVENT_HEADERS, **{"Content-Type": self.content_type})
        if self.content_type == BEACON_TYPE:
            headers["Origin"] = BEACON_ORIGIN
        return headers

    @property
    def postgres(self) -> bool:
        return self.store == "postgresql"

    @property
    def baseline(self) -> bool:
        """Not pixel_server: a baseline (nginx, naive app) or an anchor (raw ASGI app)."""
        return self.server != "pixel"

    @property
    def kind(self) -> str:
        return {"pixel": "pixel_server", "raw": "anchor"}.get(self.server, "baseline")

    @property
    def stores(self) -> bool:
        """Whether it keeps the hits (so stored vs answered can be checked)."""
        return self.server != "raw"

    @property
    def frontend(self) -> str:
        """What parses HTTP: nginx, uvicorn or granian."""
        return "nginx" if self.server == "nginx" else self.http_server

    @property
    def mode(self) -> str:
        return "close" if self.close else "keep-alive"

    @property
    def nginx_ref(self) -> str:
        return "nginx-log-close" if self.close else "nginx-log"

    @property
    def naive_ref(self) -> str:
        return "naive-close" if self.close else "naive"

    @property
    def pixel_args(self) -> tuple[str, ...]:
        """Arguments after `pixel-server serve`."""
        server = ("--server", self.http_server) if self.http_server != "uvicorn" else ()
        return (*server, *self.serve_args)


SCENARIOS: list[Scenario] = [
    Scenario("nginx-log", "nginx", "nginx empty_gif + buffered access_log (BASELINE)"),
    Scenario(
        "nginx-log-close",
        "nginx",
        "nginx empty_gif + access_log, Connection: close (BASELINE)",
        close=True,
    ),
    Scenario(
        "naive",
        "naive",
        "naive Starlette app: own aiosqlite connection + commit per hit (BASELINE)",
    ),
    Scenario(
        "naive-close",
        "naive",
        "naive Starlette app, Connection: close (BASELINE)",
        close=True,
    ),
    Scenario(
        "naive-shared",
        "naive",
        "naive app, one shared aiosqlite connection (BASELINE, extra)",
        env=(("NAIVE_MODE", "shared"),),
        extra=True,
        note="one shared aiosqlite connection: its commits cover queued inserts (group commit"
        " by accident); not used for the 5x target",
    ),
    Scenario(
        "raw-asgi",
        "raw",
        "raw ASGI callable, GIF only, nothing stored, uvicorn (ANCHOR)",
        note="ANCHOR: bench/raw_app.py, no framework and no storage: the most any Python app"
        " gets from uvicorn here",
    ),
    Scenario(
        "raw-asgi-granian",
        "raw",
        "raw ASGI callable, GIF only, nothing stored, granian (ANCHOR)",
        http_server="granian",
        note="ANCHOR: the same app on granian: the most any Python ASGI app gets from granian",
    ),
    Scenario("pixel", "pixel", "pixel_server /p.gif"),
    Scenario("pixel-granian", "pixel", "pixel_server /p.gif on granian", http_server="granian"),
    Scenario("pixel-close", "pixel", "pixel_server /p.gif, Connection: close", close=True),
    Scenario(
        "pixel-close-granian",
        "pixel",
        "pixel_server /p.gif on granian, Connection: close",
        close=True,
        http_server="granian",
    ),
    Scenario("redirect", "pixel", "pixel_server signed redirect /r/<token> (302)", "redirect"),
    Scenario(
        "redirect-granian",
        "pixel",
        "pixel_server signed redirect /r/<token> (302) on granian",
        "redirect",
        http_server="granian",
    ),
    Scenario("signed-pixel", "pixel", "pixel_server signed pixel /p/<token>.gif", "signed"),
    Scenario(
        "unique-ua",
        "pixel",
        "pixel_server /p.gif, a never-seen User-Agent per request",
        script="unique_ua.lua",
    ),
    Scenario(
        "events-20",
        "pixel",
        "pixel_server POST /e, 20 events per JSON batch",
        "events",
        script="events.lua",
        events_per_request=20,
        content_type="application/json",
        note="20 events per request (an app's or a back end's batch): events/s = 20 x req/s",
    ),
    Scenario(
        "events-beacon",
        "pixel",
        "pixel_server POST /e, one event as text/plain (sendBeacon)",
        "events",
        script="events.lua",
        content_type=BEACON_TYPE,
    ),
    Scenario(
        "pixel-sync-normal",
        "pixel",
        "pixel_server /p.gif, PIXEL_SQLITE_SYNCHRONOUS=NORMAL (no fsync per commit)",
        env=(("PIXEL_SQLITE_SYNCHRONOUS", "NORMAL"),),
        extra=True,
        note="synchronous=NORMAL: WAL commits are not fsynced (a power loss can undo the last"
        " ones); shows the cost of the default FULL; in no target",
    ),
    Scenario(
        "pixel-2workers",
        "pixel",
        "pixel_server /p.gif, --workers 2 on both cores",
        serve_args=("--workers", "2"),
        server_cpus="0,1",
        wrk_cpus=None,
        note="server on cores 0,1 and wrk unpinned: they share both cores",
    ),
    Scenario(
        "pixel-pg",
        "pixel",
        "pixel_server /p.gif on PostgreSQL",
        store="postgresql",
        pg_cpus=WRK_CPUS,
        note="PostgreSQL: the machine's cluster, a fresh database; its backends for this run"
        " pinned to core 0 with wrk, so core 1 is pixel_server's alone as in `pixel`",
    ),
    Scenario(
        "pixel-pg-2",
        "pixel",
        "two pixel_server instances on one PostgreSQL database",
        store="postgresql",
        instances=2,
        server_cpus="0,1",
        wrk_cpus=None,
        note="two instances (own ports) on cores 0,1, wrk -t2 (a thread per instance) and"
        " PostgreSQL unpinned: everything shares both cores, as in pixel-2workers",
    ),
    Scenario(
        "pixel-p99-at-half",
        "pixel",
        "pixel_server /p.gif at ~50% of `pixel` rps (latency)",
        script="paced.lua",
        paced=True,
        note="paced: rps is the offered load, not a capacity",
    ),
]
BY_NAME = {sc.name: sc for sc in SCENARIOS}
# Throughput scenarios of pixel_server that must beat the naive app 5x in the same mode.
NAIVE_TARGET = [
    sc.name
    for sc in SCENARIOS
    if sc.kind == "pixel_server"
    and not sc.paced
    and not sc.extra
    and not sc.postgres
    and not sc.events  # the naive app has no /e
]


def granian_twin(name: str) -> str | None:
    """The same scenario on granian (``pixel`` -> ``pixel-granian``), if there is one."""
    twin = f"{name}-granian"
    return twin if twin in BY_NAME else None
