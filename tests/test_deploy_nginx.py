"""deploy/nginx.conf in front of a real server: client IPs pass through, limits apply.

Needs nginx (Debian package `nginx`). Skipped when it is missing, unless
PIXEL_REQUIRE_NGINX=1 (set by .ci/run, which installs it), where a missing nginx fails.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import nginxtest
import pytest
from nginxtest import get_from

from conftest import API_TOKEN, ServerProcess, free_port

pytestmark = pytest.mark.server


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Callable[[int], int]]:
    """Start nginx with deploy/nginx.conf pointed at an upstream port; return its port."""
    binary = nginxtest.require()
    procs: list[subprocess.Popen[bytes]] = []

    def start(upstream_port: int) -> int:
        port = free_port()
        prefix = tmp_path / "nginx"
        prefix.mkdir()
        text = nginxtest.CONF.read_text()
        assert "server 127.0.0.1:8000;" in text
        text = text.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};")
        conf = prefix / "nginx.conf"
        conf.write_text(nginxtest.listening_on(port, text))
        argv = [binary, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"]
        procs.append(nginxtest.start(argv, port, prefix / "error.log"))
        return port

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def test_client_ip_passes_through_and_forged_header_is_ignored(
    server_factory: Callable[..., ServerProcess], nginx: Callable[[int], int]
) -> None:
    """Behind deploy/nginx.conf the app records the real client, not one it claims to be."""
    server = server_factory(env={"PIXEL_TRUSTED_PROXIES": "127.0.0.1", "PIXEL_IP_MODE": "full"})
    port = nginx(server.port)
    assert get_from("127.0.0.3", port, "/p.gif?cid=proxied").status_code == 200
    forged = {"x-forwarded-for": "198.51.100.66"}
    assert get_from("127.0.0.4", port, "/p.gif?cid=forged", forged).status_code == 200
    auth = {"authorization": f"Bearer {API_TOKEN}"}
    hits = httpx.get(f"{server.url}/api/hits", headers=auth).json()["hits"]
    assert {hit["cid"]: hit["ip"] for hit in hits} == {
        "proxied": "127.0.0.3",
        "forged": "127.0.0.4",
    }


def test_proxy_refuses_oversized_request_lines(
    server_factory: Callable[..., ServerProcess], nginx: Callable[[int], int]
) -> None:
    """A request line over 8 KB is answered 414 by nginx and never reaches the app."""
    server = server_factory()
    port = nginx(server.port)
    response = get_from("127.0.0.1", port, "/p.gif?cid=" + "x" * 9000)
    assert response.status_code == 414
    assert server.rows() == []


def test_metrics_are_not_public_through_the_proxy(
    server_factory: Callable[..., ServerProcess], nginx: Callable[[int], int]
) -> None:
    """/metrics answers only to localhost through the proxy."""
    server = server_factory()
    port = nginx(server.port)
    assert get_from("127.0.0.5", port, "/metrics").status_code == 403
    assert get_from("127.0.0.1", port, "/metrics").status_code == 200
