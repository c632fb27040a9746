"""Resource bounds of ``serve`` against a real server process: connections, heads, idle time.

Small limits (50 connections, 16 KiB heads, a 2 s head deadline) keep the tests quick. Every
wait is a poll with a generous deadline (the machine may be busy), never a fixed sleep.
"""

from __future__ import annotations

import logging
import re
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import httpx
import pytest

from pixel_server.bounds import FD_RESERVE, Bounds, Refusals
from pixel_server.config import Settings
from pixel_server.responses import GIF

from conftest import ServerProcess, load

pytestmark = pytest.mark.server
SERVERS = pytest.mark.parametrize("kind", ["uvicorn", "granian"])
HEADER_TIMEOUT = 2.0
LIMITS = {
    "PIXEL_MAX_CONNECTIONS": "50",
    "PIXEL_MAX_HEADER_BYTES": "16384",
    "PIXEL_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
}
# how long a bound may take to act on a very busy 2-core machine (the bound itself is 2 s)
DEADLINE = 30.0


def bounded_server(factory: Callable[..., ServerProcess], kind: str) -> ServerProcess:
    return factory(env={**LIMITS, "PIXEL_SERVER": kind})


def closed_by_server(sock: socket.socket, deadline: float) -> bytes:
    """Wait until the server closes ``sock``; return what it sent first (maybe nothing)."""
    sock.settimeout(max(0.1, deadline - time.monotonic()))
    received = b""
    with suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


def status_of(raw: bytes) -> int | None:
    return int(raw.split()[1]) if raw.startswith(b"HTTP/1.1 ") else None


