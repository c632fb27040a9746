"""t.js in a real browser: headless chromium on pages of another origin, against a real
``pixel-server serve`` whose SQLite file is read to see what was stored.

Every test waits on events (rows stored, requests seen), never for a fixed time; each page has
a path of its own, so a test reads only its own rows. A test that needs an event to be last
tracks a ``done`` event after it: the tracker sends in order, one batch at a time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route

from pixel_server.events import Rules, check_event

from browsertest import Posts, ServerEvents, Site, module_fixtures, wait_for
from conftest import ServerProcess, start_server

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
DEVICE = {"screen", "viewport", "lang", "tz"}
STORAGE = "[localStorage.length, sessionStorage.length, document.cookie]"
# init scripts: storage access that throws (blocked cookies), writes that throw (Safari's
# private mode)
BLOCKED = (
    "for (const name of ['localStorage', 'sessionStorage'])"
    "  Object.defineProperty(window, name, {get() {"
    "    throw new DOMException('blocked', 'SecurityError'); }});"
)
FULL = (
    "Storage.prototype.setItem = function () {"
    "  throw new DOMException('full', 'QuotaExceededError'); };"
)


browser, server, site = module_fixtures("tracker")


class Visitor:
    """One browser profile (its own storage) visiting pages of its own folder of the site;
    remembers every POST /e its pages made and fails the test on any uncaught page error."""

    def __init__(self, context: BrowserContext, server: ServerProcess, site: Site) -> None:
        self.context = context
        self.site = site
        self.folder = site.folder()
        self.posts = Posts(f"{server.url}/e")
        self.stored = ServerEvents(server.db)
        self.errors: list[str] = []

    def page(self, body: str = "", *, head: str = "", **attrs: str) -> str:
        """A new page of this visitor's folder (Site.add); its URL."""
        return self.site.add(self.folder, body, head=head, **attrs)

    def open(self, url: str, init_script: str = "") -> Page:
        page = self.context.new_page()
        if init_script:
            page.add_init_script(init_script)
        self.posts.watch(page)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.goto(url)
        return page

    def rows(self, page: Page | None, count: int) -> list[dict[str, Any]]:
        """Wait until at least ``count`` events of this visitor's pages are stored."""

        def enough() -> list[dict[str, Any]] | None:
            rows = self.stored.rows(self.folder)
            return rows if len(rows) >= count else None

        rows: list[dict[str, Any]] = wait_for(page, enough, f"{count} events stored")
        return rows

    def until_done(self, page: Page) -> list[dict[str, Any]]:
        """Track a ``done`` event and wait for it; return the rows stored before it, without
        the ``done`` rows. The tracker sends in order, so this is all the page sent before."""
        before = names(self.stored.rows(self.folder)).count("done")
        page.evaluate("pixel('track', 'done')")

        def done() -> list[dict[str, Any]] | None:
            rows = self.stored.rows(self.folder)
            return rows if names(rows).count("done") > before else None

        rows: list[dict[str, Any]] = wait_for(page, done, "done stored")
        return [row for row in rows if row["event"] != "done"]


@pytest.fixture
def visitor(
    browser: Browser, server: ServerProcess, site: Site
) -> Iterator[Callable[..., Visitor]]:
    """Factory: a new visitor (a fresh browser context; ``options`` go to new_context)."""
    made: list[Visitor] = []

    def make(**options: Any) -> Visitor:
        made.append(Visitor(browser.new_context(**options), server, site))
        return made[-1]

    yield make
    for v in made:
        # a route handler must not outlive its context (it would fail the next test)
        v.context.unroute_all(behavior="ignoreErrors")
        v.context.close()
    assert [error for v in made for error in v.errors] == []


def names(rows: list[dict[str, Any]]) -> list[str]:
    return [row["event"] for row in rows]


