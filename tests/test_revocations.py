"""Revoked links (revocations.py): by link, campaign and target, undone and listed, on SQLite
and PostgreSQL; the 410 page of a revoked or expired link (interstitial.py); notrack links and
PIXEL_EXCLUDE_NETWORKS storing nothing; the API's scopes; the CLI on a real store; the store
down while a click comes in."""

from __future__ import annotations

import html
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from pixel_server.apikeys import new_key
from pixel_server.config import Settings
from pixel_server.payload import build, link_id
from pixel_server.revocations import Revoked, make
from pixel_server.store.memory import MemoryStore

from conftest import SECRET, Harness, running, store_cli_env, stored_rows

pytestmark = pytest.mark.both_stores

SALE = "https://shop.example/sale"


def link(h: Harness, target: str = SALE, **fields: Any) -> str:
    notrack = fields.pop("notrack", False)
    expires = fields.pop("expires", None)
    payload = build(fields, target=target, expires=expires, notrack=notrack)
    return f"/r/{h.rt.link_tokens.dumps(payload)}"


async def revoke(h: Harness, status: int = 201, **body: Any) -> dict[str, Any]:
    response = await h.client.post("/api/revocations", json=body, headers=h.auth)
    assert response.status_code == status, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def test_the_store_adds_lists_replaces_and_removes_revocations(harness: Harness) -> None:
    """Revoking the same thing twice keeps one record (the later reason); list is oldest
    first; remove gives back what it removed, and None the second time."""
    store = harness.rt.store
    assert store is not None
    first = make(cid="spring", reason="over", now_ms=1_000)
    host = make(target="Shop.Example.", reason="gone", offer_continue=True, now_ms=2_000)
    await store.add_revocation(first)
    await store.add_revocation(host)
    await store.add_revocation(make(cid="spring", reason="really over", now_ms=3_000))
    listed = await store.revocations()
    assert [(r.kind, r.cid, r.target, r.reason) for r in listed] == [
        ("target", None, "shop.example", "gone"),
        ("campaign", "spring", None, "really over"),
    ]
    assert listed[0].offer_continue
    assert not listed[1].offer_continue
    removed = await store.remove_revocation(first.id)
    assert removed is not None
    assert removed.reason == "really over"
    assert await store.remove_revocation(first.id) is None
    assert [r.id for r in await store.revocations()] == [host.id]


async def test_a_revoked_link_answers_410_and_stores_no_click(harness: Harness) -> None:
    """Revoked by its URL: 410, no Location, no click; its twin with another uid still
    redirects; undone, it redirects again."""
    url = link(harness, cid="spring", uid="r-1")
    other = link(harness, cid="spring", uid="r-2")
    made = await revoke(harness, link=f"https://t.example{url}?x=1", reason="sent by mistake")
    response = await harness.client.get(url)
    assert response.status_code == 410
    assert "location" not in response.headers
    assert "sent by mistake" in response.text
    assert "shop.example" in response.text
    assert "href" not in response.text  # revoked without --offer-continue
    assert (await harness.client.get(other)).status_code == 302
    assert [hit["uid"] for hit in await harness.hits()] == ["r-2"]
    assert harness.metric("pixel_redirects_revoked_total") == 1
    gone = await harness.client.request(
        "DELETE", "/api/revocations", json={"id": made["revocation"]["id"]}, headers=harness.auth
    )
    assert gone.status_code == 200, gone.text
    assert (await harness.client.get(url)).status_code == 302


async def test_a_campaign_is_revoked_whole_or_for_one_target(harness: Harness) -> None:
    """--cid: every link of the campaign; --cid --target: only those to that target (a URL
    in canonical form, or a host); other campaigns are untouched."""
    sale, home = link(harness, cid="spring"), link(harness, "https://shop.example/", cid="spring")
    autumn = link(harness, cid="autumn")
    await revoke(harness, cid="spring", target="HTTPS://SHOP.example/sale")
    assert [(await harness.client.get(u)).status_code for u in (sale, home, autumn)] == [
        410,
        302,
        302,
    ]
    await revoke(harness, cid="autumn", target="shop.example")
    assert (await harness.client.get(autumn)).status_code == 410
    await revoke(harness, cid="spring", reason="over")
    assert (await harness.client.get(home)).status_code == 410
    listed = (await harness.client.get("/api/revocations", headers=harness.auth)).json()
    assert [r["kind"] for r in listed["revocations"]] == ["campaign"] * 3


