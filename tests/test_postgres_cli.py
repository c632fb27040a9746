"""The command line on PostgreSQL: migrate, an unreachable server, and no password shown."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from click.testing import CliRunner

from pixel_server.cli import main
from pixel_server.store.pgschema import MIGRATIONS
from pixel_server.store.schema import MIGRATIONS as SQLITE_MIGRATIONS

from conftest import SECRET, ServerProcess, free_port

UNREACHABLE = "postgresql://pixel:hunter2-pw@127.0.0.1:{port}/pixel"


def with_password(url: str, password: str) -> str:
    """``url`` with a password (trust auth ignores it; it must still never be shown)."""
    parts = urlsplit(url)
    netloc = f"{parts.username}:{password}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def test_migrate_brings_the_schema_up_to_date_and_hides_the_password(pg_url: str) -> None:
    url = with_password(pg_url, "hunter2-pw")
    first = CliRunner().invoke(main, ["migrate"], env={"PIXEL_DATABASE_URL": url})
    assert first.exit_code == 0, first.output
    assert f"schema v{len(MIGRATIONS)}, up to date" in first.output
    assert "hunter2-pw" not in first.output
    assert "postgresql://postgres:***@" in first.output
    again = CliRunner().invoke(main, ["migrate"], env={"PIXEL_DATABASE_URL": url})
    assert again.exit_code == 0
    assert again.output == first.output


def test_migrate_creates_a_sqlite_database(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    result = CliRunner().invoke(main, ["migrate", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert f"schema v{len(SQLITE_MIGRATIONS)}, up to date" in result.output
    assert db.exists()


@pytest.mark.parametrize("command", [["hits"], ["export"], ["migrate"]])
def test_an_unreachable_postgresql_is_one_line_exit_1(command: list[str]) -> None:
    url = UNREACHABLE.format(port=free_port())
    result = CliRunner().invoke(main, command, env={"PIXEL_DATABASE_URL": url})
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: the store is unavailable: PostgreSQL unavailable")
    assert "hunter2-pw" not in result.output + result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_serve_with_an_unreachable_postgresql_stops_with_one_line(tmp_path: Path) -> None:
    url = UNREACHABLE.format(port=free_port())
    env = {"PIXEL_DATABASE_URL": url, "PIXEL_SECRET_KEY": SECRET, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "pixel_server", "serve", "--port", str(free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "Error: the store is unavailable" in done.stderr
    assert "Traceback" not in done.stderr
    assert "hunter2-pw" not in done.stderr + done.stdout


@pytest.fixture
def backend() -> str:
    return "postgresql"


def test_the_server_logs_its_store_without_the_password(
    server_factory: Callable[..., ServerProcess], pg_url: str
) -> None:
    url = with_password(pg_url, "hunter2-pw")
    server = server_factory("--log-level", "info", env={"PIXEL_DATABASE_URL": url})
    assert server.stop() == 0
    log = server.log.read_text()
    assert "serving; store=postgresql://postgres:***@" in log
    assert "hunter2-pw" not in log
