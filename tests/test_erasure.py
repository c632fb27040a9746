"""Data subjects (erasure.py) on both stores: the export finds every hit of a uid — by uid,
parameter value, query value — and only those; erasure through the API and the CLI leaves
zero occurrences of the uid's bytes in the SQLite file, its WAL and the spill journals (a live
one too), and in every PostgreSQL table; the rollups lose exactly those hits; the admin log
names the subject only by its keyed hash."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pixel_server.apikeys import new_key
from pixel_server.config import Settings
from pixel_server.erasure import Subject, subject_hash
from pixel_server.hits import Hit
from pixel_server.rollup import CellQuery
from pixel_server.spill import Journal, encode
from pixel_server.store import Store, open_store, opened

from conftest import Harness, run_cli, run_cli_env, running
from privacytest import traces

pytestmark = pytest.mark.both_stores

# addresses as uids, as data stored before PIXEL_REDACT_EMAILS or with it off holds them (the
# harder case for erasure: percent-encoded forms, values inside others); the tests that send
# them through the server turn the redaction off
X = "ann-7c1d@mail.example"
OTHER = "bob-42e9@mail.example"
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"


async def admin(h: Harness, scopes: tuple[str, ...] = ("admin",)) -> dict[str, str]:
    text, key = new_key("dpo", list(scopes), now_ms=int(time.time() * 1000))
    assert h.rt.store is not None
    await h.rt.store.add_api_key(key)
    return {"authorization": f"Bearer {text}"}


async def send(h: Harness) -> None:
    """Five hits of X (by uid, a parameter value, query values) and four of others."""
    headers = {"user-agent": UA}
    page = f"https%3A%2F%2Fshop.example%2Fa%3Femail%3D{X.replace('@', '%2540')}"
    for query in (f"cid=spring&uid={X}", f"cid=spring&url={page}", f"cid=spring&uid={OTHER}"):
        assert (await h.client.get(f"/p.gif?{query}", headers=headers)).status_code == 200
    near = f"https%3A%2F%2Fshop.example%2Fa%3Femail%3D{X}tra"  # another value, not X
    await h.client.get(f"/p.gif?cid=spring&url={near}", headers=headers)
    token = h.rt.link_tokens.dumps({"u": "https://shop.example/", "cid": "spring", "uid": X})
    assert (await h.client.get(f"/r/{token}", headers=headers)).status_code == 302
    events = [
        {"name": "buy", "cid": "spring", "uid": X, "params": {"value": 3}},
        {"name": "signup", "cid": "spring", "params": {"email": X}},
        {"name": "signup", "cid": "spring", "params": {"email": OTHER, "note": f"{X}!"}},
        {"name": "buy", "cid": "spring", "uid": OTHER, "params": {"value": 5}},
    ]
    answer = await h.client.post("/e", json=events, headers=headers)
    assert answer.json()["accepted"] == 4


def spilled(settings: Settings) -> Journal:
    """A dead process's journal (no lock) and a live one (locked: returned, to close),
    each with a hit of X between two of others."""
    spill = settings.spill_path
    assert spill is not None
    lines = [encode(Hit(ts=1, kind="view", uid=u, cid="late")) for u in (OTHER, X, OTHER)]
    spill.mkdir(parents=True, exist_ok=True)
    (spill / "spill-1-1.jsonl").write_bytes(b"".join(lines))
    live = Journal.create(spill)
    live._fh.write(b"".join(lines))
    live._fh.flush()
    return live


async def totals(store: Store) -> int:
    answer = await store.rollup_cells(CellQuery("", (0, 2**31 - 1), machines=True))
    return sum(row[-1] for row in answer.counts)


async def test_export_then_erasure_through_the_api(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(redact_emails=False)
    async with running(settings) as h:
        await send(h)
        keys = await admin(h)
        refused = await h.client.get(f"/api/subjects/{X}", headers=await admin(h, ("read",)))
        assert refused.status_code == 403
        exported = await h.client.get(f"/api/subjects/{X}", headers=keys)
        assert exported.status_code == 200
        hits = exported.json()["hits"]
        assert len(hits) == 5
        assert sorted(h["kind"] for h in hits) == ["click", "event", "event", "view", "view"]
        assert all(OTHER not in json.dumps(hit) for hit in hits)
        assert h.rt.store is not None
        assert await totals(h.rt.store) == 9
        live = spilled(settings)
        try:
            done = await h.client.delete(f"/api/subjects/{X}", headers=keys)
            assert done.status_code == 200, done.text
            assert done.json()["hits_deleted"] == 5
            assert done.json()["journal_lines"] == 2
            assert await totals(h.rt.store) == 4  # exactly the subject's hits left the counts
            again = await h.client.get(f"/api/subjects/{X}", headers=keys)
            assert again.json()["hits"] == []
            log = await h.client.get("/api/admin-log", headers=keys)
            actions = [(e["action"], e["detail"].get("subject")) for e in log.json()["entries"]]
            hashed = subject_hash(h.rt.keyring.secrets[h.rt.keyring.signing_id], X)
            assert ("subject_export", hashed) in actions
            assert ("erase", hashed) in actions
            assert X not in log.text
            assert traces(settings, X) == []  # no byte of it in any file or table
            assert traces(settings, OTHER)  # the control: the others' are all there
            # the journals still replay: their other hits are intact, X's line is blank
            for path in sorted(settings.spill_path.iterdir()):  # type: ignore[union-attr]
                rows = [line for line in path.read_bytes().splitlines() if line.strip()]
                assert len(rows) == 2, path
        finally:
            live.close()


async def test_erasure_through_the_cli_and_the_export(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(redact_emails=False)
    async with running(settings) as h:
        await send(h)
    env = run_cli_env(settings)
    exported = run_cli("subject-export", "--uid", X, env=env, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert len(json.loads(exported.stdout)["hits"]) == 5
    erased = run_cli("erase", "--uid", X, env=env, cwd=tmp_path)
    assert erased.returncode == 0, erased.stderr
    assert "erased 5 hits" in erased.stdout
    assert X not in erased.stdout
    assert traces(settings, X) == []
    async with opened(open_store(settings)) as store:
        assert await totals(store) == 4
        assert len(await store.subject_hits(OTHER)) == 3
        [*_, entry] = await store.admin_log((0, 2**62), 100)
    assert (entry.action, entry.actor, entry.detail["hits_deleted"]) == ("erase", "cli", 5)
    bad = run_cli("erase", "--uid", "", env=env, cwd=tmp_path)
    assert bad.returncode == 2


@pytest.mark.parametrize(
    ("hit", "matched"),
    [
        ({"uid": X}, True),
        ({"params": json.dumps({"email": X})}, True),
        ({"params": json.dumps({"email": X + "x"})}, False),
        ({"url": f"https://a.example/?e={X}"}, True),
        ({"url": f"https://a.example/?e={X}&b=1"}, True),
        ({"referer": f"https://a.example/?e={X}#top"}, True),
        ({"ref": "https://a.example/?e=ann-7c1d%40mail.example"}, True),
        ({"url": f"https://a.example/?e={X}2"}, False),
        ({"url": f"https://a.example/{X}"}, False),
        ({"sid": X}, False),
    ],
)
async def test_what_is_a_subjects_hit(
    make_settings: Callable[..., Settings], hit: dict[str, Any], matched: bool
) -> None:
    """The store's SQL and the journals' test agree on every case."""
    row = Hit(ts=1_700_000_000_000, kind="view", **hit)
    assert Subject(X).matches(row) is matched
    async with opened(open_store(make_settings())) as store:
        await store.write([row])
        assert len(await store.subject_hits(X)) == int(matched)
