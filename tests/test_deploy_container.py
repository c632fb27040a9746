"""deploy/Dockerfile, built and run with podman as its own comment says to run it.

The image is built from the repository with the Dockerfile unchanged except for its base
(``--build-arg PYTHON_IMAGE``): no registry but the package registries is reachable here, so
the base is a Debian bookworm made with debootstrap (python3 is 3.11 there, as in
``python:3.11-slim``). The container then gets ``deploy/pixel.env.example`` as its env file,
a named volume on /data and a published port, exactly as the Dockerfile's run example, and
must answer a pixel and keep the hit and the key on the volume across a stop.

Needs podman, runc and debootstrap (Debian packages). Skipped when one is missing, unless
PIXEL_REQUIRE_CONTAINER=1 (set by .ci/run, which installs them), where that fails.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import free_port

REPO = Path(__file__).resolve().parent.parent
BASE_IMAGE = "localhost/pixel-test-base:bookworm"
IMAGE = "localhost/pixel-server:test"
# This machine's kernel runs cgroups in hybrid mode, which crun refuses, and does not let a
# container raise its rlimits to podman's defaults: runc and explicit limits work.
RUNTIME = ("--runtime", shutil.which("runc") or "/usr/sbin/runc")
LIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
# Where this machine's TLS trust store is: package registries are reached through it.
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")

# the first run makes the base image (debootstrap, about a minute) and builds (about 20 s)
pytestmark = [pytest.mark.server, pytest.mark.timeout(900)]


def podman(*args: str, timeout: float = 120, check: bool = True) -> str:
    done = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])}: {done.stderr[-2000:]}")
    return done.stdout


def missing_tools() -> list[str]:
    tools = ["podman", "debootstrap"]
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if not Path(RUNTIME[1]).exists():
        missing.append("runc")
    return missing


def ensure_base_image() -> None:
    """A minimal Debian with python3 and venv, trusting this machine's CA bundle."""
    if subprocess.run(["podman", "image", "exists", BASE_IMAGE], check=False).returncode == 0:
        return
    with tempfile.TemporaryDirectory(prefix="pixel-rootfs-") as root:
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=python3,python3-venv,ca-certificates",
                "bookworm",
                root,
            ],
            capture_output=True,
            check=True,
            timeout=900,
        )
        env = []
        if HOST_CA.exists():
            shutil.copy(HOST_CA, Path(root, "etc/ssl/certs/ca-certificates.crt"))
            env = ["--change", "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt"]
        with subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE) as tar:
            subprocess.run(
                ["podman", "import", *env, "-", BASE_IMAGE],
                stdin=tar.stdout,
                capture_output=True,
                check=True,
                timeout=600,
            )
            tar.wait(timeout=60)  # leaving the block closes its pipe


@pytest.fixture(scope="module")
def image() -> str:
    missing = missing_tools()
    if missing:
        if os.environ.get("PIXEL_REQUIRE_CONTAINER") == "1":
            pytest.fail(f"PIXEL_REQUIRE_CONTAINER=1 but {', '.join(missing)} not installed")
        pytest.skip(
            f"{', '.join(missing)} not installed (apt-get install podman runc debootstrap); "
            "set PIXEL_REQUIRE_CONTAINER=1 to fail"
        )
    ensure_base_image()
    podman(
        "build",
        *RUNTIME,
        *LIMITS,
        "--network",
        "host",
        "--build-arg",
        f"PYTHON_IMAGE={BASE_IMAGE}",
        "-f",
        str(REPO / "deploy" / "Dockerfile"),
        "-t",
        IMAGE,
        str(REPO),
        timeout=900,
    )
    podman("image", "prune", "-f", check=False)  # the previous build's untagged layers
    return IMAGE


@pytest.fixture
def volume() -> Iterator[str]:
    name = f"pixel-test-{uuid.uuid4().hex[:8]}"
    podman("volume", "create", name)
    yield name
    podman("volume", "rm", "-f", name, check=False)


def wait_healthy(url: str, container: str, deadline_s: float = 120) -> None:
    """Poll /healthz; a busy machine may take a while to start Python in a container."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        state = podman("inspect", "-f", "{{.State.Running}}", container, check=False).strip()
        if state == "false":
            logs = podman("logs", container, check=False)
            raise AssertionError(f"container exited: {logs[-2000:]}")
        time.sleep(0.5)
    raise AssertionError(f"no answer from {url} in {deadline_s} s")


def test_image_runs_as_documented_and_keeps_hits_on_the_volume(
    image: str, volume: str, tmp_path: Path
) -> None:
    """`docker run -v DATA:/data -p ... --env-file pixel.env` serves, keeps data on /data."""
    env_file = tmp_path / "pixel.env"
    shutil.copy(REPO / "deploy" / "pixel.env.example", env_file)
    port = free_port()
    name = f"pixel-test-{uuid.uuid4().hex[:8]}"
    podman(
        "run",
        "-d",
        "--name",
        name,
        *RUNTIME,
        *LIMITS,
        "-v",
        f"{volume}:/data",
        "-p",
        f"127.0.0.1:{port}:8000",
        "--env-file",
        str(env_file),
        image,
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}/healthz", name)
        answer = httpx.get(f"http://127.0.0.1:{port}/p.gif?cid=container&eid=c-1", timeout=10)
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "image/gif"
        user = podman("exec", name, "id", "-un").strip()
        assert user == "pixel"  # the image does not run as root
        podman("stop", "-t", "30", name, timeout=60)
        status = podman("inspect", "-f", "{{.State.ExitCode}}", name).strip()
        assert status == "0"
        logs = podman("logs", name)
        assert "Traceback" not in logs
    finally:
        podman("rm", "-f", name, check=False)
    data = Path(podman("volume", "inspect", "-f", "{{.Mountpoint}}", volume).strip())
    assert (data / "pixel.db.key").exists()
    with sqlite3.connect(data / "pixel.db") as db:
        rows = db.execute("SELECT kind, cid, eid FROM hits").fetchall()
    assert rows == [("view", "container", "c-1")]
