"""A real nginx for the tests: where it is, starting it, and requests from chosen addresses.

Needs nginx (Debian package `nginx`). Without it the tests that need it skip, unless
PIXEL_REQUIRE_NGINX=1 (set by .ci/run, which installs it), where they fail instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest

CONF = Path(__file__).resolve().parent.parent / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
START_DEADLINE = 60.0  # a readiness poll; generous for a busy machine


def require() -> str:
    """The nginx binary, or skip (fail with PIXEL_REQUIRE_NGINX=1)."""
    if NGINX is None:
        if os.environ.get("PIXEL_REQUIRE_NGINX") == "1":
            pytest.fail("nginx is required (PIXEL_REQUIRE_NGINX=1) but not installed")
        pytest.skip(
            "nginx is not installed (apt-get install nginx); set PIXEL_REQUIRE_NGINX=1 to fail"
        )
    return NGINX


def listening_on(port: int, text: str) -> str:
    """deploy/nginx.conf's text with its `listen 8080` (published as port 80) on a loopback
    port."""
    listen = "listen 8080 default_server;"
    assert listen in text
    return text.replace(listen, f"listen 127.0.0.1:{port} default_server;")


def start(
    argv: list[str], port: int, log: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Run ``argv`` (nginx in the foreground, or a shell that execs it) and wait until
    ``port`` accepts connections; its stderr goes to ``log``."""
    with log.open("wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env)
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        if proc.poll() is not None:
            raise RuntimeError(f"nginx died: {log.read_text()}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("nginx did not start")


def get_from(
    source_ip: str, port: int, path: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    """A GET whose TCP connection comes from ``source_ip`` (any 127.x address works locally)."""
    with client_from(source_ip, port) as client:
        return client.get(path, headers=headers)


def client_from(source_ip: str, port: int) -> httpx.Client:
    """A client whose connections to 127.0.0.1:``port`` come from ``source_ip``."""
    transport = httpx.HTTPTransport(local_address=source_ip)
    return httpx.Client(transport=transport, base_url=f"http://127.0.0.1:{port}", timeout=30)
