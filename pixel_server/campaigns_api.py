"""``GET /api/campaigns/{cid}``: a campaign's totals (totals.py) as JSON, behind a read token
or key.

A campaign exists only through its hits, so a campaign nobody opened yet (or a typo) answers
200 with zeros, not 404: the same figures a campaign with no hits in the span has."""

from __future__ import annotations

import time

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .api import ApiError, guard, store_unavailable
from .query import QueryError
from .runtime import Runtime
from .totals import campaign_totals, parse_request


class CampaignConvertor(Convertor[str]):
    """Any campaign id, line breaks included: ``path``'s ``.*`` stops at a newline, and
    such an id would then be answered 404 instead of like any other (zeros, or 400). For
    the same reason the route is not under the ``/api`` Mount (whose own ``{path:path}``
    stops there too)."""

    regex = "(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("campaign", CampaignConvertor())


class CampaignsApi:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def routes(self) -> list[Route]:
        return [
            Route("/api/campaigns/{cid:campaign}", guard(self.rt, self.campaign), methods=["GET"])
        ]

    async def campaign(self, request: Request) -> Response:
        """Opens, clicks, unique ones, inferred opens, CTOR, per link; machines apart;
        ``since`` (the beginning), ``until`` (now), ``machines`` (0)."""
        cid: str = request.path_params["cid"]
        try:
            span, machines = parse_request(
                cid,
                request.query_params.multi_items(),
                time.time_ns() // 1_000_000,
                self.rt.limits.max_value_chars,
            )
        except QueryError as exc:
            raise ApiError(400, exc.code, str(exc)) from None
        assert self.rt.store is not None
        try:
            campaign = await self.rt.store.campaign_groups(cid, span)
        except Exception:  # any store failure: logged, answered 503 in our shape
            raise store_unavailable("/api/campaigns") from None
        report = campaign_totals(cid, span, campaign, machines)
        return JSONResponse(report.as_dict(), headers={"cache-control": "no-store"})
