"""Files that hold secrets or hits are private whatever the umask, and `export -o` replaces
its output file only when the export succeeded."""

from __future__ import annotations

import csv
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from test_cli import populate

from pixel_server.cli import main
from pixel_server.config import Settings
from pixel_server.files import ensure_private_file, private_dir, replaced_on_success
from pixel_server.hits import Hit
from pixel_server.spill import Spill

from conftest import SECRET, ServerProcess

UMASKS = [0o022, 0o000, 0o277]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=UMASKS, ids=[f"umask{u:03o}" for u in UMASKS])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test (and the processes it starts) under this umask, restored afterwards."""
    value: int = request.param
    old = os.umask(value)
    try:
        yield value
    finally:
        os.umask(old)


@pytest.mark.parametrize("umask", [0o022, 0o000], indirect=True, ids=["umask022", "umask000"])
def test_server_creates_database_wal_shm_key_and_data_dir_private(
    server_factory: Callable[..., ServerProcess], tmp_path: Path, umask: int
) -> None:
    """A real `serve` in a new data directory: dir 0700; db, -wal, -shm and key 0600."""
    data = tmp_path / "data" / "pixel"
    server = server_factory(env={"PIXEL_SECRET_KEY": "", "PIXEL_DB": str(data / "pixel.db")})
    assert httpx.get(f"{server.url}/p.gif?cid=modes").status_code == 200
    assert server.rows("SELECT cid FROM hits") == [("modes",)]
    files = ["pixel.db", "pixel.db-wal", "pixel.db-shm", "pixel.db.key"]
    assert {name: oct(mode(data / name)) for name in files} == dict.fromkeys(files, "0o600")
    assert oct(mode(data)) == oct(mode(tmp_path / "data")) == "0o700"
    assert server.stop() == 0


def test_spill_directory_and_journal_are_private(tmp_path: Path, umask: int) -> None:
    """Spilled hits (IPs, recipient ids) go to a 0700 directory, in a 0600 journal."""
    spill = Spill(tmp_path / "pixel.db.spill", 1 << 20)
    spill.append([Hit(ts=1, kind="view", cid="c")])
    assert spill.journal is not None
    assert oct(mode(tmp_path / "pixel.db.spill")) == "0o700"
    assert oct(mode(spill.journal.path)) == "0o600"
    spill.close()


def test_existing_files_and_directories_keep_their_modes(tmp_path: Path, umask: int) -> None:
    """Only what pixel-server creates is made private; an operator's own modes stand."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    db = shared / "pixel.db"
    db.write_bytes(b"")
    db.chmod(0o640)
    private_dir(shared)
    ensure_private_file(db)
    assert (mode(shared), mode(db)) == (0o755, 0o640)


@pytest.fixture
def export_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {"PIXEL_DB": str(tmp_path / "pixel.db"), "PIXEL_SECRET_KEY": SECRET}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_failed_export_leaves_the_existing_output_file_whole(
    export_env: dict[str, str], tmp_path: Path
) -> None:
    """`export -o existing.csv` that fails (no database) keeps the old file and no temp file."""
    out = tmp_path / "existing.csv"
    out.write_text("last week's export\n")
    result = CliRunner().invoke(main, ["export", "-o", str(out)])
    assert result.exit_code == 2
    assert "no database" in result.output
    assert out.read_text() == "last week's export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.csv"]


def test_export_failing_midway_leaves_the_existing_output_file_whole(
    export_env: dict[str, str], tmp_path: Path
) -> None:
    """An export that breaks after it started writing (a file that is no database) changes
    nothing on disk."""
    Path(export_env["PIXEL_DB"]).write_bytes(b"this is not an SQLite database" * 100)
    out = tmp_path / "existing.csv"
    out.write_text("last week's export\n")
    result = CliRunner().invoke(main, ["export", "-o", str(out)])
    assert result.exit_code != 0
    assert out.read_text() == "last week's export\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".existing.csv")]


def test_export_replaces_the_file_on_success_keeping_its_mode(
    export_env: dict[str, str], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """A good export replaces the old file; a replaced file keeps its mode, a new one is 0600."""
    populate(make_settings(), *[(f"/p.gif?cid=exp&eid=e{i}", {}) for i in range(3)])
    old = tmp_path / "old.csv"
    old.write_text("stale\n")
    old.chmod(0o644)
    new = tmp_path / "new.csv"
    for out in (old, new):
        result = CliRunner().invoke(main, ["export", "--cid", "exp", "-o", str(out)])
        assert result.exit_code == 0, result.output
        with out.open(newline="") as fh:
            assert [row["eid"] for row in csv.DictReader(fh)] == ["e2", "e1", "e0"]
    assert (mode(old), mode(new)) == (0o644, 0o600)


def test_output_that_is_not_a_regular_file_is_written_directly(tmp_path: Path) -> None:
    """A FIFO (or /dev/stdout) cannot be replaced by a rename, so it is written in place."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with replaced_on_success(fifo) as fh:
            fh.write("through the pipe\n")
        assert os.read(reader, 100) == b"through the pipe\n"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