async def test_a_target_is_revoked_by_url_or_host(harness: Harness) -> None:
    """--target URL revokes the links to it exactly; --target HOST every link to that host,
    whatever the campaign; undo by naming it again."""
    sale, home = link(harness, cid="a"), link(harness, "https://shop.example/")
    elsewhere = link(harness, "https://news.example/")
    await revoke(harness, target=SALE)
    assert [(await harness.client.get(u)).status_code for u in (sale, home)] == [410, 302]
    await revoke(harness, target="shop.example", offer_continue=True)
    response = await harness.client.get(home)
    assert response.status_code == 410
    assert 'href="https://shop.example/"' in response.text  # offered, and the policy allows it
    assert (await harness.client.get(elsewhere)).status_code == 302
    undone = await harness.client.request(
        "DELETE", "/api/revocations", json={"target": "shop.example"}, headers=harness.auth
    )
    assert undone.json()["revocation"]["target"] == "shop.example"
    assert (await harness.client.get(home)).status_code == 302
    missing = await harness.client.request(
        "DELETE", "/api/revocations", json={"target": "shop.example"}, headers=harness.auth
    )
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")


async def test_the_revoked_page_escapes_a_hostile_host_and_reason(
    make_settings: Callable[..., Settings],
) -> None:
    """A reason with markup, and a signed target whose host is odd, appear only escaped; the
    page has no script, a CSP allowing none, noindex and no-referrer."""
    reason = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    async with running(make_settings()) as h:
        target = "https://xn--80ak6aa92e.com/?q=<b>"
        url = link(h, target, cid="c")
        await revoke(h, cid="c", reason=reason, offer_continue=True)
        response = await h.client.get(url)
    page = response.text
    assert response.status_code == 410
    assert "<script" not in page
    assert "<img" not in page
    assert html.escape(reason) in page
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "noindex" in response.headers["x-robots-tag"]
    assert "noindex" in page
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script" not in csp
    assert "<b>" not in page


async def test_an_expired_link_offers_to_continue_only_where_the_policy_allows(
    make_settings: Callable[..., Settings],
) -> None:
    """Expired: 410, "This link has expired — continue to shop.example?" linking to the
    signed target; a target the allowlist refuses now gets the page without the link."""
    past = int(time.time()) - 60
    async with running(make_settings(redirect_hosts="shop.example")) as h:
        allowed = await h.client.get(link(h, expires=past, cid="c"))
        refused = await h.client.get(link(h, "https://evil.example/", expires=past))
        assert await h.hits() == []
    assert allowed.status_code == refused.status_code == 410
    assert "location" not in allowed.headers
    assert "This link has expired — continue to" in allowed.text
    assert f'href="{SALE}"' in allowed.text
    assert "evil.example" in refused.text
    assert "href" not in refused.text


async def test_a_bad_token_still_never_redirects(harness: Harness) -> None:
    """With revocations in place, a forged or unsigned token is 400, no page link."""
    await revoke(harness, target="shop.example", offer_continue=True)
    response = await harness.client.get("/r/not-a-token")
    assert response.status_code == 400
    assert "href" not in response.text


async def test_a_notrack_link_redirects_and_stores_nothing(harness: Harness) -> None:
    """n=1: 302 to the target, no hit, counted; the API signs one with "notrack": true."""
    response = await harness.client.get(link(harness, cid="spring", notrack=True))
    assert response.status_code == 302
    assert response.headers["location"] == SALE
    assert await harness.hits() == []
    assert harness.metric("pixel_hits_not_stored_total", kind="click", reason="notrack") == 1
    signed = await harness.client.post(
        "/api/links", json=[{"url": SALE, "notrack": True}], headers=harness.auth
    )
    path = signed.json()["links"][0]["link"].split("testserver", 1)[-1]
    path = path[path.index("/r/") :]
    assert (await harness.client.get(path)).status_code == 302
    assert await harness.hits() == []
    bad = await harness.client.post(
        "/api/links", json=[{"url": SALE, "notrack": "yes"}], headers=harness.auth
    )
    assert bad.json()["links"][0]["error"]["code"] == "bad_item"


