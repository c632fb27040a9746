"""files.write_batch: the files of a batch written, flushed once and renamed into place; a
failure before the renames leaves every old file as it was and no temporary file."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from pixel_server import files
from pixel_server.files import write_batch


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("syncfs", [True, False], ids=["syncfs", "fsync-each"])
def test_a_batch_is_written_and_replaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, syncfs: bool
) -> None:
    if not syncfs:  # where syncfs is missing: an fsync a file
        monkeypatch.setattr(files, "_syncfs", lambda fd: False)
    old = tmp_path / "a.html"
    old.write_text("old", encoding="utf-8")
    os.chmod(old, 0o640)
    assert write_batch(tmp_path, [("a.html", "Grüße a"), ("b.html", "b\r\n")]) == 2
    assert old.read_text(encoding="utf-8") == "Grüße a"
    assert (tmp_path / "b.html").read_bytes() == b"b\r\n"  # no newline translation
    assert mode(old) == 0o640  # a replaced file keeps its mode
    assert mode(tmp_path / "b.html") == 0o600  # a new one is private
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "b.html"]


def test_a_failure_before_the_renames_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "a.html").write_text("old", encoding="utf-8")

    def emails() -> Iterator[tuple[str, str]]:
        yield "a.html", "new"
        yield "b.html", "new"
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_batch(tmp_path, emails())
    assert [p.name for p in tmp_path.iterdir()] == ["a.html"]
    assert (tmp_path / "a.html").read_text(encoding="utf-8") == "old"


def test_an_empty_batch(tmp_path: Path) -> None:
    assert write_batch(tmp_path, []) == 0
    assert list(tmp_path.iterdir()) == []