@contextmanager
def idle_sockets(server: ServerProcess, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections that say nothing (every other one half a request head)."""
    with ExitStack() as stack:
        sockets = []
        for i in range(count):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", server.port)))
            if i % 2:
                with suppress(OSError):  # a refused connection may be closed already
                    sock.sendall(b"GET /p.gif?cid=idle HTTP/1.1\r\nHost: x\r\nUser-Ag")
            sockets.append(sock)
        yield sockets


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise KeyError("VmHWM")


def refused(server: ServerProcess, reason: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    line = f'pixel_connections_refused_total{{reason="{reason}"}} '
    return next(float(row[len(line) :]) for row in text.splitlines() if row.startswith(line))


@SERVERS
def test_past_the_connection_limit_others_are_served_or_refused_and_nothing_is_lost(
    server_factory: Callable[..., ServerProcess], kind: str
) -> None:
    """120 idle sockets against a limit of 50: keep-alive clients go on being served, a new
    client is answered (503, or 200 once a slot frees) instead of hanging, the idle sockets are
    closed, and every hit answered 200 is stored."""
    server = bounded_server(server_factory, kind)
    stop = threading.Event()
    acked: list[str] = []
    loader = threading.Thread(target=load, args=(server, 4, stop, "bound", acked))
    loader.start()
    try:
        deadline = time.monotonic() + DEADLINE
        while len(acked) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)  # poll: wait for the load to be under way
        assert len(acked) >= 20
        with idle_sockets(server, 120) as idle:
            served_before = len(acked)
            started = time.monotonic()
            fresh = httpx.get(f"{server.url}/p.gif?cid=fresh", timeout=DEADLINE)
            assert fresh.status_code in (200, 503)
            assert time.monotonic() - started < DEADLINE
            # the server closes every idle socket: refused at once, or after the head deadline
            deadline = time.monotonic() + DEADLINE
            answers = [status_of(closed_by_server(sock, deadline)) for sock in idle]
            assert time.monotonic() < deadline
            assert set(answers) <= {None, 408, 503}
            assert len(acked) > served_before, "keep-alive clients were not served meanwhile"
        after = httpx.get(f"{server.url}/p.gif?cid=after", timeout=DEADLINE)
        assert (after.status_code, after.content) == (200, GIF)
    finally:
        stop.set()
        loader.join(60)
    assert server.stop() == 0
    stored = {eid for (eid,) in server.rows("SELECT eid FROM hits WHERE cid = 'load'")}
    assert set(acked) <= stored
    if kind == "uvicorn":
        assert 503 in answers  # 70 over the limit were refused with a 503 ...
        # ... and logged once (twice if this test ran past the 60 s report interval)
        assert server.log.read_text().count("refusing connections") in (1, 2)


def test_refusals_are_counted_in_metrics(server_factory: Callable[..., ServerProcess]) -> None:
    """uvicorn counts each bound's refusals in pixel_connections_refused_total{reason}."""
    server = bounded_server(server_factory, "uvicorn")
    with idle_sockets(server, 60) as idle:
        deadline = time.monotonic() + DEADLINE
        for sock in idle:
            closed_by_server(sock, deadline)
    assert refused(server, "max_connections") >= 10
    assert refused(server, "header_timeout") >= 1
    assert refused(server, "header_too_large") == 0


@SERVERS
def test_a_connection_that_never_sends_a_whole_head_is_closed(
    server_factory: Callable[..., ServerProcess], kind: str
) -> None:
    """Silent, half-sent and dripping connections are all closed after the head deadline."""
    server = bounded_server(server_factory, kind)
    with (
        idle_sockets(server, 2) as (silent, half),
        socket.create_connection(("127.0.0.1", server.port)) as drip,
    ):
        started = time.monotonic()
        deadline = started + DEADLINE
        request = b"GET /p.gif?cid=drip HTTP/1.1\r\nHost: x\r\n\r\n"
        sent = 0
        with suppress(OSError):  # broken pipe / reset: the server closed it
            for sent in range(len(request)):
                drip.sendall(request[sent : sent + 1])
                drip.settimeout(0.25)  # one byte every 0.25 s: a 42-byte head takes 10 s
                with suppress(TimeoutError):
                    answer = drip.recv(64)
                    # closed, or answered before the head was complete: cut off either way
                    # (reading on after the 408 races the server's close against our sends)
                    assert b"HTTP/1.1 408".startswith(answer[:12]), answer  # or b""
                    break
        assert sent < len(request) - 1, "the dripping client was never cut off"
        for sock in (silent, half):
            assert status_of(closed_by_server(sock, deadline)) in (None, 408)
        # none closed before the deadline (minus a tolerance for the timer's granularity)
        assert time.monotonic() - started >= HEADER_TIMEOUT - 0.5
    assert server.rows("SELECT count(*) FROM hits WHERE cid IN ('idle', 'drip')") == [(0,)]


@SERVERS
def test_a_kept_alive_connection_that_sends_only_empty_lines_is_closed(
    server_factory: Callable[..., ServerProcess], kind: str
) -> None:
    """After a response, CRLFs every 0.25 s (each cancels uvicorn's keep-alive timer) do not
    keep the connection open past the head deadline."""
    server = bounded_server(server_factory, kind)
    with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as sock:
        sock.sendall(b"GET /p.gif?cid=keep HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while not received.endswith(GIF):
            received += sock.recv(4096)
        deadline = time.monotonic() + DEADLINE
        with suppress(OSError):  # broken pipe / reset: the server closed it
            while time.monotonic() < deadline:
                sock.sendall(b"\r\n")
                sock.settimeout(0.25)  # paces the CRLFs and notices the close
                with suppress(TimeoutError):
                    if sock.recv(4096) == b"":
                        break
        closed = time.monotonic() < deadline
        assert closed, "the connection was held open by empty lines"


@SERVERS
def test_a_huge_header_is_refused_without_buffering_it(
    server_factory: Callable[..., ServerProcess], kind: str
) -> None:
    """Eight 100 MB User-Agent headers at once: each gets a 431 (or is cut off), memory stays
    within a few MB, and a normal request is served afterwards."""
    server = bounded_server(server_factory, kind)
    before = peak_rss_kb(server.proc.pid)
    answers: list[int | None] = []

    def attack() -> None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as sock:
            chunk = b"A" * (1 << 20)
            with suppress(OSError):  # broken pipe / reset once the server refuses it
                sock.sendall(b"GET /p.gif?cid=huge HTTP/1.1\r\nHost: x\r\nUser-Agent: ")
                for _ in range(100):
                    sock.sendall(chunk)
            answers.append(status_of(closed_by_server(sock, time.monotonic() + DEADLINE)))

    threads = [threading.Thread(target=attack) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE * 2)
    assert len(answers) == 8
    assert set(answers) <= {431, None}
    assert 431 in answers
    # 8 x 16 KiB could be held at once, plus read buffers; 896 MB without the bound
    assert peak_rss_kb(server.proc.pid) - before < 64 * 1024
    response = httpx.get(f"{server.url}/p.gif?cid=after", timeout=DEADLINE)
    assert (response.status_code, response.content) == (200, GIF)
    assert server.rows("SELECT count(*) FROM hits WHERE cid = 'huge'") == [(0,)]
    if kind == "uvicorn":
        assert refused(server, "header_too_large") >= 1


def test_a_head_just_under_the_limit_is_served(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """The bound is the documented one: a 15 KB User-Agent under a 16 KiB limit is a hit."""
    server = bounded_server(server_factory, "uvicorn")
    response = httpx.get(
        f"{server.url}/p.gif?cid=big", headers={"user-agent": "A" * 15_000}, timeout=DEADLINE
    )
    assert (response.status_code, response.content) == (200, GIF)
    assert server.rows("SELECT length(ua) FROM hits WHERE cid = 'big'") == [(512,)]


@SERVERS
def test_a_whole_head_over_the_limit_in_one_read_is_refused(
    server_factory: Callable[..., ServerProcess], kind: str
) -> None:
    """A complete 20 KB head sent at once (parsed in one read) gets 431 and is not a hit."""
    server = bounded_server(server_factory, kind)
    head = b"GET /p.gif?cid=whole HTTP/1.1\r\nHost: x\r\nX-Big: " + b"A" * 20_000 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as sock:
        with suppress(OSError):  # reset once the server refuses the head
            sock.sendall(head)
        assert status_of(closed_by_server(sock, time.monotonic() + DEADLINE)) in (431, None)
    ok = httpx.get(f"{server.url}/p.gif?cid=after", timeout=DEADLINE)
    assert ok.status_code == 200  # the server is fine, and the refused head stored nothing
    assert server.rows("SELECT cid FROM hits") == [("after",)]


def pipelined_head(cid: str, pad: int) -> bytes:
    return f"GET /p.gif?cid={cid} HTTP/1.1\r\nHost: x\r\nX-Pad: {'A' * pad}\r\n\r\n".encode()


@SERVERS
def test_pipelined_heads_are_each_measured_alone(
    server_factory: Callable[..., ServerProcess], kind: str
) -> None:
    """Three 10 KB heads sent in one write (30 KB together, over the 16 KiB limit) are each
    served; a small request then a 20 KB head in one write: the small one is answered, then
    the big one gets its 431, and it is not stored."""
    server = bounded_server(server_factory, kind)
    with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as sock:
        sock.sendall(b"".join(pipelined_head(f"p{i}", 10_000) for i in range(3)))
        received = b""
        while received.count(GIF) < 3:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {received.count(GIF)} answers"
            received += chunk
        assert [status_of(part) for part in received.split(GIF)[:3]] == [200, 200, 200]
    with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as sock:
        with suppress(OSError):  # reset once the server refuses the head
            sock.sendall(pipelined_head("small", 10) + pipelined_head("big", 20_000))
        answer = closed_by_server(sock, time.monotonic() + DEADLINE)
    statuses = [int(s) for s in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]
    assert statuses == [200, 431][: len(statuses)]  # in order; a reset may cut them short
    stored = {cid for (cid,) in server.rows("SELECT cid FROM hits")}
    assert stored == {"p0", "p1", "p2", "small"}


def test_worker_processes_enforce_the_same_bounds(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """With PIXEL_WORKERS=2 the bounds travel with uvicorn's config to each worker process."""
    server = server_factory(env={**LIMITS, "PIXEL_WORKERS": "2"})
    statuses = set()
    for _ in range(4):  # the kernel spreads connections over both workers
        with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as sock:
            with suppress(OSError):  # reset once the server refuses the head
                sock.sendall(b"GET /p.gif HTTP/1.1\r\nHost: x\r\nX-Big: " + b"A" * 100_000)
            statuses.add(status_of(closed_by_server(sock, time.monotonic() + DEADLINE)))
    assert statuses <= {431, None}
    assert 431 in statuses


# --- without a server -----------------------------------------------------------------------------


def test_the_connection_limit_stays_below_the_file_descriptor_limit(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    """PIXEL_MAX_CONNECTIONS above what the fd limit allows is lowered, with a warning."""
    with caplog.at_level(logging.WARNING, logger="pixel_server.bounds"):
        bounds = Bounds.from_settings(make_settings(max_connections=5000), fd_limit=1024)
    assert bounds.max_connections == 1024 - FD_RESERVE
    assert "PIXEL_MAX_CONNECTIONS=5000" in caplog.text
    assert Bounds.from_settings(make_settings(max_connections=50), 1024).max_connections == 50


def test_serve_raises_the_soft_file_descriptor_limit_to_the_hard_one() -> None:
    """A process started with a low soft limit runs with the hard limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    code = (
        "import resource; from pixel_server.bounds import raise_fd_limit\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(7)[1]))\n"
        "print(raise_fd_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    expected = hard if hard != resource.RLIM_INFINITY else 1 << 20
    assert out.stdout.split() == [str(expected)] * 2


def test_refusals_are_logged_at_most_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    """A flood of refusals writes one line per interval, with the counts since the last one."""
    now = [0.0]
    refusals = Refusals(interval=60, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="pixel_server.bounds"):
        for second in range(120):
            now[0] = float(second)
            for _ in range(100):
                refusals.refuse("max_connections")
    assert len(caplog.records) == 2
    assert "1 max_connections" in caplog.records[0].getMessage()  # the first, at once
    assert "6000 max_connections" in caplog.records[1].getMessage()
    assert refusals.counts["max_connections"] == 12_000
