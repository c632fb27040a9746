"""The wrapped fixtures (tests/fixtures/emails) in headless chromium, against a real
``pixel-server serve``: no broken image, no console error, the pixel loaded and its open
stored, and every link the browser sees goes where the unwrapped email's link went.

The email is served by a test site on another origin; ``https://img.example/...`` images are
answered by the test with a PNG, ``data:`` images need nothing, and any other request (there
should be none) is aborted and fails the test.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest
from emailcheck import fixtures
from playwright.sync_api import Browser, Page, Route

from pixel_server.config import Settings
from pixel_server.links import Minter, spec_from_options
from pixel_server.wrap import Template

from browsertest import Site, module_fixtures, wait_for
from conftest import SECRET, ServerProcess

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAQAAAACCAIAAADwyuo0AAAAEElEQVR4nGM4IScHRwzIHABvCgghBqXSdgAAAABJRU5ErkJggg=="
)
FIXTURES = fixtures()
IMAGES = "[...document.images].map(i => [i.src.slice(0, 120), i.complete, i.naturalWidth])"
LINKS = (
    "[...document.querySelectorAll('a[href], area[href]')]"
    ".map(a => [a.getAttribute('href'), a.href])"
)


browser, server, site = module_fixtures("wrap-browser")


def wrapped(source: str, base: str, uid: str) -> str:
    settings = Settings(secret_key=SECRET, public_url=base)
    links, pixels = Minter.for_links(settings), Minter.for_pixels(settings)
    named = {"cid": "browser", "uid": uid}
    template = Template.parse(source, wrapped_prefix=f"{base}/r/")
    signed = links.mint_each(
        spec_from_options(named, (), None, False, link=True), template.targets()
    )
    pixel = pixels.mint(spec_from_options(named, (), None, False, link=False))
    return template.render(signed.__getitem__, pixel)


class Visit:
    """One page in a fresh context; every console error, page error and request to
    somewhere else is remembered."""

    def __init__(self, browser: Browser, allowed: tuple[str, ...]) -> None:
        self.allowed = allowed
        self.context = browser.new_context()
        self.problems: list[str] = []
        self.context.route("**/*", self._route)

    def _route(self, route: Route) -> None:
        url = route.request.url
        if url.startswith("https://img.example/"):
            route.fulfill(status=200, content_type="image/png", body=PNG)
        elif url.startswith(self.allowed):
            route.continue_()
        else:
            self.problems.append(f"request to {url[:100]}")
            route.abort()

    def open(self, url: str) -> Page:
        page = self.context.new_page()
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url[:100]}"))
        page.goto(url, wait_until="load")
        return page

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.problems.append(f"console: {message.text}")

    def close(self) -> None:
        self.context.unroute_all(behavior="ignoreErrors")
        self.context.close()


@pytest.mark.parametrize("path", FIXTURES, ids=[path.stem for path in FIXTURES])
def test_wrapped_email_in_chromium(
    path: Path, browser: Browser, server: ServerProcess, site: Site
) -> None:
    source = path.read_text(encoding="utf-8")
    uid = f"b-{path.stem}"
    site.pages[f"/orig/{path.name}"] = source
    site.pages[f"/wrapped/{path.name}"] = wrapped(source, server.url, uid)
    visit = Visit(browser, (site.origin, server.url))
    try:
        before = visit.open(f"{site.origin}/orig/{path.name}").evaluate(LINKS)
        page = visit.open(f"{site.origin}/wrapped/{path.name}")
        images = page.evaluate(IMAGES)
        after = page.evaluate(LINKS)
    finally:
        visit.close()
    assert visit.problems == []
    broken = [image for image in images if not (image[1] and image[2] > 0)]
    assert broken == []
    pixels = [image for image in images if image[0].startswith(f"{server.url}/p/")]
    assert len(pixels) == 1
    assert pixels[0][2] == 1  # the 1x1 GIF, decoded
    opens = "SELECT uid FROM hits WHERE kind = 'open' AND cid = 'browser'"
    wait_for(None, lambda: (uid,) in server.rows(opens), f"the open of {path.name} stored")

    # every link of the DOM: its attribute left as it was, or a redirect to where chromium
    # resolved the original link
    assert len(after) == len(before)
    ours = [(old, new) for old, new in zip(before, after, strict=True) if old[0] != new[0]]
    assert ours
    with httpx.Client() as client:
        for (_, old), (_, new) in ours:
            assert new.startswith(f"{server.url}/r/")
            answer = client.get(new)
            assert answer.status_code == 302
            assert answer.headers["location"] == old
