"""``GET /api/loss``: the loss report (loss.py) as JSON, behind a read token or key."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .api import ApiError, guard, store_unavailable
from .loss import parse_request, total
from .query import QueryError
from .runtime import Runtime


class LossApi:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def routes(self) -> list[Route]:
        return [Route("/loss", guard(self.rt, self.loss), methods=["GET"])]

    async def loss(self, request: Request) -> Response:
        """Per UTC day and campaign: sessions, events sent, received, lost, repeated and
        duplicates, and the loss rate; ``since`` (7d), ``until`` (now), ``cid``."""
        try:
            span, cid = parse_request(request.query_params.multi_items(), _now_ms())
        except QueryError as exc:
            raise ApiError(400, exc.code, str(exc)) from None
        assert self.rt.store is not None
        try:
            rows = await self.rt.store.loss_report(span, cid)
        except Exception:  # any store failure: logged, answered 503 in our shape
            raise store_unavailable("/api/loss") from None
        return JSONResponse(
            {
                "since": _day(span[0]),
                "until": _day(span[1]),
                "days": [row.as_dict() for row in rows],
                "total": total(rows).summary(),
            },
            headers={"cache-control": "no-store"},
        )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _day(ms: int) -> str:
    from .export import iso_time

    return iso_time(ms)[:10]
