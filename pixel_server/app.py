"""``create_app(settings)``: routes, exception handlers and lifespan; declarations only."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Mount, Route

from .api import HitsApi, http_error
from .config import Settings
from .endpoints import PixelEndpoint, RedirectEndpoint, SignedPixelEndpoint
from .keys import Keyring
from .ops import Ops
from .runtime import Runtime, app_lifespan
from .store.base import Store


def create_app(settings: Settings, store: Store | None = None) -> Starlette:
    """The ASGI app. ``store`` replaces the SQLite store at ``settings.db`` (tests)."""
    rt = Runtime(settings, Keyring.from_settings(settings), store=store)
    app = Starlette(
        routes=[
            Route("/p.gif", PixelEndpoint(rt)),
            Route("/p/{token}.gif", SignedPixelEndpoint(rt)),
            Route("/r/{token}", RedirectEndpoint(rt)),
            *Ops(rt).routes(),
            Mount("/api", routes=HitsApi(rt).routes()),
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=app_lifespan(rt),
    )
    app.state.runtime = rt
    return app


def app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory pixel_server.app:app_from_env`` and the worker processes."""
    return create_app(Settings.from_env())
