"""``/dashboard``: the campaign overview, people and machines, a chart with outliers and
smoothing, breakdowns, the recent hits, CSV of every table — behind a login with a read key
(dashboard_session.py), pages from dashboard_html.py, figures from stats.py (the reports
of ``GET /api/stats`` and ``pixel-server stats``, so the three agree). docs/dashboard.md.

Every answer carries a strict Content-Security-Policy (no script at all, styles only from
this server), ``X-Frame-Options`` and ``frame-ancestors 'none'``, ``nosniff``,
``Referrer-Policy: same-origin`` and ``Cache-Control: no-store``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from importlib.resources import files
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from . import dashboard_html as html
from .authlimit import TooManyFailures
from .dashboard_session import (
    CSRF_COOKIE,
    MAX_AGE_S,
    PATH,
    SESSION_COOKIE,
    Session,
    Sessions,
    new_csrf,
    same_origin,
    tokens_equal,
)
from .export import csv_header, csv_rows
from .query import HitQuery, QueryError
from .runtime import Runtime
from .stats import BASE_METRICS, Stats, parse_request, run

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self';"
    " frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    # not no-referrer: with it a browser sends "Origin: null" on the page's own form posts;
    # same-origin still tells no other site where a click on the dashboard came from
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
CSS = files("pixel_server").joinpath("static/dashboard.css")
CHART_PARAM = "metric"
TABLE_METRICS = ("views", "opens", "clicks", "events", "uniques", "ctor")
TRAFFIC_METRICS = ("hits", "views", "opens", "clicks", "events")
RECENT_HITS = 50
EXPORT_HITS = 10_000
MAX_FORM_BYTES = 4096


def _headers(response: Response) -> Response:
    response.headers.update(HEADERS)
    return response


class Dashboard:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.sessions = Sessions(rt)
        self.css = CSS.read_bytes()

    def routes(self) -> list[Route]:
        return [
            Route(PATH, self.home, methods=["GET"]),
            Route(f"{PATH}/login", self.login, methods=["GET", "POST"]),
            Route(f"{PATH}/logout", self.logout, methods=["POST"]),
            Route(f"{PATH}/export.csv", self.export, methods=["GET"]),
            Route(f"{PATH}/static/dashboard.css", self.stylesheet, methods=["GET"]),
        ]

    async def stylesheet(self, _request: Request) -> Response:
        response = Response(self.css, media_type="text/css")
        _headers(response)
        response.headers["cache-control"] = "public, max-age=3600"
        return response

    def _login_page(self, status: int = 200, error: str = "") -> Response:
        csrf = new_csrf()
        response = HTMLResponse(html.login_page(csrf, error), status_code=status)
        self.sessions.set_cookie(response, CSRF_COOKIE, csrf, 3600)
        return _headers(response)

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            if await self.sessions.current(request) is not None:
                return _headers(RedirectResponse(PATH, status_code=303))
            return self._login_page()
        if not same_origin(request):
            return self._login_page(403, "This form must be sent from this server's page.")
        form = await self._form(request)
        if form is None or not tokens_equal(form.get("csrf"), request.cookies.get(CSRF_COOKIE)):
            return self._login_page(403, "The form expired: log in again.")
        try:
            network = self.rt.may_attempt("dashboard", request.scope)
        except TooManyFailures as exc:
            wait = f"Too many wrong keys from your network: retry in {exc.retry_after} s."
            page = self._login_page(429, wait)
            page.headers["retry-after"] = str(exc.retry_after)
            return page
        who = await self.sessions.log_in(form.get("key", ""))
        if who is None:
            self.rt.attempt_failed("dashboard", network)
            return self._login_page(401, "That key was not accepted (a read-scoped API key).")
        cookie, _ = self.sessions.issue(who)
        response = RedirectResponse(PATH, status_code=303)
        self.sessions.set_cookie(response, SESSION_COOKIE, cookie, MAX_AGE_S)
        response.delete_cookie(CSRF_COOKIE, path=PATH)
        return _headers(response)

    async def _form(self, request: Request) -> dict[str, str] | None:
        """The urlencoded form of a POST, small, each field once; None otherwise."""
        if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            return None
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return None
        try:
            pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:  # a malformed body: refused like a missing token
            return None
        fields: dict[str, str] = {}
        for name, value in pairs:
            if name in fields:
                return None
            fields[name] = value
        return fields

    async def logout(self, request: Request) -> Response:
        session = await self.sessions.current(request)
        form = await self._form(request) if same_origin(request) else None
        if session is not None and (
            form is None or not tokens_equal(form.get("csrf"), session.csrf)
        ):
            return _headers(HTMLResponse("The form expired: reload the page.", status_code=403))
        response = RedirectResponse(f"{PATH}/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=PATH)
        return _headers(response)

    async def _session(self, request: Request) -> Session | Response:
        session = await self.sessions.current(request)
        if session is None:
            return _headers(RedirectResponse(f"{PATH}/login", status_code=303))
        return session

    def _view(self, request: Request) -> tuple[dict[str, str], list[tuple[str, str]], str]:
        """The view's parameters (for links), the report's pairs, and the chart's metric."""
        given = request.query_params.multi_items()
        pairs = [(k, v) for k, v in given if k not in ("table", "dim")]
        view = dict(pairs)
        metric = view.get(CHART_PARAM) or "hits"
        return view, [(k, v) for k, v in pairs if k != CHART_PARAM], metric

    async def _report(self, pairs: Sequence[tuple[str, str]], **changes: str) -> Stats:
        assert self.rt.store is not None
        merged = [(k, v) for k, v in pairs if k not in changes] + [
            (k, v) for k, v in changes.items() if v
        ]
        query = parse_request(
            merged, time.time_ns() // 1_000_000, self.rt.store.spec, self.rt.settings.report_zone
        )
        return await run(self.rt.store, query)

    def _revenue(self) -> tuple[str, ...]:
        assert self.rt.store is not None
        summed = self.rt.store.spec.summed()
        if not summed:
            return ()
        return (f"sum:{'total_value' if 'total_value' in summed else summed[0]}",)

    async def _reports(self, pairs: list[tuple[str, str]], metric: str) -> dict[str, Stats]:
        table = ",".join((*TABLE_METRICS, *self._revenue()))
        without_cid = [(k, v) for k, v in pairs if k != "cid"]
        reports = {
            "overview": await self._report(without_cid, group="cid", metrics=table),
            "traffic": await self._report(
                pairs, group="traffic", machines="1", metrics=",".join(TRAFFIC_METRICS)
            ),
            "chart": await self._report(pairs, metrics=metric),
        }
        for dim in html.BREAKDOWNS:
            reports[dim] = await self._report(pairs, group=dim, metrics=table)
        return reports

    def _hits_query(self, chart: Stats, view: dict[str, str], limit: int) -> HitQuery:
        equals = {k: view[k] for k in ("cid", "kind", "traffic") if view.get(k)}
        return HitQuery(
            since_ms=chart.query.span[0], until_ms=chart.query.span[1], equals=equals, limit=limit
        )

    async def home(self, request: Request) -> Response:
        session = await self._session(request)
        if isinstance(session, Response):
            return session
        view, pairs, metric = self._view(request)
        metrics = (*BASE_METRICS, *self._revenue())
        if metric not in metrics:
            body = html.dashboard_page(
                view, session.csrf, metric, metrics, {}, [], "metric: one of " + ", ".join(metrics)
            )
            return _headers(HTMLResponse(body, status_code=400))
        try:
            reports = await self._reports(pairs, metric)
            assert self.rt.store is not None
            hits = await self.rt.store.query(self._hits_query(reports["chart"], view, RECENT_HITS))
        except QueryError as exc:
            body = html.dashboard_page(view, session.csrf, metric, metrics, {}, [], str(exc))
            return _headers(HTMLResponse(body, status_code=400))
        except Exception:  # the store cannot be read: say so, no traceback
            body = html.dashboard_page(
                view, session.csrf, metric, metrics, {}, [], "The store cannot be read now."
            )
            return _headers(HTMLResponse(body, status_code=503))
        shown = {name: report.as_dict() for name, report in reports.items()}
        body = html.dashboard_page(view, session.csrf, metric, metrics, shown, hits)
        return _headers(HTMLResponse(body))

    async def export(self, request: Request) -> Response:
        """``table`` = overview, traffic, series (the chart's), breakdown (with ``dim``) or
        hits, of the view the other parameters name."""
        session = await self._session(request)
        if isinstance(session, Response):
            return session
        view, pairs, metric = self._view(request)
        table = request.query_params.get("table", "")
        dim = request.query_params.get("dim", "")
        try:
            text = await self._csv(table, dim, view, pairs, metric)
        except QueryError as exc:
            return _headers(Response(str(exc), status_code=400, media_type="text/plain"))
        except Exception:
            return _headers(Response("The store cannot be read now.", status_code=503))
        response = Response(text, media_type="text/csv; charset=utf-8")
        response.headers["content-disposition"] = f'attachment; filename="{table or "table"}.csv"'
        return _headers(response)

    async def _csv(
        self, table: str, dim: str, view: dict[str, str], pairs: list[tuple[str, str]], metric: str
    ) -> str:
        metrics = ",".join((*TABLE_METRICS, *self._revenue()))
        if table == "overview":
            pairs = [(k, v) for k, v in pairs if k != "cid"]
            return (await self._report(pairs, group="cid", metrics=metrics)).csv("breakdown")
        if table == "traffic":
            report = await self._report(
                pairs, group="traffic", machines="1", metrics=",".join(TRAFFIC_METRICS)
            )
            return report.csv("breakdown")
        if table == "series":
            return (await self._report(pairs, metrics=metric)).csv("series")
        if table == "breakdown" and dim in html.BREAKDOWNS:
            return (await self._report(pairs, group=dim, metrics=metrics)).csv("breakdown")
        if table == "hits":
            chart = await self._report(pairs, metrics="hits")
            assert self.rt.store is not None
            rows = await self.rt.store.query_rows(self._hits_query(chart, view, EXPORT_HITS))
            return csv_header() + csv_rows(rows)
        raise QueryError("table is one of overview, traffic, series, breakdown (with dim), hits")
