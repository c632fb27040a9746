"""deploy/compose.*.yaml read the way Compose reads them, so tests can check the files and run
their topology's pieces (nginx, the instances' settings) without a container runtime.

Covered: YAML with merge keys (``<<: *anchor``), ``${VAR}`` interpolation with ``:-``/``-``
defaults and ``:?``/``?`` required variables, ``$$`` escapes, and the environment a container
of deploy/Dockerfile's image gets: the image's ``ENV``, then ``env_file``, then
``environment``, each overriding the one before.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
_VARIABLE = re.compile(r"\$(?:(\$)|\{(\w+)(?:(:?[-?])([^}]*))?\}|(\w+))")


class MissingVariable(LookupError):
    """A ``${VAR:?message}`` whose variable is unset (Compose refuses the file)."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """``text`` with Compose's variable substitution from ``env``."""

    def one(match: re.Match[str]) -> str:
        if match.group(1):
            return "$"
        name = match.group(2) or match.group(5)
        op, arg = match.group(3), match.group(4)
        value = env.get(name)
        unset = value is None or (value == "" and op is not None and op.startswith(":"))
        if op in (":?", "?") and unset:
            raise MissingVariable(f"{name}: {arg}")
        if op in (":-", "-") and unset:
            return arg
        return value or ""

    return _VARIABLE.sub(one, text)


def _substituted(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {key: _substituted(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [_substituted(item, env) for item in node]
    return node


def raw(name: str) -> dict[str, Any]:
    """deploy/``name`` as YAML, before interpolation."""
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / name).read_text())
    return loaded


def load(name: str, env: Mapping[str, str]) -> dict[str, Any]:
    """deploy/``name`` as Compose sees it with ``env`` as its variables (deploy/.env)."""
    result: dict[str, Any] = _substituted(raw(name), env)
    return result


def env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines (comments and blank lines skipped), as Compose's env_file."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value
    return values


def image_env(dockerfile: Path = DEPLOY / "Dockerfile") -> dict[str, str]:
    """The ``ENV`` of the Dockerfile's final stage."""
    text = dockerfile.read_text().replace("\\\n", " ")
    final = re.split(r"^FROM .*$", text, flags=re.M)[-1]
    values: dict[str, str] = {}
    for line in final.splitlines():
        if line.startswith("ENV "):
            for word in shlex.split(line[4:]):
                key, _, value = word.partition("=")
                values[key] = value
    return values


def container_env(service: Mapping[str, Any]) -> dict[str, str]:
    """The environment a container of the service gets from the image, its env_file (the
    documented copy of deploy/pixel.env.example) and its environment."""
    env = image_env()
    files = service.get("env_file", [])
    for name in [files] if isinstance(files, str) else files:
        assert name == "pixel.env", f"unexpected env_file {name}"
        env.update(env_file(DEPLOY / "pixel.env.example"))
    env.update({key: str(value) for key, value in service.get("environment", {}).items()})
    return env


def seconds(duration: str) -> float:
    """A Compose duration such as ``30s``, ``1m30s`` or ``500ms``, in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a Compose duration: {duration!r}")
    return sum(float(number) * units[unit] for number, unit in parts)
