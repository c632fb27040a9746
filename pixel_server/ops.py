"""Operations endpoints: liveness, readiness and Prometheus metrics.

``/metrics`` is open unless ``PIXEL_METRICS_TOKEN`` is set; then it wants that bearer token
(compared in constant time, the same check as the read API's), and answers 401 otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .api import ApiError, attempt, check_token, error_response
from .loss import DAY_MS, day_span, total
from .runtime import Runtime
from .store.base import Store

LOSS_REFRESH_S = 60.0
log = logging.getLogger("pixel_server.ops")


class Ops:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._loss_read = -1e9  # monotonic time the loss gauges were last read
        self._loss_task: asyncio.Task[None] | None = None

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
            given = request.headers.get("authorization")
            try:
                network = attempt(self.rt, "metrics", request) if given else None
                try:
                    check_token(request, (token,))
                except ApiError:
                    if given:
                        self.rt.attempt_failed("metrics", network)
                    raise
            except ApiError as exc:
                return error_response(exc.status, exc.code, exc.message, exc.headers)
        self._refresh_loss()
        return Response(self.rt.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    def _refresh_loss(self) -> None:
        """Start reading the loss report of the sessions begun since yesterday (UTC) into
        its gauges, at most once a minute and in the background: a scrape never waits on
        the store (a locked table would hold it), and shows the values read last."""
        now = time.monotonic()
        running = self._loss_task is not None and not self._loss_task.done()
        if running or now - self._loss_read < LOSS_REFRESH_S or self.rt.store is None:
            return
        self._loss_read = now
        self._loss_task = asyncio.create_task(self._read_loss(self.rt.store))

    async def _read_loss(self, store: Store) -> None:
        now_ms = time.time_ns() // 1_000_000
        try:
            rows = await store.loss_report(day_span(now_ms - DAY_MS, now_ms))
        except Exception:  # the store is down: the gauges keep their last values
            log.warning("loss report for /metrics not read", exc_info=True)
            return
        whole = total(rows)
        for name in ("sent", "received", "lost", "repeated", "duplicates"):
            self.rt.metrics.loss.labels(name).set(getattr(whole, name))
