"""BASELINE for `make bench` -- NOT product code. Nothing in pixel_server imports this.

The tracking pixel a developer would hand-write in an afternoon: one Starlette route that reads
the query parameters and the User-Agent header, INSERTs the hit and commits it -- its own
aiosqlite connection and its own transaction for every request (``await db.execute(...)``,
``await db.commit()``) -- then returns the 43-byte GIF with no-store headers. SQLite runs in
WAL mode with ``synchronous=FULL``, the same durability as pixel_server's default, so a 200
means the hit is on disk here too.

``NAIVE_MODE=shared`` (the ``naive-shared`` scenario) keeps one aiosqlite connection for the
whole app instead. Its code still commits per request, but aiosqlite runs all calls of a
connection in order on one thread, so under concurrency the inserts of many requests queue up
behind a commit and the next commit covers them all: group commit by accident, and a much
stronger baseline than its code suggests.

Run: ``NAIVE_DB=/tmp/naive.db python -m uvicorn bench.naive_app:app --no-access-log``
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiosqlite
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

DB_PATH = os.environ.get("NAIVE_DB", "naive.db")
SHARED = os.environ.get("NAIVE_MODE", "connection") == "shared"

GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x01\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x01\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02L\x01\x00;"
)
NO_STORE = {"cache-control": "no-store, no-cache, must-revalidate, max-age=0", "pragma": "no-cache"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS hits (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    cid TEXT, uid TEXT,
    utm_source TEXT, utm_medium TEXT, utm_campaign TEXT, utm_content TEXT,
    ua TEXT
)
"""
INSERT = (
    "INSERT INTO hits (ts, cid, uid, utm_source, utm_medium, utm_campaign, utm_content, ua)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


class State:
    db: aiosqlite.Connection | None = None


state = State()


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    db = await aiosqlite.connect(DB_PATH)
    await db.execute("PRAGMA journal_mode=WAL")  # stays set in the file
    await db.execute(SCHEMA)
    await db.commit()
    if not SHARED:
        await db.close()
        yield
        return
    await db.execute("PRAGMA synchronous=FULL")
    state.db = db
    try:
        yield
    finally:
        await db.close()


def hit_values(request: Request) -> tuple[object, ...]:
    q = request.query_params
    return (
        time.time(),
        q.get("cid"),
        q.get("uid"),
        q.get("utm_source"),
        q.get("utm_medium"),
        q.get("utm_campaign"),
        q.get("utm_content"),
        request.headers.get("user-agent"),
    )


async def pixel(request: Request) -> Response:
    if state.db is not None:  # NAIVE_MODE=shared
        await state.db.execute(INSERT, hit_values(request))
        await state.db.commit()
    else:
        async with aiosqlite.connect(DB_PATH) as db:
            await db.execute("PRAGMA synchronous=FULL")
            await db.execute(INSERT, hit_values(request))
            await db.commit()
    return Response(GIF, media_type="image/gif", headers=NO_STORE)


app = Starlette(routes=[Route("/p.gif", pixel)], lifespan=lifespan)