async def test_excluded_networks_are_answered_but_not_stored(
    make_settings: Callable[..., Settings],
) -> None:
    """From PIXEL_EXCLUDE_NETWORKS (the test client is 203.0.113.77): the GIF, the redirect,
    "excluded" from POST /e, and nothing stored; decided on the full address, so the network
    of the truncated one (203.0.113.0) excludes nothing."""
    async with running(make_settings(exclude_networks="10.0.0.0/8, 203.0.113.77/32")) as h:
        gif = await h.client.get("/p.gif?cid=c")
        click = await h.client.get(link(h, cid="c"))
        events = await h.client.post(
            "/e", content=b'[{"name": "signup"}]', headers={"content-type": "application/json"}
        )
        assert await h.hits() == []
        assert h.metric("pixel_hits_not_stored_total", kind="click", reason="excluded") == 1
        assert h.metric("pixel_hits_not_stored_total", kind="event", reason="excluded") == 1
    assert gif.status_code == 200
    assert gif.headers["content-type"] == "image/gif"
    assert click.status_code == 302
    assert events.status_code == 200
    assert events.json()["results"] == [{"index": 0, "status": "excluded"}]
    async with running(make_settings(exclude_networks="203.0.113.0/32")) as h:
        await h.client.get("/p.gif?cid=c")
        assert len(await h.hits()) == 1


async def test_the_api_needs_the_admin_scope(harness: Harness) -> None:
    """A read or ingest key gets 403, no key 401; an admin key revokes; bad bodies are 400
    in the API's shape."""
    store = harness.rt.store
    assert store is not None
    keys = {}
    for scope in ("read", "ingest", "admin"):
        text, key = new_key(scope, [scope], now_ms=int(time.time() * 1000))
        await store.add_api_key(key)
        keys[scope] = {"authorization": f"Bearer {text}"}
    body = {"cid": "spring"}
    assert (await harness.client.post("/api/revocations", json=body)).status_code == 401
    for scope in ("read", "ingest"):
        refused = await harness.client.get("/api/revocations", headers=keys[scope])
        assert refused.json()["error"]["code"] == "insufficient_scope"
    made = await harness.client.post("/api/revocations", json=body, headers=keys["admin"])
    assert made.status_code == 201
    for bad, code in [
        ({"cid": 3}, "bad_cid"),
        ({"link": "k1.forged.token"}, "bad_link"),
        ({"colour": "red"}, "bad_item"),
        ({}, "bad_item"),
        ({"target": "a b/c"}, "bad_target"),
        ({"cid": "c", "reason": "x" * 600}, "bad_reason"),
    ]:
        answer = await harness.client.post("/api/revocations", json=bad, headers=keys["admin"])
        assert (answer.status_code, answer.json()["error"]["code"]) == (400, code), bad
    raw = await harness.client.post("/api/revocations", content=b"{nope", headers=keys["admin"])
    assert raw.json()["error"]["code"] == "bad_json"


def test_the_cli_revokes_lists_and_undoes(make_settings: Callable[..., Settings]) -> None:
    """`pixel-server revoke` on a real store: a link by URL (verified with the key), a
    campaign, --list, --undo; a forged token is one line, exit 2; undoing nothing exit 1."""
    settings = make_settings()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXEL_")}
    env |= {**store_cli_env(settings), "PIXEL_SECRET_KEY": SECRET}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pixel_server", "revoke", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    import asyncio

    from pixel_server.keys import Keyring
    from pixel_server.signing import REDIRECT_SALT, TokenSigner
    from pixel_server.store import open_store, opened

    async def create() -> None:  # the server has run once: the store exists
        async with opened(open_store(settings)):
            pass

    asyncio.run(create())

    payload = build({"cid": "spring"}, target=SALE)
    token = TokenSigner(Keyring.from_settings(settings), REDIRECT_SALT).dumps(payload)
    hostile = run(f"https://t.example/r/{token}", "--reason", "oops\x1b[31m")
    assert hostile.returncode == 2
    assert "control characters" in hostile.stderr
    done = run(f"https://t.example/r/{token}", "--reason", "sent by mistake")
    assert done.returncode == 0, done.stderr
    assert link_id(payload) in done.stdout
    assert run("--cid", "spring", "--reason", "over").returncode == 0
    listed = run("--list").stdout.splitlines()
    assert [line.split("\t")[2] for line in listed] == [
        f"link {link_id(payload)}",
        "campaign spring",
    ]
    assert sorted(row[0] for row in stored_rows(settings, "SELECT kind FROM revocations")) == [
        "campaign",
        "link",
    ]
    forged = run("k1.eyJ1IjoieCJ9.bad")
    assert forged.returncode == 2
    assert len(forged.stderr.strip().splitlines()) == 1
    assert run("--cid", "spring", "--undo").returncode == 0
    again = run("--cid", "spring", "--undo")
    assert again.returncode == 1
    assert "no such revocation" in again.stderr
    assert run("--list", "--cid", "x").returncode == 2
    assert run().returncode == 2