def forward(route: Route) -> str:
    """Send an intercepted request on to the server, answer the page with the server's
    answer, and return its body (Playwright cannot read a keepalive fetch's answer)."""
    real = route.fetch()
    body = real.text()
    route.fulfill(status=real.status, headers=real.headers, body=body)
    return body


def test_a_page_view_is_stored_with_the_device_context(
    visitor: Callable[..., Visitor],
) -> None:
    """Loading a page stores one page_view with its URL, referrer and device context."""
    v = visitor(
        viewport={"width": 800, "height": 600},
        screen={"width": 1920, "height": 1080},
        locale="de-DE",
        timezone_id="Europe/Berlin",
    )
    url = v.page()
    page = v.open(url)
    [row] = v.rows(page, 1)
    assert row["event"] == "page_view"
    assert row["url"] == url
    assert row["params"] == {
        "screen": "1920x1080",
        "viewport": "800x600",
        "lang": "de-DE",
        "tz": "Europe/Berlin",
    }
    assert row["seq"] == 1
    assert row["sid"]
    assert row["uid"]
    assert row["sid"] != row["uid"]


def test_every_event_sent_meets_the_contract(visitor: Callable[..., Visitor]) -> None:
    """What t.js posts is a text/plain JSON array of events that pixel_server.events accepts
    as they are, each with a random UUID eid, through fetch (no preflight)."""
    v = visitor()
    url = v.page('<button data-track="add_to_cart" data-track-sku="s1">add</button>')
    page = v.open(url + "?utm_source=newsletter")
    page.click("button")
    page.evaluate("pixel('track', 'odd_params', {nested: {a: 1}, nan: NaN, big: 2 ** 60})")
    v.until_done(page)
    assert v.posts.requests
    for request in v.posts.requests:
        assert request.headers["content-type"].startswith("text/plain")
        assert request.resource_type == "fetch"
    events = v.posts.events()
    assert [e["name"] for e in events] == ["page_view", "add_to_cart", "odd_params", "done"]
    for event in events:
        checked = check_event(event, Rules())
        assert not hasattr(checked, "reason"), (event, checked)
    assert all(re.fullmatch(UUID, e["eid"]) for e in events)
    odd = events[2]["params"]
    assert (odd["nested"], odd["nan"], odd["big"]) == ('{"a":1}', None, "1152921504606847000")


def test_utm_values_of_the_landing_url_stay_for_the_session(
    visitor: Callable[..., Visitor],
) -> None:
    """UTM values of the landing URL go with every event, also on the next page, which has
    none; a landing URL with other UTM values replaces them."""
    v = visitor()
    second = v.page()
    first = v.page(f'<a href="{second}">next</a>')
    page = v.open(first + "?utm_source=newsletter&utm_medium=email&utm_campaign=spring&x=1")
    v.rows(page, 1)
    page.click("a")
    page.wait_for_url(second)
    rows = v.until_done(page)
    assert [(r["event"], r["url"].partition("?")[0]) for r in rows] == [
        ("page_view", first),
        ("page_view", second),
    ]
    for row in rows:
        utm = (row["utm_source"], row["utm_medium"], row["utm_campaign"], row["utm_term"])
        assert utm == ("newsletter", "email", "spring", None)
    assert rows[1]["ref"] == rows[0]["url"]
    assert rows[0]["sid"] == rows[1]["sid"]
    page.goto(second + "?utm_source=ads")
    [again] = v.until_done(page)[2:]
    assert (again["utm_source"], again["utm_medium"]) == ("ads", None)


