"""The event registry (PIXEL_EVENT_SCHEMAS): what a file may say, every way it can be wrong
(one line naming the place), and how an event's params are checked against it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pixel_server.eventschema import Registry, SchemaFileError, load

PURCHASE = {
    "required": {"order_id": "string", "total_value": "number"},
    "optional": {"items": "integer", "gift": "boolean"},
    "additional": False,
}


def registry(tmp_path: Path, document: Any) -> Registry:
    path = tmp_path / "schemas.json"
    path.write_text(json.dumps(document))
    return load(str(path))


def test_params_are_checked_against_their_event(tmp_path: Path) -> None:
    """Required params must be there, typed; optional ones typed; others refused when the
    event says additional: false, allowed otherwise; null counts as not sent."""
    r = registry(tmp_path, {"events": {"purchase": PURCHASE, "open": {}}})
    good = {"order_id": "o1", "total_value": 10, "items": 2.0, "gift": None}
    assert r.check("purchase", good) is None
    cases: list[tuple[dict[str, object], str]] = [
        ({"total_value": 1}, "schema_missing_param"),
        ({"order_id": None, "total_value": 1}, "schema_missing_param"),
        ({"order_id": 5, "total_value": 1}, "schema_wrong_type"),
        ({"order_id": "o", "total_value": "1"}, "schema_wrong_type"),
        ({"order_id": "o", "total_value": True}, "schema_wrong_type"),  # not a number
        ({"order_id": "o", "total_value": 1, "items": 1.5}, "schema_wrong_type"),
        ({"order_id": "o", "total_value": 1, "gift": 1}, "schema_wrong_type"),
        ({"order_id": "o", "total_value": 1, "colour": "red"}, "schema_unknown_param"),
    ]
    for params, reason in cases:
        problem = r.check("purchase", params)
        assert problem is not None, params
        assert problem.reason == reason, params
        assert problem.message
    assert r.check("open", {"anything": 1}) is None  # additional defaults to true
    # the consent parameter (privacy.py) is always allowed
    assert r.check("purchase", {**good, "consent": "denied"}) is None
    assert r.check("never_declared", {}) is None  # unknown_events defaults to accept


@pytest.mark.parametrize(
    ("unknown", "violations", "unknown_rejects", "violation_rejects"),
    [
        ("accept", "reject", None, True),
        ("flag", "flag", False, False),
        ("reject", "reject", True, True),
    ],
)
def test_policies_decide_what_rejects(
    tmp_path: Path,
    unknown: str,
    violations: str,
    unknown_rejects: bool | None,
    violation_rejects: bool,
) -> None:
    """unknown_events: accept (no problem), flag or reject; violations: reject or flag."""
    r = registry(
        tmp_path,
        {"unknown_events": unknown, "violations": violations, "events": {"p": PURCHASE}},
    )
    problem = r.check("other", {})
    assert (problem is None) == (unknown_rejects is None)
    if problem is not None:
        assert problem.reason == "unknown_event"
        assert r.rejects(problem) is unknown_rejects
    violation = r.check("p", {})
    assert violation is not None
    assert r.rejects(violation) is violation_rejects


@pytest.mark.parametrize(
    ("document", "shown"),
    [
        ([], "the file must be a JSON object"),
        ({"event": {}}, "the file has 'event'"),
        ({"unknown_events": "ignore"}, "unknown_events is one of accept, flag, reject"),
        ({"violations": "drop"}, "violations is one of reject, flag"),
        ({"events": []}, "events must be a JSON object"),
        ({"events": {"Purchase": {}}}, "event 'Purchase': a name is snake_case"),
        ({"events": {"p": {"requires": {}}}}, "event 'p' has 'requires'"),
        ({"events": {"p": {"required": {"a": "str"}}}}, "p.required.a is one of string,"),
        (
            {"events": {"p": {"required": {"a": "string"}, "optional": {"a": "string"}}}},
            "'a' is both required and optional",
        ),
        ({"events": {"p": {"additional": "no"}}}, "p.additional is true or false"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_place(tmp_path: Path, document: Any, shown: str) -> None:
    with pytest.raises(SchemaFileError) as caught:
        registry(tmp_path, document)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / "schemas.json") + ": ")
    assert shown in message


def test_an_unreadable_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_bytes(b"{not json")
    (tmp_path / "latin.json").write_bytes(b'{"events": {"caf\xe9": {}}}')
    for name, shown in (
        ("missing.json", "No such file"),
        ("bad.json", "not JSON"),
        ("latin.json", "not JSON"),
    ):
        with pytest.raises(SchemaFileError, match=shown):
            load(str(tmp_path / name))
