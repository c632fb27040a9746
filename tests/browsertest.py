"""A real browser for the tests: Debian's headless chromium driven by Playwright, and a web
site on another origin whose pages load ``/t.js`` from a real server.

Needs chromium (Debian package ``chromium``, ``/usr/bin/chromium``). Without it the browser
tests skip, unless PIXEL_REQUIRE_BROWSER=1 (set by .ci/run, which installs it), where they
fail instead. Playwright's own browser download is never used.
"""

from __future__ import annotations

import html
import itertools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Request, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
# Deadline for something the browser or the server must do eventually (a batch is sent
# after 1 s, a retry after a few): generous, it only turns a hang into a clear failure.
EVENT_DEADLINE = 60.0
POLL = 50  # ms between looks; Playwright handles the page's requests while it waits


def require() -> None:
    """Return if chromium is here; else skip (fail with PIXEL_REQUIRE_BROWSER=1)."""
    if CHROMIUM.exists():
        return
    if os.environ.get("PIXEL_REQUIRE_BROWSER") == "1":
        pytest.fail(f"chromium is required (PIXEL_REQUIRE_BROWSER=1) but {CHROMIUM} is missing")
    pytest.skip(
        f"chromium is not installed ({CHROMIUM}: apt-get install chromium);"
        " set PIXEL_REQUIRE_BROWSER=1 to fail"
    )


@contextmanager
def chromium() -> Iterator[Browser]:
    require()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield browser
        finally:
            browser.close()


class _Pages(BaseHTTPRequestHandler):
    server: Site

    def do_GET(self) -> None:
        body = self.server.pages.get(self.path.partition("?")[0])
        if body is None:
            self.send_error(404)
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test output shows failures, not every page fetched


class Site(ThreadingHTTPServer):
    """The web site that embeds the tracker: pages registered by path, served from
    ``http://localhost:<port>`` while the tracker comes from ``http://127.0.0.1:<port>``, so
    that its calls are cross-origin (and cross-site) as in production."""

    daemon_threads = True

    def __init__(self, tracker_url: str) -> None:
        super().__init__(("127.0.0.1", 0), _Pages)
        self.tracker_url = tracker_url
        self.pages: dict[str, str] = {}
        self._folders = itertools.count(1)
        self._paths = itertools.count(1)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def origin(self) -> str:
        return f"http://localhost:{self.server_address[1]}"

    def folder(self) -> str:
        """A new folder's URL, for one test's pages: the rows of a test are those of its
        folder (:meth:`ServerEvents.rows`)."""
        return f"{self.origin}/f{next(self._folders)}/"

    def add(self, folder: str, body: str = "", *, head: str = "", **attrs: str) -> str:
        """A new page in ``folder`` that loads the tracker (``attrs`` become its ``data-*``
        attributes, e.g. ``spa="history"``) after ``head`` and with ``body``; its URL."""
        path = f"{folder.removeprefix(self.origin)}{next(self._paths)}"
        options = "".join(f' data-{k}="{html.escape(v)}"' for k, v in attrs.items())
        self.pages[path] = (
            f"<!doctype html><html><head><meta charset=utf-8><title>{path}</title>{head}"
            f'<script async src="{self.tracker_url}/t.js"{options}></script>'
            f"</head><body>{body}</body></html>"
        )
        return self.origin + path

    def close(self) -> None:
        self.shutdown()
        self.server_close()


@dataclass
class Posts:
    """Every ``POST /e`` a page made (fetch and sendBeacon), as the browser sent it."""

    endpoint: str
    requests: list[Request] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        page.on("request", self._seen)

    def _seen(self, request: Request) -> None:
        if request.method == "POST" and request.url == self.endpoint:
            self.requests.append(request)

    def batches(self) -> list[list[dict[str, Any]]]:
        return [json.loads(request.post_data or "null") for request in self.requests]

    def events(self) -> list[dict[str, Any]]:
        """The events sent, each once (a retry sends the same eid again), in order."""
        seen: dict[str, dict[str, Any]] = {}
        for batch in self.batches():
            for event in batch:
                seen.setdefault(event["eid"], event)
        return list(seen.values())


# the columns an event's members go to (docs/events.md); ESCAPE: a folder's _ is literal
EVENTS_UNDER = (
    "SELECT event, eid, sid, uid, seq, url, ref, utm_source, utm_medium, utm_campaign,"
    " utm_term, utm_content, utm_id, params FROM hits"
    " WHERE kind = 'event' AND url LIKE ? ESCAPE '\\' ORDER BY id"
)


@dataclass
class ServerEvents:
    """The event rows a real server stored, read from its SQLite file."""

    db: Path

    def rows(self, url_prefix: str) -> list[dict[str, Any]]:
        """Stored events of pages under ``url_prefix``, oldest first, params decoded."""
        pattern = url_prefix.replace("%", r"\%").replace("_", r"\_") + "%"
        with closing(sqlite3.connect(self.db)) as conn:
            conn.row_factory = sqlite3.Row
            found = conn.execute(EVENTS_UNDER, (pattern,)).fetchall()
        rows = [dict(row) for row in found]
        for row in rows:
            row["params"] = json.loads(row["params"] or "{}")
        return rows


def wait_for(page: Page | None, condition: Callable[[], Any], what: str) -> Any:
    """Poll ``condition`` until it returns something true, and return that. While ``page``
    is open, wait through it so that Playwright goes on serving the page's routes."""
    deadline = time.monotonic() + EVENT_DEADLINE
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what}: not within {EVENT_DEADLINE:.0f} s"
        if page is not None and not page.is_closed():
            page.wait_for_timeout(POLL)
        else:
            time.sleep(POLL / 1000)


def module_fixtures(name: str) -> tuple[Any, Any, Any]:
    """The module-scoped ``browser``, ``server`` (a real ``pixel-server serve``, its data in a
    folder named ``name``) and ``site`` (another origin) fixtures of a browser test module:
    ``browser, server, site = module_fixtures("tracker")``."""
    from conftest import ServerProcess, start_server

    @pytest.fixture(scope="module")
    def browser() -> Iterator[Browser]:
        with chromium() as browser:
            yield browser

    @pytest.fixture(scope="module")
    def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
        server = start_server(tmp_path_factory.mktemp(name))
        yield server
        server.stop()

    @pytest.fixture(scope="module")
    def site(server: ServerProcess) -> Iterator[Site]:
        site = Site(server.url)
        yield site
        site.close()

    return browser, server, site
