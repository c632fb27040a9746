"""The requests that are not load: a server's readiness, and the one real request of each
scenario, checked byte for byte (status, the exact 43-byte GIF, no-store; for the redirect a
302 to the signed target; for an event post a 200 with every event accepted). Also the
request path of each scenario (tokens from the real CLI).
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from eventload import body_template, fill
from scenarios import (
    EVENTS_PATH,
    GIF,
    HEADERS,
    LINK_ARGS,
    PIXEL_PATH,
    REDIRECT_TARGET,
    SIGNED_PIXEL_ARGS,
    Scenario,
)
from servers import PIXEL_SERVER, READY_TIMEOUT_S, Server, StartError


def cli_path(args: Sequence[str], env: dict[str, str]) -> str:
    """Run a pixel-server command that prints a URL first; return that URL's path."""
    out = subprocess.run(
        [str(PIXEL_SERVER), *args], env=env, capture_output=True, text=True, check=True
    ).stdout
    url = out.strip().splitlines()[0]
    return urlsplit(url).path


def request_path(sc: Scenario, env: dict[str, str]) -> str:
    if sc.target == "redirect":
        return cli_path(LINK_ARGS, env)
    if sc.target == "signed":
        return cli_path(SIGNED_PIXEL_ARGS, env)
    if sc.events:
        return EVENTS_PATH
    return PIXEL_PATH


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, dict[str, str], bytes]:
    return http_request(port, "GET", path, HEADERS, timeout=timeout)


def http_request(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None = None,
    timeout: float = 2.0,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def batch_totals(port: int) -> tuple[float, float] | None:
    """(hits, batches) the writer has committed so far, from ``pixel_batch_size`` in /metrics
    (its ``_sum`` and ``_count``); None if /metrics does not answer with them."""
    try:
        status, _, body = http_get(port, "/metrics")
    except (OSError, http.client.HTTPException):
        return None
    totals: dict[str, float] = {}
    for line in body.decode(errors="replace").splitlines():
        name, _, value = line.partition(" ")
        if name in ("pixel_batch_size_sum", "pixel_batch_size_count"):
            totals[name] = float(value)
    if status != 200 or len(totals) != 2:
        return None
    return totals["pixel_batch_size_sum"], totals["pixel_batch_size_count"]


def wait_ready(server: Server, proc: subprocess.Popen[bytes], port: int) -> None:
    """Until the server answers (or, for nginx, accepts); StartError if it dies first."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StartError(f"server exited with {proc.returncode} before it was ready")
        try:
            if server.ready_path is None:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    pass
            else:
                status, _, _ = http_get(port, server.ready_path, timeout=1)
                if server.ready_status is not None and status != server.ready_status:
                    raise ConnectionError(f"{server.ready_path} answered {status}")
        except (OSError, http.client.HTTPException):
            time.sleep(0.1)
            continue
        time.sleep(0.3)  # a server that lost the port race dies now; wait_ready must see it
        if proc.poll() is not None:
            raise StartError(f"server exited with {proc.returncode} right after start")
        return
    raise StartError(f"server not ready after {READY_TIMEOUT_S:.0f} s")


def check_response(sc: Scenario, port: int, path: str) -> dict[str, Any]:
    """One real request, checked byte for byte. It records one hit (or log line), or for an
    event scenario ``sc.events_per_request`` events."""
    if sc.events:
        return check_events(sc, port, path)
    status, headers, body = http_get(port, path)
    info: dict[str, Any] = {"path": path, "status": status, "body_bytes": len(body)}
    if sc.target == "redirect":
        info["location"] = headers.get("location")
        ok = status == 302 and headers.get("location", "").startswith(REDIRECT_TARGET)
    else:
        info["content_type"] = headers.get("content-type")
        info["cache_control"] = headers.get("cache-control")
        info["body_is_empty_gif"] = body == GIF
        ok = status == 200 and body == GIF and "no-store" in headers.get("cache-control", "")
    if not ok:
        raise RuntimeError(f"{sc.name}: unexpected response {info}")
    return info


def check_events(sc: Scenario, port: int, path: str) -> dict[str, Any]:
    """One event post like the load's (its eids start with "probe", which wrk's never do):
    a 200 JSON answer with every event accepted."""
    sent = fill(body_template(sc), f"probe{port}")
    status, headers, body = http_request(port, "POST", path, sc.headers, sent)
    info: dict[str, Any] = {
        "path": path,
        "status": status,
        "content_type": headers.get("content-type"),
        "request_bytes": len(sent),
        "body_bytes": len(body),
    }
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    expected = sc.events_per_request
    results = answer.get("results") if isinstance(answer, dict) else None
    info["answer"] = (
        {k: answer.get(k) for k in ("accepted", "duplicates", "rejected")}
        if isinstance(answer, dict)
        else body[:200].decode(errors="replace")
    )
    ok = (
        status == 200
        and headers.get("content-type", "").startswith("application/json")
        and info["answer"] == {"accepted": expected, "duplicates": 0, "rejected": 0}
        and isinstance(results, list)
        and [r.get("status") for r in results] == ["accepted"] * expected
    )
    if not ok:
        if isinstance(results, list):
            info["not_accepted"] = [r for r in results if r.get("status") != "accepted"][:3]
        raise RuntimeError(f"{sc.name}: unexpected response {info}")
    return info