def test_clicks_on_data_track_elements_are_events_with_their_parameters(
    visitor: Callable[..., Visitor],
) -> None:
    """A click anywhere inside a [data-track] element sends its name and data-track-* values,
    also when a handler stops the click's propagation; other clicks send nothing."""
    v = visitor()
    url = v.page(
        '<div data-track="product_list">'
        '<button id="add" data-track="add_to_wishlist" data-track-product-id="p1"'
        ' data-track-list="summer" onclick="event.stopPropagation()"><b>Add</b></button>'
        "</div><p id=plain>plain text</p>"
    )
    page = v.open(url)
    v.rows(page, 1)
    page.click("#add b")
    page.click("#plain")
    rows = v.until_done(page)
    assert names(rows) == ["page_view", "add_to_wishlist"]
    assert rows[1]["params"] == {
        **{k: rows[0]["params"][k] for k in DEVICE},
        "product_id": "p1",
        "list": "summer",
    }


def test_calls_queued_before_the_script_loads_are_sent_in_order(
    visitor: Callable[..., Visitor],
) -> None:
    """pixelq entries pushed before t.js ran are replayed in order (before the page view);
    afterwards pixelq.push sends at once."""
    v = visitor()
    url = v.page(
        head="<script>window.pixelq = window.pixelq || [];"
        "pixelq.push(['track', 'video_started', {video_id: 'v1'}]);"
        "pixelq.push(['track', 'video_paused', {video_id: 'v1', at: 3.5}]);</script>"
    )
    page = v.open(url)
    v.rows(page, 3)
    page.evaluate("pixelq.push(['track', 'video_ended', {video_id: 'v1'}])")
    rows = v.until_done(page)
    assert names(rows) == ["video_started", "video_paused", "page_view", "video_ended"]
    assert [r["seq"] for r in rows] == [1, 2, 3, 4]
    assert rows[1]["params"]["at"] == 3.5
    assert rows[0]["params"]["video_id"] == "v1"


def test_history_route_changes_are_page_views_with_data_spa(
    visitor: Callable[..., Visitor],
) -> None:
    """With data-spa="history", pushState and popstate to another URL are page views with
    the previous URL as ref; replaceState to the same URL is not."""
    v = visitor()
    url = v.page(spa="history")
    page = v.open(url)
    v.rows(page, 1)
    page.evaluate("history.pushState({}, '', '?step=2')")
    page.evaluate("history.replaceState({n: 1}, '', '?step=2')")
    page.evaluate("history.back()")
    page.wait_for_url(url)
    rows = v.until_done(page)
    assert [(r["event"], r["url"], r["ref"]) for r in rows] == [
        ("page_view", url, None),
        ("page_view", url + "?step=2", url),
        ("page_view", url, url + "?step=2"),
    ]


def test_route_changes_are_not_page_views_without_data_spa(
    visitor: Callable[..., Visitor],
) -> None:
    """Without data-spa, history calls are the page's business: one page view per load."""
    v = visitor()
    url = v.page()
    page = v.open(url)
    v.rows(page, 1)
    page.evaluate("history.pushState({}, '', '?step=2')")
    assert names(v.until_done(page)) == ["page_view"]


def test_seq_counts_the_events_of_a_session_across_pages(
    visitor: Callable[..., Visitor],
) -> None:
    """seq is 1, 2, 3 ... within a session (a tab), across page loads; another tab of the
    same visitor is a new session (sid, seq from 1) with the same uid."""
    v = visitor()
    url = v.page()
    page = v.open(url)
    v.rows(page, 1)
    page.evaluate("pixel('track', 'a'); pixel('track', 'b')")
    page.reload()
    rows = v.until_done(page)
    assert names(rows) == ["page_view", "a", "b", "page_view"]
    assert [r["seq"] for r in rows] == [1, 2, 3, 4]
    assert len({r["sid"] for r in rows}) == 1
    other = v.open(url)
    [tab] = v.until_done(other)[len(rows) :]
    assert tab["seq"] == 1
    assert tab["sid"] != rows[0]["sid"]
    assert tab["uid"] == rows[0]["uid"]


