"""The event registry (``PIXEL_EVENT_SCHEMAS``): which event names exist, and the parameters
each takes, with their types. Snowplow's Iglu in miniature: a JSON file, checked whole at
start-up, so a typo in it is one line naming the problem, not a surprise at the first event.

::

    {
      "unknown_events": "accept",          # or "flag", or "reject"
      "violations": "reject",              # or "flag"
      "events": {
        "purchase_completed": {
          "required": {"order_id": "string", "total_value": "number"},
          "optional": {"items": "integer", "coupon": "string"},
          "additional": false              # other params refused (default: true, allowed)
        },
        "video_started": {"required": {"video_id": "string"}}
      }
    }

Types: ``string``, ``number`` (any finite number), ``integer``, ``boolean``. A parameter sent
as null counts as not sent. An event that breaks its schema is rejected (``violations:
reject``) or stored with the flag ``schema_violation`` (``flag``); an event name the file does
not list is stored (``accept``), stored with the flag ``unknown_event`` (``flag``) or rejected
(``reject``). docs/events.md has the whole story.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import jsonfile
from .privacy import CONSENT

TYPES = ("string", "number", "integer", "boolean")
UNKNOWN_POLICIES = ("accept", "flag", "reject")
VIOLATION_POLICIES = ("reject", "flag")
NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


class SchemaFileError(ValueError):
    """The registry file cannot be used; the message is one line saying where and why."""


@dataclass(frozen=True)
class EventSchema:
    required: dict[str, str]
    optional: dict[str, str]
    additional: bool = True


@dataclass(frozen=True)
class Problem:
    """Why an event does not fit the registry: ``reason`` is stable (metrics, answers)."""

    reason: str  # unknown_event, schema_missing_param, schema_wrong_type, schema_unknown_param
    message: str


@dataclass(frozen=True)
class Registry:
    events: dict[str, EventSchema] = field(default_factory=dict)
    unknown_events: str = "accept"
    violations: str = "reject"

    def check(self, name: str, params: Mapping[str, object]) -> Problem | None:
        """The first way ``params`` break the schema of ``name``, or None if they fit."""
        schema = self.events.get(name)
        if schema is None:
            if self.unknown_events == "accept":
                return None
            return Problem("unknown_event", f"{name!r} is not in PIXEL_EVENT_SCHEMAS")
        given = {key: value for key, value in params.items() if value is not None}
        for key, kind in schema.required.items():
            if key not in given:
                return Problem("schema_missing_param", f"{name} needs the param {key!r} ({kind})")
        for key, value in given.items():
            expected = schema.required.get(key) or schema.optional.get(key)
            if expected is None:
                if not schema.additional and key != CONSENT:  # always allowed: privacy.py
                    shown = json.dumps(key)
                    return Problem("schema_unknown_param", f"{name} takes no param {shown}")
            elif not _is(value, expected):
                return Problem("schema_wrong_type", f"{name}: the param {key!r} is a {expected}")
        return None

    def rejects(self, problem: Problem) -> bool:
        """Whether ``problem`` rejects the event (else it is stored, flagged)."""
        if problem.reason == "unknown_event":
            return self.unknown_events == "reject"
        return self.violations == "reject"


def _is(value: object, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):  # JSON's true is not the number 1
        return False
    if kind == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return isinstance(value, int | float)


def load(path: str) -> Registry:
    """The registry in the file at ``path``; SchemaFileError (one line) if it cannot be used."""
    return jsonfile.load(path, _registry, SchemaFileError)


def _registry(document: Any) -> Registry:
    _object(document, "the file", {"events", "unknown_events", "violations"})
    unknown = document.get("unknown_events", "accept")
    if unknown not in UNKNOWN_POLICIES:
        raise SchemaFileError(f"unknown_events is one of {', '.join(UNKNOWN_POLICIES)}")
    violations = document.get("violations", "reject")
    if violations not in VIOLATION_POLICIES:
        raise SchemaFileError(f"violations is one of {', '.join(VIOLATION_POLICIES)}")
    events = document.get("events", {})
    _object(events, "events", None)
    schemas = {}
    for name, spec in events.items():
        if not NAME.fullmatch(name):
            raise SchemaFileError(f"event {name!r}: a name is snake_case, at most 64 characters")
        _object(spec, f"event {name!r}", {"required", "optional", "additional"})
        required = _params(spec.get("required", {}), f"{name}.required")
        optional = _params(spec.get("optional", {}), f"{name}.optional")
        both = sorted(required.keys() & optional.keys())
        if both:
            raise SchemaFileError(f"{name}: {both[0]!r} is both required and optional")
        additional = spec.get("additional", True)
        if not isinstance(additional, bool):
            raise SchemaFileError(f"{name}.additional is true or false")
        schemas[name] = EventSchema(required, optional, additional)
    return Registry(schemas, unknown, violations)


def _object(value: Any, what: str, keys: set[str] | None) -> None:
    if not isinstance(value, dict):
        raise SchemaFileError(f"{what} must be a JSON object")
    if keys is not None and value.keys() - keys:
        extra = sorted(value.keys() - keys)[0]
        raise SchemaFileError(f"{what} has {extra!r}; known: {', '.join(sorted(keys))}")


def _params(value: Any, what: str) -> dict[str, str]:
    _object(value, what, None)
    for key, kind in value.items():
        if kind not in TYPES:
            raise SchemaFileError(f"{what}.{key} is one of {', '.join(TYPES)}, not {kind!r}")
    return dict(value)
