"""``GET /api/stats`` (and ``/api/stats.csv``): a report (stats.py) as JSON or CSV, behind a
read token or key. The parameters are the CLI's and the dashboard's (docs/stats.md)."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .api import ApiError, guard, store_unavailable
from .query import QueryError
from .runtime import Runtime
from .stats import Stats, StatsQuery, parse_request, run


class StatsApi:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def routes(self) -> list[Route]:
        return [
            Route("/stats", guard(self.rt, self.stats), methods=["GET"]),
            Route("/stats.csv", guard(self.rt, self.stats_csv), methods=["GET"]),
        ]

    def _query(self, request: Request, exclude: tuple[str, ...] = ()) -> StatsQuery:
        assert self.rt.store is not None
        pairs = [(k, v) for k, v in request.query_params.multi_items() if k not in exclude]
        try:
            return parse_request(
                pairs,
                time.time_ns() // 1_000_000,
                self.rt.store.spec,
                self.rt.settings.report_zone,
            )
        except QueryError as exc:
            raise ApiError(400, exc.code, str(exc)) from None

    async def _run(self, query: StatsQuery) -> Stats:
        assert self.rt.store is not None
        try:
            return await run(self.rt.store, query)
        except Exception:  # any store failure: logged, answered 503 in our shape
            raise store_unavailable("/api/stats") from None

    async def stats(self, request: Request) -> Response:
        report = await self._run(self._query(request))
        return JSONResponse(report.as_dict(), headers={"cache-control": "no-store"})

    async def stats_csv(self, request: Request) -> Response:
        """``table`` = series (default), breakdown or rows."""
        tables = request.query_params.getlist("table")
        if len(tables) > 1:
            raise ApiError(400, "bad_filter", "table: give it once")
        table = tables[0] if tables and tables[0] else "series"
        query = self._query(request, exclude=("table",))
        try:
            text = (await self._run(query)).csv(table)
        except QueryError as exc:
            raise ApiError(400, exc.code, str(exc)) from None
        return Response(
            text,
            media_type="text/csv; charset=utf-8",
            headers={
                "cache-control": "no-store",
                "content-disposition": f'attachment; filename="stats-{table}.csv"',
            },
        )