def test_debounced_events_keep_only_the_last_of_a_burst(
    visitor: Callable[..., Visitor],
) -> None:
    """{debounce: ms} sends only the last call of a burst of one event name."""
    v = visitor()
    url = v.page()
    page = v.open(url)
    burst = "pixel('track', 'scroll_depth', {percent: p}, {debounce: 300})"
    page.evaluate(f"for (const p of [25, 50, 75]) {burst}")
    wait_for(page, lambda: "scroll_depth" in names(v.stored.rows(v.folder)), "scroll_depth")
    rows = v.until_done(page)
    assert [r["params"]["percent"] for r in rows if r["event"] == "scroll_depth"] == [75]


def test_events_pending_when_the_page_goes_away_are_sent_with_sendbeacon(
    visitor: Callable[..., Visitor],
) -> None:
    """Events still queued when the page is closed or navigated away from arrive through
    sendBeacon: here fetch never answers, so only a beacon can deliver them."""
    v = visitor()
    url = v.page()
    hung = "window.fetch = () => new Promise(() => {});"
    closed = v.open(url, hung)
    closed.evaluate("pixel('track', 'closing', {n: 1})")
    closed.close(run_before_unload=True)
    left = v.open(url, hung)
    left.evaluate("pixel('track', 'leaving', {n: 2})")
    left.goto("about:blank")
    rows = v.rows(None, 4)
    assert sorted(names(rows)) == ["closing", "leaving", "page_view", "page_view"]
    assert {r["sid"] for r in rows} == {r["sid"] for r in rows if r["event"] == "page_view"}
    assert {r.resource_type for r in v.posts.requests} <= {"ping"}


def test_a_503_is_retried_with_the_same_eids_and_stored_once(
    visitor: Callable[..., Visitor], server: ServerProcess
) -> None:
    """A batch answered 503 (once before the server saw it, once after it stored it) is sent
    again with the same eids: each event is stored exactly once."""
    v = visitor()
    answers: list[str] = []

    def flaky(route: Route) -> None:
        headers = {"access-control-allow-origin": "*", "retry-after": "1"}
        headers["access-control-expose-headers"] = "retry-after"
        if not answers:
            answers.append("503 before storing")
            route.fulfill(status=503, headers=headers, body="{}")
            return
        if len(answers) > 2:
            route.continue_()
        elif len(answers) == 1:  # stored, but the browser is told 503
            answers.append(route.fetch().text())
            route.fulfill(status=503, headers=headers, body="{}")
        else:
            answers.append(forward(route))

    v.context.route(f"{server.url}/e", flaky)
    url = v.page()
    page = v.open(url)
    page.evaluate("pixel('track', 'checkout', {step: 1})")
    wait_for(page, lambda: len(answers) >= 3, "three answers")
    batches = v.posts.batches()
    assert [[e["eid"] for e in b] for b in batches[:3]] == [[e["eid"] for e in batches[0]]] * 3
    assert json.loads(answers[1])["accepted"] == len(batches[0])
    assert json.loads(answers[2])["duplicates"] == len(batches[0])
    rows = v.until_done(page)
    assert sorted(names(rows)) == ["checkout", "page_view"]
    assert len({r["eid"] for r in rows}) == 2


@pytest.mark.parametrize("storage", [BLOCKED, FULL], ids=["blocked", "quota"])
def test_storage_that_throws_does_not_stop_events(
    visitor: Callable[..., Visitor], storage: str
) -> None:
    """With storage access throwing (blocked cookies) or every write throwing (Safari's
    private mode), t.js neither throws nor stops: events are sent, with identifiers kept in
    memory for the page."""
    v = visitor()
    url = v.page('<button data-track="buy">buy</button>')
    page = v.open(url, storage)
    page.click("button")
    rows = v.until_done(page)
    assert names(rows) == ["page_view", "buy"]
    assert rows[0]["sid"] == rows[1]["sid"]
    assert rows[0]["uid"]
    assert [r["seq"] for r in rows] == [1, 2]


