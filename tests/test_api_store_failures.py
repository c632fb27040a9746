"""A store that fails while the API reads it: a 503 in the error shape while nothing is sent,
and an export cut off visibly (no end of the chunked body) once its 200 is on the wire."""

from __future__ import annotations

import asyncio
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from pixel_server.config import Settings
from pixel_server.hits import Hit
from pixel_server.store.sqlite import SQLiteStore

from conftest import API_TOKEN, ServerProcess, running

ROWS = 5000  # five export pages
EXPORTS = ("/api/hits.csv", "/api/hits.ndjson")
AUTH = {"authorization": f"Bearer {API_TOKEN}"}


async def fill(db: Path, rows: int = ROWS) -> None:
    """``rows`` hits in a fresh SQLite file, written and closed (nothing left in the WAL)."""
    async with SQLiteStore(str(db)) as store:
        await store.write(
            [
                Hit(ts=1_793_491_200_000 + i, kind="view", cid="c", eid=f"e{i}", ua="u" * 200)
                for i in range(rows)
            ]
        )


def zero_oldest_pages(db: Path, fraction: float) -> int:
    """Overwrite with zeros the table pages holding the oldest ``fraction`` of the hits, as a
    failing disk would; the newest rows, the schema and the indexes stay readable."""
    with sqlite3.connect(db) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        leaves = [  # dbstat's path orders a b-tree's leaves by key: oldest rows first
            pageno
            for (pageno,) in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = 'hits' AND pagetype = 'leaf' ORDER BY path"
            )
        ]
    doomed = leaves[: int(len(leaves) * fraction)]
    with db.open("r+b") as fh:
        for pageno in doomed:
            fh.seek((pageno - 1) * page_size)
            fh.write(b"\0" * page_size)
    return len(doomed)


@pytest.mark.parametrize("path", ["/api/hits", *EXPORTS])
async def test_an_unreadable_store_is_a_503_in_the_error_shape(
    make_settings: Callable[..., Settings], path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """When the first page cannot be read, nothing has been sent: the answer is a logged 503
    store_unavailable with Retry-After, never a 200 that breaks off or a plain-text 500."""
    settings = make_settings()
    await fill(Path(settings.db))
    assert zero_oldest_pages(Path(settings.db), 1.0) > 0
    async with running(settings) as h:
        response = await h.client.get(path, headers=h.auth)
    assert response.status_code == 503
    assert response.json() == {
        "error": {
            "status": 503,
            "code": "store_unavailable",
            "message": "The hit store cannot be read right now; try again later.",
        }
    }
    assert response.headers["retry-after"] == "5"
    assert f"{path} failed: the hit store could not be read" in caplog.text


def complete_lines(server: ServerProcess, path: str) -> int:
    """Stream ``path``; assert the body breaks off; return how many whole lines arrived."""
    received: list[bytes] = []
    with httpx.stream("GET", server.url + path, headers=AUTH, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["transfer-encoding"] == "chunked"
        with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
            received.extend(response.iter_bytes())
    return b"".join(received).count(b"\n")


@pytest.mark.parametrize("kind", ["uvicorn", "granian"])
def test_an_export_that_fails_midway_is_cut_off_not_completed(
    server_factory: Callable[..., ServerProcess], tmp_path: Path, kind: str
) -> None:
    """A real server whose SQLite file goes bad after the export's first page: the client gets
    the 200 and the rows read so far, then the connection ends without the last chunk (httpx
    raises, curl exits 18), the failure is logged, and the server goes on serving."""
    db = tmp_path / "pixel.db"
    asyncio.run(fill(db))
    assert zero_oldest_pages(db, 0.5) > 0
    server = server_factory(*(["--server", "granian"] if kind == "granian" else []))
    for path in EXPORTS:
        lines = complete_lines(server, path)
        assert 1000 <= lines < ROWS + 1, lines  # the first page (and header), never all rows
        if shutil.which("curl"):
            curl = subprocess.run(
                [
                    "curl",
                    "-sS",
                    "-o",
                    "/dev/null",
                    "-H",
                    f"Authorization: Bearer {API_TOKEN}",
                    server.url + path,
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert curl.returncode == 18, curl.stderr  # "transfer closed with outstanding data"
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
    server.stop()
    log = server.log.read_text()
    for path in EXPORTS:
        assert re.search(rf"{re.escape(path)} aborted after \d+ rows, cut off unfinished", log)
