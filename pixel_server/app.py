"""``create_app(settings)``: routes, exception handlers and lifespan; declarations only."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.exceptions import HTTPException
from starlette.routing import Mount, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from . import openapi
from .api import HitsApi, http_error
from .audit_api import AuditApi
from .campaigns_api import CampaignsApi
from .config import Settings
from .dashboard import Dashboard
from .endpoints import PixelEndpoint, RedirectEndpoint, SignedPixelEndpoint
from .ingest import EventsEndpoint
from .keys import Keyring
from .links_api import LinksApi
from .loss_api import LossApi
from .ops import Ops
from .revocations_api import RevocationsApi
from .runtime import Runtime, app_lifespan
from .secheaders import SecurityHeaders, with_hsts
from .stats_api import StatsApi
from .store.base import Store
from .subjects_api import SubjectsApi
from .tracker import TrackerScript
from .wrap_api import WrapApi


class PixelApp:
    """The ASGI entry point. The three tracking routes go straight to their endpoints; every
    other request (and the lifespan) goes through Starlette.

    The tracking routes are the hot path, and Starlette's middleware stack and router cost
    about as much CPU as the pixel itself (docs/benchmarks.md). The matching here is the same
    as the Starlette routes registered for them: ``{token}`` is one non-empty path segment.
    """

    def __init__(self, app: Starlette, rt: Runtime) -> None:
        self.starlette = app
        hsts = rt.settings.hsts_seconds
        self.app: ASGIApp = SecurityHeaders(app, hsts)
        self._hsts = hsts
        self.runtime = rt
        self._pixel = PixelEndpoint(rt)
        self._signed = SignedPixelEndpoint(rt)
        self._redirect = RedirectEndpoint(rt)
        self._events = EventsEndpoint(rt)

    @property
    def state(self) -> State:
        return self.starlette.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self._route(scope)
        if self._hsts and endpoint is not self.app:
            send = with_hsts(send, self._hsts)
        await endpoint(scope, receive, send)

    def _route(self, scope: Scope) -> ASGIApp:
        if scope["type"] != "http":
            return self.app
        path: str = scope["path"]
        endpoint: ASGIApp
        if path == "/p.gif":
            return self._pixel
        if path == "/e":
            return self._events
        if path.startswith("/p/") and path.endswith(".gif"):
            token, endpoint = path[3:-4], self._signed
        elif path.startswith("/r/"):
            token, endpoint = path[3:], self._redirect
        else:
            return self.app
        if not token or "/" in token:
            return self.app
        scope["path_params"] = {"token": token}
        return endpoint


def create_app(settings: Settings, store: Store | None = None) -> PixelApp:
    """The ASGI app. ``store`` replaces the SQLite store at ``settings.db`` (tests)."""
    rt = Runtime(settings, Keyring.create_or_load(settings), store=store)
    app = Starlette(
        routes=[
            Route("/p.gif", PixelEndpoint(rt)),
            Route("/p/{token}.gif", SignedPixelEndpoint(rt)),
            Route("/r/{token}", RedirectEndpoint(rt)),
            Route("/e", EventsEndpoint(rt)),
            *Ops(rt).routes(),
            *TrackerScript().routes(),
            *CampaignsApi(rt).routes(),  # /api/campaigns/{cid}: outside the Mount (why: there)
            *SubjectsApi(rt).routes(),  # /api/subjects/{uid}: likewise
            *Dashboard(rt).routes(),
            Mount(
                "/api",
                routes=[
                    *HitsApi(rt).routes(),
                    *LinksApi(rt).routes(),
                    *WrapApi(rt).routes(),
                    *LossApi(rt).routes(),
                    *StatsApi(rt).routes(),
                    *AuditApi(rt).routes(),
                    *RevocationsApi(rt).routes(),
                    *SubjectsApi(rt).api_routes(),
                    *openapi.routes(),
                ],
            ),
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=app_lifespan(rt),
    )
    without_slash_redirects(app.router)
    app.state.runtime = rt
    return PixelApp(app, rt)


def without_slash_redirects(router: Router) -> None:
    """The only redirects this service makes are signed ones (and the dashboard's fixed paths
    to its login page and back). Starlette's routers answer a
    near miss (``/api/hits/``) with a 307 to the other slash variant, built from the ``Host``
    header; every ``Mount`` has a router of its own, so switch that off all the way down."""
    router.redirect_slashes = False
    for route in router.routes:
        if isinstance(route, Mount) and isinstance(route.app, Router):
            without_slash_redirects(route.app)


def app_from_env() -> ASGIApp:
    """Factory for ``uvicorn --factory pixel_server.app:app_from_env`` and the worker processes."""
    return create_app(Settings.from_env())