@pytest.mark.parametrize(
    "signal",
    [
        "Object.defineProperty(Navigator.prototype, 'doNotTrack', {get: () => '1'});",
        "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true});",
    ],
    ids=["dnt", "gpc"],
)
def test_dnt_or_gpc_stores_nothing_and_sends_no_identifier(
    visitor: Callable[..., Visitor], signal: str
) -> None:
    """With Do Not Track or Global Privacy Control, events are still counted but carry no
    sid, uid or seq, and nothing is left in localStorage, sessionStorage or cookies, not
    even after pixel('consent', true) or what an earlier visit stored."""
    v = visitor()
    second = v.page('<button data-track="buy">buy</button>')
    first = v.page(f'<a href="{second}">next</a>')
    earlier = v.open(first)
    v.rows(earlier, 1)
    assert earlier.evaluate("localStorage.length") == 1
    earlier.close()
    page = v.open(first + "?utm_source=newsletter", signal)
    page.evaluate("pixel('consent', true); pixel('track', 'consented')")
    page.click("a")
    page.wait_for_url(second)
    page.click("button")
    rows = v.until_done(page)[1:]
    assert names(rows) == ["page_view", "consented", "page_view", "buy"]
    for row in rows:
        assert (row["sid"], row["uid"], row["seq"]) == (None, None, None)
    assert page.evaluate(STORAGE) == [0, 0, ""]
    assert rows[1]["utm_source"] == "newsletter"


def test_consent_required_waits_for_consent_and_withdrawal_clears(
    visitor: Callable[..., Visitor],
) -> None:
    """With data-consent="required", events are anonymous and nothing is stored until
    pixel('consent', true); then identifiers are sent and remembered across pages, until
    pixel('consent', false) clears them."""
    v = visitor()
    url = v.page(consent="required")
    page = v.open(url)
    v.rows(page, 1)
    assert page.evaluate(STORAGE) == [0, 0, ""]
    page.evaluate("pixel('consent', true); pixel('track', 'after_consent')")
    page.reload()
    page.evaluate("pixel('consent', false); pixel('track', 'after_withdrawal')")
    rows = v.until_done(page)
    assert names(rows) == ["page_view", "after_consent", "page_view", "after_withdrawal"]
    ids = [(r["sid"] is not None, r["uid"] is not None, r["seq"]) for r in rows]
    assert ids == [(False, False, None), (True, True, 1), (True, True, 2), (False, False, None)]
    assert rows[1]["uid"] == rows[2]["uid"]
    assert page.evaluate(STORAGE) == [0, 0, ""]


def test_events_that_could_not_be_sent_are_sent_on_the_next_page_load(
    visitor: Callable[..., Visitor], server: ServerProcess
) -> None:
    """Offline (every post fails, no beacon), events wait in localStorage; the next page
    load sends them with their eids."""
    v = visitor()
    url = v.page()
    offline = "navigator.sendBeacon = () => false;"
    v.context.route(f"{server.url}/e", lambda route: route.abort("internetdisconnected"))
    page = v.open(url, offline)
    page.evaluate("pixel('track', 'offline_event')")
    wait_for(page, lambda: len(v.posts.requests) >= 2, "a retry")
    waiting = page.evaluate("JSON.parse(localStorage.pixel).q.map((i) => i.e.eid)")
    assert len(waiting) == 2
    page.close()
    v.context.unroute(f"{server.url}/e")
    back = v.open(url)
    rows = v.until_done(back)
    assert names(rows) == ["page_view", "offline_event", "page_view"]
    assert [r["eid"] for r in rows[:2]] == waiting
    # the rows are stored before the browser reads the answer: wait for the tracker to read it
    wait_for(back, lambda: back.evaluate("JSON.parse(localStorage.pixel).q.length") == 0, "q")


