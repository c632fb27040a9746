"""The operator's JSON files, read alike by both loaders: each problem one line naming the
file, never a traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pixel_server import jsonfile
from pixel_server.audit import AuditConfigError, load_config
from pixel_server.eventschema import SchemaFileError, load

LOADERS: list[tuple[Callable[[str], Any], type[ValueError]]] = [
    (load, SchemaFileError),
    (load_config, AuditConfigError),
]


@pytest.mark.parametrize(("loader", "error"), LOADERS)
@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b" " * (jsonfile.MAX_FILE_BYTES + 1), "larger than 1048576 bytes"),
        (b"\xff{}", "not JSON"),
        (b"{", "not JSON"),
        (b"[]", ""),  # parsed, refused by the loader's own rules: still prefixed
        (None, "No such file or directory"),
    ],
)
def test_every_problem_is_one_line_naming_the_file(
    tmp_path: Path,
    loader: Callable[[str], Any],
    error: type[ValueError],
    content: bytes | None,
    problem: str,
) -> None:
    path = tmp_path / "config.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(error) as raised:
        loader(str(path))
    message = str(raised.value)
    assert message.startswith(f"{path}: ")
    assert problem in message
    assert "\n" not in message


def test_a_good_file_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"a": [1]}', encoding="utf-8")
    assert jsonfile.load(str(path), lambda doc: doc["a"], ValueError) == [1]
