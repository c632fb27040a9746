"""`pixel-server reclassify` on a real SQLite file and on PostgreSQL: a dry run counts and
changes nothing, a real run relabels from stored evidence (user agent, method, the anonymised
network, the send time) and the burst rules, and leaves what it cannot re-derive."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from click.testing import CliRunner

from pixel_server.cli import main
from pixel_server.config import Settings
from pixel_server.hits import Hit
from pixel_server.store import open_store, opened

from conftest import store_cli_env, stored_rows

pytestmark = pytest.mark.both_stores

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36"
)
SQL = "SELECT uid, traffic, traffic_reasons, is_bot FROM hits ORDER BY ts, id"


def hits(now: int) -> list[Hit]:
    def hit(ts: int, uid: str, **kw: object) -> Hit:
        base: dict[str, object] = {"method": "GET", "ua": CHROME, "traffic": "human", "cid": "c"}
        base.update(kw)
        return Hit(ts=ts, kind=str(base.pop("kind", "click")), uid=uid, **base)  # type: ignore[arg-type]

    return [
        hit(now - 9_000, "curl", ua="curl/8.5.0", kind="view"),  # stored human: probe now
        hit(now - 8_000, "eop", ip="40.107.218.0", kind="open"),  # EOP's /24
        hit(now - 7_000, "b", url="https://a.example/", ip="192.0.2.0"),  # a burst
        hit(now - 6_500, "b", url="https://b.example/", ip="192.0.2.0"),
        hit(now - 6_000, "trap", traffic="link_scanner", traffic_reasons="trap", ua=None),
        hit(now - 5_000, "pf", traffic="prefetch", traffic_reasons="header:purpose", kind="open"),
        hit(now - 4_000, "ok", ip="198.51.100.0"),  # a person: stays
    ]


def reclassify(settings: Settings, *args: str) -> str:
    env = store_cli_env(settings)
    result = CliRunner().invoke(main, ["reclassify", *args], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_dry_run_then_real_run(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    now = time.time_ns() // 1_000_000

    async def fill() -> None:
        async with opened(open_store(settings)) as store:
            await store.write(hits(now))

    asyncio.run(fill())
    before = stored_rows(settings, SQL)
    dry = reclassify(settings, "--since", "1h", "--dry-run")
    assert "human -> probe: 1" in dry
    assert "human -> link_scanner: 3" in dry
    assert "7 hits read, would change 4" in dry
    assert stored_rows(settings, SQL) == before
    real = reclassify(settings, "--since", "1h")
    assert "7 hits read, changed 4 (4 written)" in real
    rows = {(r[0], r[2]): r for r in stored_rows(settings, SQL)}
    assert rows[("curl", "ua:http_library")][1:] == ("probe", "ua:http_library", 1)
    assert rows[("eop", "ip:exchange_online_protection")][1] == "link_scanner"
    assert rows[("b", "burst:2_links")][3] == 1
    assert ("trap", "trap") in rows
    assert ("pf", "header:purpose") in rows
    assert rows[("ok", None)][1:] == ("human", None, 0)
    assert "would change 0" in reclassify(settings, "--since", "1h", "--dry-run")
    assert "0 hits read" in reclassify(settings, "--since", "1h", "--until", "2h")


def test_bad_times_are_a_usage_error(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    asyncio.run(_touch(settings))
    env = store_cli_env(settings)
    result = CliRunner().invoke(main, ["reclassify", "--since", "soon"], env=env)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


async def _touch(settings: Settings) -> None:
    async with opened(open_store(settings)):
        pass