async def test_a_store_outage_never_fails_a_click(make_settings: Callable[..., Settings]) -> None:
    """The store down: the last revocations read still decide (revoked stays 410, others
    redirect), nothing answers 5xx; down from the start, links redirect."""
    store = MemoryStore()
    async with running(make_settings(ack_timeout=0.05, busy_timeout=0.01), store) as h:
        revoked, fine = link(h, cid="gone"), link(h, cid="ok")
        await revoke(h, cid="gone")
        store.down = True
        h.rt.revoked.ttl = 0  # every click now tries to read them again, and fails
        for _ in range(3):
            assert (await h.client.get(revoked)).status_code == 410
            assert (await h.client.get(fine)).status_code == 302
            await h.rt.revoked.settled()
        assert h.rt.revoked.failures >= 1
        listed = await h.client.get("/api/revocations", headers=h.auth)
        assert listed.status_code == 503
    down = MemoryStore()
    down.down = True
    async with running(make_settings(ack_timeout=0.05, busy_timeout=0.01), down) as h:
        assert h.rt.revoked.value == Revoked()
        assert (await h.client.get(link(h, cid="gone"))).status_code == 302


async def test_link_notrack_on_the_cli_signs_n_and_its_click_is_not_stored(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pixel-server link --notrack` signs n=1 (`--field n=1` is refused: n is the token's);
    its click redirects and stores nothing; a wrapped email with "notrack" likewise."""
    from click.testing import CliRunner

    from pixel_server.cli import main

    settings = make_settings()
    monkeypatch.setenv("PIXEL_SECRET_KEY", SECRET)
    monkeypatch.setenv("PIXEL_PUBLIC_URL", "https://t.example")
    printed = CliRunner().invoke(main, ["link", SALE, "--cid", "c", "--notrack"])
    assert printed.exit_code == 0, printed.output
    refused = CliRunner().invoke(main, ["link", SALE, "--field", "n=1"])
    assert refused.exit_code == 2
    path = printed.output.strip().removeprefix("https://t.example")
    async with running(settings) as h:
        assert h.rt.link_tokens.loads(path.removeprefix("/r/"))["n"] == 1
        assert (await h.client.get(path)).status_code == 302
        wrapped = await h.client.post(
            "/api/wrap",
            json={"html": f'<a href="{SALE}">x</a>', "notrack": True, "pixel": False},
            headers=h.auth,
        )
        assert wrapped.status_code == 200, wrapped.text
        href = wrapped.json()["html"].split('href="', 1)[1].split('"', 1)[0]
        assert (await h.client.get(href[href.index("/r/") :])).status_code == 302
        assert await h.hits() == []


def test_a_field_n_of_an_older_token_stays_a_hit_field() -> None:
    """Only the number 1 is notrack: an `n` field of another value (tokens minted before n
    was a control key) is still stored as a field."""
    from pixel_server.payload import hit_fields, is_notrack

    assert is_notrack(build({}, target=SALE, notrack=True))
    for old in ({"n": 5}, {"n": "1"}, {"n": True}):
        assert not is_notrack(old)
        assert "n" in hit_fields(old, 100)[0]
    assert "n" not in hit_fields(build({"cid": "c"}, target=SALE, notrack=True), 100)[0]
