"""A task that runs in the background for the length of an ``async with`` block: the server's
periodic work (the burst pass, the refused-request counts, the daily salts, the purge)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any


@asynccontextmanager
async def running(work: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """``work`` as a task while the block runs; cancelled and awaited when it ends."""
    task = asyncio.create_task(work, name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def every(seconds: float, step: Callable[[], Awaitable[None]], first: float = -1) -> None:
    """``step`` every ``seconds`` seconds, the first time after ``first`` (default: one
    period); ``step`` keeps its own failures (the loop never ends on one)."""
    await asyncio.sleep(seconds if first < 0 else first)
    while True:
        await step()
        await asyncio.sleep(seconds)
