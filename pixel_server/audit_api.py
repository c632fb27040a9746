"""``GET /api/audit``: the audit (audit.py) as JSON, behind a read token or key; 200 with
``"ok": false`` when a threshold is crossed (the CLI exits 1 instead)."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .api import ApiError, guard, store_unavailable
from .audit import AuditConfig, check_span, load_config, run
from .eventschema import Registry
from .eventschema import load as load_registry
from .query import QueryError, parse_time, single_params
from .runtime import Runtime


class AuditApi:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        s = rt.settings
        self.config = load_config(s.audit_config) if s.audit_config else AuditConfig()
        self.registry: Registry | None = load_registry(s.event_schemas) if s.event_schemas else None

    def routes(self) -> list[Route]:
        return [Route("/audit", guard(self.rt, self.audit), methods=["GET"])]

    async def audit(self, request: Request) -> Response:
        """``since`` (default 7d), ``until`` (now), ``cid`` (every campaign)."""
        now = time.time_ns() // 1_000_000
        try:
            params = single_params(
                request.query_params.multi_items(), ("since", "until", "cid"), "parameter"
            )
            since = parse_time(params.get("since") or "7d", now, "since") or 0
            until = parse_time(params.get("until"), now, "until") or now
            since, until = check_span((since, max(until, since + 1)))
        except QueryError as exc:
            raise ApiError(400, exc.code, str(exc)) from None
        assert self.rt.store is not None
        try:
            report = await run(
                self.rt.store,
                (since, until),
                params.get("cid") or None,
                self.config,
                self.registry,
                self.rt.settings.report_zone,
            )
        except Exception:  # any store failure: logged, answered 503 in our shape
            raise store_unavailable("/api/audit") from None
        return JSONResponse(report.as_dict(), headers={"cache-control": "no-store"})