def test_the_tracker_never_throws_into_the_page(
    visitor: Callable[..., Visitor],
) -> None:
    """Odd calls are ignored, not thrown; without crypto.randomUUID ids are still UUIDs."""
    v = visitor()
    url = v.page()
    page = v.open(url, "delete Crypto.prototype.randomUUID;")
    page.evaluate(
        "pixel('no_such_command'); pixel(); pixelq.push(5, null, ['track']);"
        " pixel('track', 'fine', {circular: (() => { const o = {}; o.o = o; return o; })()});"
        " pixel('track', 'fine_too', {f: () => 1, s: Symbol('x'), u: undefined})"
    )
    rows = v.until_done(page)
    assert names(rows) == ["page_view", "fine_too"]
    assert all(re.fullmatch(UUID, r[k]) for r in rows for k in ("eid", "sid", "uid"))
    assert "u" not in rows[1]["params"]
    assert rows[1]["params"]["s"] == "Symbol(x)"


def test_the_offline_queue_keeps_the_newest_100_events(
    visitor: Callable[..., Visitor], server: ServerProcess
) -> None:
    """Offline, at most 100 events wait in localStorage: the newest ones."""
    v = visitor()
    v.context.route(f"{server.url}/e", lambda route: route.abort("internetdisconnected"))
    page = v.open(v.page(), "navigator.sendBeacon = () => false;")
    page.evaluate("for (let i = 0; i < 150; i++) pixel('track', 'tick', {i: i})")
    kept = page.evaluate("JSON.parse(localStorage.pixel).q.map((item) => item.e.params.i)")
    assert kept == list(range(50, 150))


def test_a_burst_is_sent_in_batches_of_at_most_20(
    visitor: Callable[..., Visitor],
) -> None:
    """A burst of 45 events is sent whole and in order, no request carrying more than 20."""
    v = visitor()
    page = v.open(v.page())
    page.evaluate("for (let i = 0; i < 45; i++) pixel('track', 'tick', {i: i})")
    rows = v.until_done(page)
    assert [r["params"].get("i") for r in rows if r["event"] == "tick"] == list(range(45))
    assert max(len(batch) for batch in v.posts.batches()) <= 20


def test_data_endpoint_overrides_where_events_go(
    visitor: Callable[..., Visitor], server: ServerProcess
) -> None:
    """Events go to data-endpoint when it is set, not to the script's own origin."""
    v = visitor()
    other = f"http://localhost:{server.port}/e"
    v.posts.endpoint = other
    page = v.open(v.page(endpoint=other))
    assert names(v.until_done(page)) == ["page_view"]
    assert {r.url for r in v.posts.requests} == {other}


def test_the_registry_of_docs_tracker_md_takes_the_page_view(
    browser: Browser, tmp_path: Path
) -> None:
    """The event registry shown in docs/tracker.md admits the tracker's page view with its
    device params; a name it does not list is rejected, so the registry is in force."""
    docs = (Path(__file__).parent.parent / "docs" / "tracker.md").read_text()
    [registry] = re.findall(r"```json\n(.*?)```", docs, re.S)
    (tmp_path / "events.json").write_text(registry)
    server = start_server(tmp_path, env={"PIXEL_EVENT_SCHEMAS": str(tmp_path / "events.json")})
    site = Site(server.url)
    try:
        v = Visitor(browser.new_context(), server, site)
        page = v.open(v.page())
        [row] = v.rows(page, 1)
        assert row["event"] == "page_view"
        assert set(row["params"]) == DEVICE
        answers: list[str] = []
        v.context.route(f"{server.url}/e", lambda route: answers.append(forward(route)))
        page.evaluate("pixel('track', 'not_listed')")
        wait_for(page, lambda: answers, "the answer")
        [result] = json.loads(answers[0])["results"]
        assert (result["status"], result["reason"]) == ("rejected", "unknown_event")
        v.context.unroute_all(behavior="ignoreErrors")
        assert v.errors == []
        v.context.close()
    finally:
        site.close()
        server.stop()
    assert v.stored.rows(v.folder) == [row]
