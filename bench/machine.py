"""The tools the bench needs, and the machine, versions and commit it reports."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scenarios import ROOT

PACKAGES = {"nginx": "nginx", "wrk": "wrk", "taskset": "util-linux"}
GIT_STATUS_ARGS = ("--untracked-files=no", "--", "pixel_server")


def find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def ensure_tools() -> dict[str, str]:
    """Paths of nginx, wrk and taskset; installs them with apt-get when root and missing."""
    missing = [tool for tool in PACKAGES if find_tool(tool) is None]
    if missing:
        packages = sorted({"nginx", "wrk"} | {PACKAGES[tool] for tool in missing})
        if os.geteuid() == 0 and find_tool("apt-get"):
            print(f"missing {', '.join(missing)}: installing {' '.join(packages)} with apt-get")
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            subprocess.run(["apt-get", "update"], check=True, env=env)
            subprocess.run(["apt-get", "install", "-y", *packages], check=True, env=env)
        else:
            sys.exit(
                f"bench: missing {', '.join(missing)}. Install the Debian packages "
                f"{' '.join(packages)} (as root: apt-get update && "
                f"DEBIAN_FRONTEND=noninteractive apt-get install -y {' '.join(packages)})"
            )
    tools = {}
    for tool in PACKAGES:
        path = find_tool(tool)
        if path is None:
            sys.exit(f"bench: {tool} still not found after installing {PACKAGES[tool]}")
        tools[tool] = path
    return tools


def first_line(cmd: Sequence[str]) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    text = (out.stdout + out.stderr).strip()
    return text.splitlines()[0].strip() if text else "?"


def dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "cpu model"):
                return value.strip()
    return platform.processor() or "?"


def os_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    return platform.system()


def git_state() -> dict[str, Any]:
    """Commit and whether pixel_server/ differs from it (read-only git; takes no lock)."""
    git = find_tool("git")
    if git is None:
        return {"commit": None, "pixel_server_modified": None}
    commit = subprocess.run(
        [git, "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    status = subprocess.run(
        [git, "--no-optional-locks", "-C", str(ROOT), "status", "--porcelain", *GIT_STATUS_ARGS],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {"commit": commit or None, "pixel_server_modified": bool(status)}


def machine_info(tools: dict[str, str]) -> dict[str, Any]:
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "machine": {
            "nproc": len(os.sched_getaffinity(0)),
            "cpu_count": os.cpu_count(),
            "cpu_model": cpu_model(),
            "kernel": platform.release(),
            "os": os_name(),
            "memory_gib": round(mem_kb / 1024 / 1024, 1),
            "hostname": platform.node(),
        },
        "versions": {
            "nginx": first_line([tools["nginx"], "-v"]).removeprefix("nginx version: "),
            "wrk": first_line([tools["wrk"], "-v"]).split(" Copyright")[0],
            "python": platform.python_version(),
            "uvicorn": dist_version("uvicorn"),
            "starlette": dist_version("starlette"),
            "sqlite": sqlite3.sqlite_version,
            "aiosqlite": dist_version("aiosqlite"),
            "uvloop": dist_version("uvloop"),
            "httptools": dist_version("httptools"),
            "granian": dist_version("granian"),
            "asyncpg": dist_version("asyncpg"),
            "pixel-server": dist_version("pixel-server"),
        },
        "git": git_state(),
    }
