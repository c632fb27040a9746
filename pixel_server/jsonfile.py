"""The operator's JSON files (event schemas, the audit config): read with a size bound, every
problem one line naming the file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

MAX_FILE_BYTES = 1 << 20
T = TypeVar("T")


def load(path: str, parse: Callable[[Any], T], error: type[ValueError]) -> T:
    """``parse`` of the JSON document in the file at ``path``. Raises ``error`` (one line,
    prefixed with the path) if it cannot be read, is larger than MAX_FILE_BYTES, is not
    JSON, or ``parse`` raised ``error`` for it."""
    file = Path(path)
    try:
        if file.stat().st_size > MAX_FILE_BYTES:
            raise error(f"{path}: larger than {MAX_FILE_BYTES} bytes")
        document = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: not JSON ({exc})") from None
    try:
        return parse(document)
    except error as exc:
        raise error(f"{path}: {exc}") from None
