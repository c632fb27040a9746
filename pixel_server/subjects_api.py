"""``GET`` and ``DELETE /api/subjects/{uid}`` (a data subject's export and erasure,
erasure.py) and ``GET /api/admin-log`` (adminlog.py): admin scope."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import campaigns_api as campaigns_api  # registers the `campaign` (any text) convertor
from .api import ApiError, guard, store_unavailable
from .erasure import BadSubject, Subject, erase, export
from .query import QueryError, parse_time
from .runtime import Runtime

MAX_LOG = 10_000


class SubjectsApi:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def routes(self) -> list[Route]:
        """``/api/subjects/{uid}``: outside the ``/api`` Mount, whose ``{path:path}`` stops at
        a line break (campaigns_api.py): a uid is any text."""
        return [
            Route(
                "/api/subjects/{uid:campaign}",
                guard(self.rt, self.subject, "admin"),
                methods=["GET", "DELETE"],
            )
        ]

    def api_routes(self) -> list[Route]:
        """The routes under the ``/api`` Mount."""
        return [Route("/admin-log", guard(self.rt, self.admin_log, "admin"), methods=["GET"])]

    def _secret(self) -> str:
        keyring = self.rt.keyring
        return keyring.secrets[keyring.signing_id]

    async def subject(self, request: Request) -> Response:
        try:
            subject = Subject(request.path_params["uid"])
        except BadSubject as exc:
            raise ApiError(400, "bad_subject", str(exc)) from None
        store = self.rt.store
        assert store is not None
        try:
            if request.method == "GET":
                return JSONResponse(await export(store, subject, self._secret(), "api"))
            done = await erase(store, subject, self._secret(), self.rt.settings.spill_path, "api")
        except ApiError:
            raise
        except Exception:  # the store failed: nothing is claimed done
            raise store_unavailable(request.scope["path"]) from None
        return JSONResponse(done.as_dict())

    async def admin_log(self, request: Request) -> Response:
        now = time.time_ns() // 1_000_000
        params = request.query_params
        try:
            since = parse_time(params.get("since", "30d"), now, "since") or 0
            until = parse_time(params.get("until"), now, "until") or now + 1
        except QueryError as exc:
            raise ApiError(400, exc.code, str(exc)) from None
        store = self.rt.store
        assert store is not None
        try:
            entries = await store.admin_log((since, until), MAX_LOG)
        except Exception:
            raise store_unavailable(request.scope["path"]) from None
        return JSONResponse({"entries": [entry.as_dict() for entry in entries]})
