"""Read filters: the time forms since/until accept, and one policy for a repeated filter in the
API and the CLI (refused, never "the last one wins")."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from pixel_server.cli import main
from pixel_server.config import Settings
from pixel_server.hits import Hit
from pixel_server.query import EQUALITY_FILTERS, QueryError, parse_time

from conftest import SECRET, Harness, running, store_cli_env

pytestmark = pytest.mark.both_stores

NOV_1 = 1_793_491_200_000  # 2026-11-01T00:00:00Z
NOW = NOV_1 + 30 * 86_400_000
ENDPOINTS = ("/api/hits", "/api/hits.csv", "/api/hits.ndjson")


def assert_error(response: object, status: int, code: str) -> str:
    """The one error shape, with this status and code; returns the message."""
    assert response.status_code == status  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body == {"error": {"status": status, "code": code, "message": body["error"]["message"]}}
    message: str = body["error"]["message"]
    assert message
    return message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-11-01", NOV_1),
        ("20261101", NOV_1),
        ("2026-11-01T08:00:00Z", NOV_1 + 8 * 3_600_000),
        ("20261101T0800Z", NOV_1 + 8 * 3_600_000),
        ("2026-11-01T09:00:00+01:00", NOV_1 + 8 * 3_600_000),
        ("2026-11-01T00:00:00.123Z", NOV_1 + 123),
        ("1793491200000", NOV_1),
        (" 1793491200000 ", NOV_1),
        ("90s", NOW - 90_000),
        ("2h", NOW - 7_200_000),
        ("4w", NOW - 28 * 86_400_000),
        ("3650d", NOW - 3650 * 86_400_000),
        ("", None),
    ],
)
def test_time_forms_that_are_accepted(raw: str, expected: int | None) -> None:
    """ISO 8601 extended and basic, 13-digit epoch milliseconds and durations are times."""
    assert parse_time(raw, NOW, "since") == expected


@pytest.mark.parametrize(
    "raw",
    [
        "1793491200",  # epoch seconds: 10 digits
        "179349120000",  # 12 digits
        "17934912000000",  # 14 digits
        "0",
        "2026",
        "99999999999999999999",
        "9" * 5000,  # past int()'s 4300-digit limit
        "99999999999w",
        "3651d",
        "1" + "0" * 16 + "s",
        "10000-01-01",
        "2026-13-01",
        "20261301",
        "\u00b2",  # '²': str.isdigit() says yes, int() says no
        "\u0663h",  # ARABIC-INDIC DIGIT THREE: int() would read it as 3
        "\uff11\uff17\uff19\uff13\uff14\uff19\uff11\uff12\uff10\uff10\uff10\uff10\uff10",
        "2026-11-0\u0661",
        "-5",
        "yesterday",
    ],
)
def test_time_forms_that_are_refused_with_the_forms_listed(raw: str) -> None:
    """Anything else, out-of-range values included, is a QueryError naming the parameter;
    an unclear value's message lists the accepted forms."""
    with pytest.raises(QueryError) as caught:
        parse_time(raw, NOW, "since")
    message = str(caught.value)
    assert message.startswith("since: ")
    assert "ISO 8601" in message or "durations go up to 3650d" in message
    assert len(message) < 400  # a huge value is not echoed whole


async def test_a_compact_date_means_that_day_not_milliseconds_after_1970(
    harness: Harness,
) -> None:
    """since=20261101 selects hits from 2026-11-01 on (it used to mean 20,261,101 ms)."""
    assert harness.rt.store is not None
    await harness.rt.store.write(
        [Hit(ts=NOV_1 - 1, kind="view", eid="before"), Hit(ts=NOV_1, kind="view", eid="on")]
    )
    assert [hit["eid"] for hit in await harness.hits(since="20261101")] == ["on"]
    assert [hit["eid"] for hit in await harness.hits(until="20261101T0000Z")] == ["before"]


@pytest.mark.parametrize("name", [*EQUALITY_FILTERS, "since", "until", "limit", "cursor"])
@pytest.mark.parametrize("path", ENDPOINTS)
async def test_a_repeated_filter_is_refused_naming_it(
    harness: Harness, path: str, name: str
) -> None:
    """cid=a&cid=b (any parameter given twice) is a 400 bad_filter naming the parameter."""
    value = {"kind": "view", "since": "1h", "until": "1h", "limit": "5", "cursor": "7"}.get(
        name, "a"
    )
    response = await harness.client.get(
        f"{path}?{name}={value}&{name}={value}", headers=harness.auth
    )
    message = assert_error(response, 400, "bad_filter")
    assert message.startswith(f"{name} is given 2 times")
    assert "give each filter once" in message


@pytest.fixture
def hits_db(make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch) -> Path:
    """A SQLite file with hits for cid a and b, and the CLI pointed at it."""
    settings = make_settings()

    async def populate() -> None:
        async with running(settings) as h:
            for query in ("cid=a&eid=1", "cid=b&eid=2", "cid=a%20b&eid=3"):
                assert (await h.client.get(f"/p.gif?{query}")).status_code == 200

    asyncio.run(populate())
    for name, value in store_cli_env(settings).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PIXEL_SECRET_KEY", SECRET)
    return Path(settings.db)


@pytest.mark.parametrize(
    "args",
    [
        ["hits", "--cid", "a", "--cid", "b"],
        ["hits", "--event", "x", "--event", "x"],
        ["hits", "--since", "1h", "--since", "2h"],
        ["export", "--utm-source", "a", "--utm-source", "b"],
    ],
)
def test_the_cli_refuses_a_repeated_filter_like_the_api(hits_db: Path, args: list[str]) -> None:
    """`hits`/`export` with a filter given twice exit 2 with the API's message (click used to
    keep the last one silently)."""
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "is given 2 times; give each filter once" in result.output
    assert "Traceback" not in result.output


def test_a_filter_from_the_environment_is_one_value_spaces_included(hits_db: Path) -> None:
    """PIXEL_EXPORT_CID='a b' filters on 'a b'; it is not split into two repeated filters."""
    result = CliRunner().invoke(
        main, ["export", "--format", "ndjson"], env={"PIXEL_EXPORT_CID": "a b"}
    )
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["eid"] for line in result.output.splitlines()] == ["3"]


@pytest.mark.parametrize(
    "since", ["99999999999999999999", "99999999999w", "10000-01-01", "\u00b2", "20261301"]
)
def test_the_cli_refuses_an_out_of_range_time_in_one_line(hits_db: Path, since: str) -> None:
    """`hits --since 9999…` exits 2 with a message naming since, not an OverflowError."""
    result = CliRunner().invoke(main, ["hits", "--since", since])
    assert result.exit_code == 2, result.output
    assert "since: " in result.output
    assert "Traceback" not in result.output
