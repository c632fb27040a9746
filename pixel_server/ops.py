"""Operations endpoints: liveness, readiness and Prometheus metrics.

``/metrics`` is open unless ``PIXEL_METRICS_TOKEN`` is set; then it wants that bearer token
(compared in constant time, the same check as the read API's), and answers 401 otherwise.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .api import ApiError, check_token, error_response
from .runtime import Runtime


class Ops:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def routes(self) -> list[Route]:
        return [
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
        ]

    async def healthz(self, request: Request) -> Response:
        """200 while the process is up and serving."""
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """200 when the last write succeeded and the queue is under 80%; else 503 and why."""
        writer = self.rt.writer
        problems: list[str] = []
        if writer is None:
            problems.append("writer not started")
        else:
            if not writer.healthy:
                problems.append(f"store not writable: {writer.last_error}")
            if writer.spill is not None and writer.spill.pending:
                problems.append(f"{writer.spill.bytes} bytes in spill journals await replay")
            # a healthy commit takes milliseconds; half the ack timeout is already an outage
            if writer.stalled_for > writer.ack_timeout / 2:
                problems.append(f"store stalled: a commit has waited {writer.stalled_for:.1f}s")
            if writer.saturated:
                problems.append(f"queue {writer.depth}/{writer.queue_max} is over 80% full")
        body = {
            "status": "degraded" if problems else "ready",
            "queue_depth": 0 if writer is None else writer.depth,
            "problems": problems,
        }
        return JSONResponse(body, status_code=503 if problems else 200)

    async def metrics(self, request: Request) -> Response:
        token = self.rt.settings.metrics_token
        if token:
            try:
                check_token(request, (token,))
            except ApiError as exc:
                return error_response(exc.status, exc.code, exc.message, exc.headers)
        return Response(self.rt.metrics.render(), media_type=CONTENT_TYPE_LATEST)
