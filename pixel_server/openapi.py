"""The OpenAPI 3.1 description of ``POST /e``, the read API and ``/api/revocations``, served at
``/api/openapi.json``; tests/test_openapi.py runs schemathesis against a real server with it.

Built from the same names the code uses (hit columns, filters, scopes, reasons), so that a
column or a filter added there is described here without a second list to keep in step.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .events import MAX_EID_CHARS, MAX_NAME_CHARS, MAX_SEQ, STRING_MEMBERS
from .fields import KINDS
from .hits import COLUMNS
from .query import EQUALITY_FILTERS
from .revocations import KINDS as REVOCATION_KINDS
from .revocations import MAX_REASON_CHARS, MAX_VALUE_CHARS

INTEGERS = frozenset(("id", "ts", "seq"))
BOOLEANS = frozenset(("is_bot", "dnt", "gpc"))
NULLABLE_STRING = {"type": ["string", "null"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _too_many() -> dict[str, Any]:
    """429: the network sent too many wrong secrets (authlimit.py)."""
    return {
        **_error("This network sent too many wrong keys or tokens: retry after Retry-After s."),
        "headers": {"Retry-After": {"schema": {"type": "string"}}},
    }


def _hit_schema() -> dict[str, Any]:
    properties: dict[str, Any] = {"time": {"type": "string", "format": "date-time"}}
    for column in ("id", *COLUMNS):
        if column in INTEGERS:
            properties[column] = {"type": ["integer", "null"] if column == "seq" else "integer"}
        elif column in BOOLEANS:
            properties[column] = {"type": "boolean"}
        elif column == "params":
            properties[column] = {"type": "object"}
        elif column == "flags":
            properties[column] = {"type": "array", "items": {"type": "string"}}
        elif column in ("kind", "method"):
            properties[column] = {"type": "string"}
        else:
            properties[column] = NULLABLE_STRING
    return {"type": "object", "required": sorted(properties), "properties": properties}


def _event_schema() -> dict[str, Any]:
    strings = {key: {"type": "string", "maxLength": 2048} for key in STRING_MEMBERS}
    value = {"type": ["string", "number", "boolean", "null"]}
    return {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": {
                "type": "string",
                "pattern": "^[a-z][a-z0-9_]*$",
                "maxLength": MAX_NAME_CHARS,
            },
            "eid": {"type": "string", "minLength": 1, "maxLength": MAX_EID_CHARS},
            **strings,
            "seq": {"type": "integer", "minimum": 1, "maximum": MAX_SEQ},
            "params": {"type": "object", "maxProperties": 50, "additionalProperties": value},
            "ts": {
                "description": "server calls only: epoch ms, or ISO 8601 with an offset",
                "type": ["integer", "string"],
            },
            "ip": {"description": "server calls only", "type": "string"},
            "ua": {"description": "server calls only", "type": "string"},
        },
    }


def _answer_schema() -> dict[str, Any]:
    result = {
        "type": "object",
        "required": ["index", "status"],
        "properties": {
            "index": {"type": "integer", "minimum": 0},
            "status": {"enum": ["accepted", "duplicate", "rejected"]},
            "reason": {"type": "string"},
            "message": {"type": "string"},
            "flags": {"type": "array", "items": {"type": "string"}},
        },
    }
    counts = {
        name: {"type": "integer", "minimum": 0} for name in ("accepted", "duplicates", "rejected")
    }
    return {
        "type": "object",
        "required": [*counts, "results"],
        "properties": {**counts, "results": {"type": "array", "items": result}},
    }


def _loss_schema() -> dict[str, Any]:
    counts = {
        name: {"type": "integer", "minimum": 0}
        for name in ("sessions", "sent", "received", "lost", "repeated", "duplicates")
    }
    summary = {**counts, "loss_rate": {"type": "number", "minimum": 0}}
    row = {
        "type": "object",
        "required": ["day", "cid", *summary],
        "properties": {
            "day": {"type": "string", "format": "date"},
            "cid": {"type": "string"},
            **summary,
        },
    }
    return {
        "type": "object",
        "required": ["since", "until", "days", "total"],
        "properties": {
            "since": {"type": "string", "format": "date"},
            "until": {"type": "string", "format": "date"},
            "days": {"type": "array", "items": row},
            "total": {"type": "object", "required": sorted(summary), "properties": summary},
        },
    }


def _campaign_schema() -> dict[str, Any]:
    count = {"type": "integer", "minimum": 0}
    names = (
        "opens", "unique_opens", "inferred_opens", "clicks", "unique_clicks", "views",
        "unique_views", "anonymous_opens", "anonymous_clicks",
    )  # fmt: skip
    figure_properties: dict[str, Any] = {
        **dict.fromkeys(names, count),
        "ctor": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
    }
    figures = {"type": "object", "required": [*names, "ctor"], "properties": figure_properties}
    machine_class = {
        "type": "object",
        "required": ["opens", "clicks", "views", "head", "reasons"],
        "properties": {
            **dict.fromkeys(("opens", "clicks", "views", "head"), count),
            "reasons": {"type": "object", "additionalProperties": count},
        },
    }
    machines = {
        **figures,
        "required": [*names, "ctor", "classes"],
        "properties": {
            **figure_properties,
            "classes": {"type": "object", "additionalProperties": machine_class},
        },
    }
    link_counts = ("clicks", "unique_clicks", "machine_clicks")
    link = {
        "type": "object",
        "required": ["url", *link_counts],
        "properties": {"url": {"type": "string"}, **dict.fromkeys(link_counts, count)},
    }
    moment = {"type": "string", "format": "date-time"}
    properties = {
        "cid": {"type": "string"},
        "since": {"oneOf": [moment, {"type": "null"}]},
        "until": moment,
        "definitions": {"type": "integer", "minimum": 1},
        "machines_included": {"type": "boolean"},
        "totals": figures,
        "people": figures,
        "machines": machines,
        "proxy_repeats": count,
        "head_requests": count,
        "links": {"type": "array", "items": link, "maxItems": 200},
        "links_total": count,
    }
    return {"type": "object", "required": list(properties), "properties": properties}


def _revocation_schemas() -> dict[str, dict[str, Any]]:
    """A revocation (revocations.py) as listed, and the body that makes or names one."""
    text = {"type": "string", "maxLength": MAX_REASON_CHARS}
    nullable = {"type": ["string", "null"]}
    revocation = {
        "type": "object",
        "required": [
            "id",
            "kind",
            "link",
            "cid",
            "target",
            "reason",
            "offer_continue",
            "created_ms",
        ],
        "properties": {
            "id": {"type": "string"},
            "kind": {"enum": list(REVOCATION_KINDS)},
            "link": nullable,
            "cid": nullable,
            "target": nullable,
            "reason": {"type": "string"},
            "offer_continue": {"type": "boolean"},
            "created_ms": {"type": "integer"},
        },
    }
    extra = {"reason": text, "offer_continue": {"type": "boolean"}}
    value = {"type": "string", "minLength": 1, "maxLength": MAX_VALUE_CHARS}

    def shape(required: list[str], **properties: Any) -> dict[str, Any]:
        return {
            "type": "object",
            "required": required,
            "additionalProperties": False,
            "properties": {**properties, **extra},
        }

    request = {
        "description": "a link (its URL or token, signed by this server), a campaign (cid,"
        " maybe only its links to one target), or a target (a URL, or a host name)",
        "oneOf": [
            shape(["link"], link=value),
            shape(["cid"], cid=value, target=value),
            shape(["target"], target=value),
        ],
    }
    undo = {
        "description": "the revocation's id, or what it was made with",
        "oneOf": [
            {
                "type": "object",
                "required": ["id"],
                "additionalProperties": False,
                "properties": {"id": {"type": "string"}},
            },
            _ref("RevocationRequest"),
        ],
    }
    return {"Revocation": revocation, "RevocationRequest": request, "RevocationUndo": undo}


def _revocations_path() -> dict[str, Any]:
    one = {
        "type": "object",
        "required": ["revocation"],
        "properties": {"revocation": _ref("Revocation")},
    }
    listing = {
        "type": "object",
        "required": ["revocations"],
        "properties": {"revocations": {"type": "array", "items": _ref("Revocation")}},
    }

    def body(name: str) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": _ref(name)}}}

    errors = {
        "401": _error("No valid token or API key."),
        "403": _error("The key lacks the admin scope."),
        "429": _too_many(),
        "503": _error("The store cannot be read or written now."),
    }
    bad = {
        "400": _error("Not such an object, or a link not signed here, a control character."),
        "413": _error("The body is too large."),
    }
    return {
        "get": {
            "summary": "Every revocation, oldest first",
            "security": [{"bearer": []}],
            "responses": {"200": _json(listing, "The revocations."), **errors},
        },
        "post": {
            "summary": "Revoke a link, a campaign or a target",
            "security": [{"bearer": []}],
            "requestBody": body("RevocationRequest"),
            "responses": {"201": _json(one, "Revoked."), **bad, **errors},
        },
        "delete": {
            "summary": "Undo a revocation",
            "security": [{"bearer": []}],
            "requestBody": body("RevocationUndo"),
            "responses": {
                "200": _json(one, "Undone."),
                "404": _error("There is no such revocation."),
                **bad,
                **errors,
            },
        },
    }


# what each parameter takes, as patterns a generator can honour (query.py parses them)
TIME = {
    "type": "string",
    "anyOf": [
        {"pattern": "^$"},  # empty: not given, as for every parameter
        {"pattern": "^[0-9]{1,3}[smhd]$"},  # 15m, 2h, 7d ago (at most ten years)
        {"pattern": "^[1-9][0-9]{12}$"},  # epoch milliseconds
        {
            "pattern": "^(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
            "(T([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?Z?)?$"
        },
    ],
}
SCHEMAS: dict[str, dict[str, Any]] = {
    "since": TIME,
    "until": TIME,
    "limit": {"type": "string", "pattern": "^([1-9][0-9]{0,2}|1000)?$"},
    "cursor": {"type": "string", "pattern": "^([0-9]{1,15}_[1-9][0-9]{0,15})?$"},
    "kind": {"enum": ["", *KINDS]},
    "machines": {"enum": ["", "0", "1"]},
    "interval": {"enum": ["", "hour", "day", "week", "month"]},
    "outliers": {"enum": ["", "zscore", "iqr"]},
    "smooth": {"enum": ["", "ma", "ema"]},
    "table": {"enum": ["", "series", "breakdown", "rows"]},
}


def _query(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": SCHEMAS.get(name, {"type": "string"}),
        "description": description,
    }


READ_ERRORS = {
    "400": _error("A filter, cursor or limit that cannot be read."),
    "401": _error("No valid token or API key."),
    "403": _error("The key lacks the read scope."),
    "429": _too_many(),
    "503": _error("The store cannot be read now."),
}


def _filters() -> list[dict[str, Any]]:
    described = {
        "kind": "view, open, click or event",
        "e": "event name",
        "cid": "campaign",
        "traffic": "traffic class (docs/traffic.md)",
    }
    return [
        _query("since", "ISO 8601, YYYYMMDD, 13-digit epoch ms, or 15m / 2h / 7d ago"),
        _query("until", "as since"),
        _query("cursor", "next_cursor of the page before"),
        _query("limit", "1 to 1000"),
        *(_query(name, described.get(name, name)) for name in EQUALITY_FILTERS),
    ]


def _export(name: str, media_type: str) -> dict[str, Any]:
    """An export of every matching hit, oldest first, in ``media_type``."""
    body = {media_type: {"schema": {"type": "string"}}}
    return {
        "get": {
            "summary": f"Every matching hit as {name}",
            "security": [{"bearer": []}],
            "parameters": [p for p in _filters() if p["name"] != "cursor"],
            "responses": {
                "200": {"description": "The hits, oldest first.", "content": body},
                **READ_ERRORS,
            },
        }
    }


def document() -> dict[str, Any]:
    """The OpenAPI document."""
    hits_page = {
        "type": "object",
        "required": ["hits", "next_cursor"],
        "properties": {
            "hits": {"type": "array", "items": _ref("Hit")},
            "next_cursor": {"type": ["string", "null"]},
        },
    }
    events_body = {
        "oneOf": [{"type": "array", "items": _ref("Event"), "minItems": 1}, _ref("Event")]
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pixel_server",
            "version": "1",
            "description": "Events in (POST /e, docs/events.md) and hits out (the read API).",
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a PIXEL_API_TOKENS token, or an API key (pxk_...)",
                }
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["status", "code", "message"],
                            "properties": {
                                "status": {"type": "integer"},
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        }
                    },
                },
                "Event": _event_schema(),
                "Answer": _answer_schema(),
                "Hit": _hit_schema(),
                "Loss": _loss_schema(),
                "Campaign": _campaign_schema(),
                **_revocation_schemas(),
            },
        },
        "paths": {
            "/e": {
                "post": {
                    "summary": "Post a batch of events",
                    "description": "Checked per event, committed in one transaction, answered"
                    " per index. Without a key: a browser call; with an ingest key: a server"
                    " call (ts, ip, ua allowed, eid required).",
                    "security": [{}, {"bearer": []}],
                    "requestBody": {
                        "required": True,
                        # the three carry the same events: NDJSON one object a line, text/plain
                        # (sendBeacon) a JSON array or NDJSON
                        "content": {
                            "application/json": {"schema": events_body},
                            "application/x-ndjson": {"schema": events_body},
                            "text/plain": {"schema": events_body},
                        },
                    },
                    "responses": {
                        "200": _json(_ref("Answer"), "Per index: accepted, duplicate, rejected."),
                        "400": _error("Not a batch of events (not JSON, empty)."),
                        "401": _error("An Authorization that is not a live API key."),
                        "403": _error("A key without the ingest scope, or an origin not allowed."),
                        "429": _too_many(),
                        "413": _error("The body, unpacked, or the batch is too large."),
                        "415": _error("Another Content-Type or Content-Encoding."),
                        "503": {
                            **_error("The store cannot take the batch now; nothing stored."),
                            "headers": {"Retry-After": {"schema": {"type": "string"}}},
                        },
                    },
                }
            },
            "/api/hits": {
                "get": {
                    "summary": "A page of hits, newest first",
                    "security": [{"bearer": []}],
                    "parameters": _filters(),
                    "responses": {"200": _json(hits_page, "One page."), **READ_ERRORS},
                }
            },
            "/api/hits.csv": _export("CSV", "text/csv"),
            "/api/hits.ndjson": _export("NDJSON", "application/x-ndjson"),
            "/api/loss": {
                "get": {
                    "summary": "Events lost, repeated and retried, per UTC day and campaign",
                    "security": [{"bearer": []}],
                    "parameters": [
                        _query("since", "default 7d"),
                        _query("until", "default now"),
                        _query("cid", "one campaign"),
                    ],
                    "responses": {"200": _json(_ref("Loss"), "The report."), **READ_ERRORS},
                }
            },
            "/api/campaigns/{cid}": {
                "get": {
                    "summary": "A campaign's opens, clicks, CTOR and links, people vs machines",
                    "description": "Definitions in docs/campaigns.md; a campaign without hits"
                    " answers zeros.",
                    "security": [{"bearer": []}],
                    "parameters": [
                        {
                            "name": "cid",
                            "in": "path",
                            "required": True,
                            # the default PIXEL_MAX_VALUE_CHARS: no stored cid is longer
                            "schema": {"type": "string", "minLength": 1, "maxLength": 2048},
                            "description": "the campaign",
                        },
                        _query("since", "default: the beginning"),
                        _query("until", "default now"),
                        _query("machines", "1: count machine classes in the totals too"),
                    ],
                    "responses": {
                        "200": _json(_ref("Campaign"), "The totals."),
                        **READ_ERRORS,
                    },
                }
            },
            "/api/stats": _stats_path("JSON", "application/json"),
            "/api/audit": {
                "get": {
                    "summary": "Is tracking working: checks, thresholds, ok (docs/audit.md)",
                    "security": [{"bearer": []}],
                    "parameters": [
                        _query("since", "default 7d"),
                        _query("until", "default now"),
                        _query("cid", "one campaign"),
                    ],
                    "responses": {
                        "200": {
                            "description": "The audit.",
                            "content": {"application/json": {"schema": {}}},
                        },
                        **READ_ERRORS,
                    },
                }
            },
            "/api/stats.csv": _stats_path("CSV", "text/csv"),
            "/api/revocations": _revocations_path(),
            **_privacy_paths(),
        },
    }


def _privacy_paths() -> dict[str, Any]:
    """A data subject's export and erasure, the admin log (docs/privacy.md): admin scope."""
    errors = {
        "401": _error("No valid token or API key."),
        "403": _error("The key lacks the admin scope."),
        "429": _too_many(),
        "503": _error("The store cannot be read or written now."),
    }
    uid = {
        "name": "uid",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "maxLength": 512},
        "description": "the data subject's uid (also found as a parameter or query value)",
    }
    subject_errors = {"400": _error("Not a uid (empty, too long, not printable)."), **errors}
    anything = {"application/json": {"schema": {"type": "object"}}}
    return {
        "/api/subjects/{uid}": {
            "get": {
                "summary": "Everything stored about a uid (a subject access request)",
                "security": [{"bearer": []}],
                "parameters": [uid],
                "responses": {
                    "200": {"description": "The uid and its hits.", "content": anything},
                    **subject_errors,
                },
            },
            "delete": {
                "summary": "Erase every trace of a uid (hits, journals, rollups, bytes)",
                "security": [{"bearer": []}],
                "parameters": [uid],
                "responses": {
                    "200": {"description": "What was erased.", "content": anything},
                    **subject_errors,
                },
            },
        },
        "/api/admin-log": {
            "get": {
                "summary": "Keys made and revoked, purges, erasures, subject exports",
                "security": [{"bearer": []}],
                "parameters": [_query("since", "default 30d"), _query("until", "default now")],
                "responses": {
                    "200": {"description": "The entries, oldest first.", "content": anything},
                    "400": _error("A since or until that cannot be read."),
                    **errors,
                },
            }
        },
    }


STATS_PARAMS = (
    ("since", "from (ISO, epoch ms, 30d; a date without an offset is the zone's); default 30d"),
    ("until", "until; default now"),
    ("interval", "hour, day, week or month; default from the span"),
    ("zone", "IANA time zone of the buckets; default PIXEL_REPORT_ZONE"),
    ("group", "one dimension: kind, event, cid, traffic, link, utm_*, referrer, browser, ..."),
    ("machines", "1: count machine traffic classes too"),
    ("metrics", "comma-separated: hits, views, opens, clicks, events, uniques, ..."),
    ("outliers", "zscore or iqr"),
    ("threshold", "outlier threshold"),
    ("window", "z-score window (points)"),
    ("smooth", "ma or ema"),
    ("smooth_window", "moving-average window (points)"),
    ("alpha", "exponential smoothing factor"),
    ("cid", "filter: one campaign"),
    ("kind", "filter: view, open, click or event"),
    ("utm_source", "filter"),
    ("device", "filter"),
)


def _stats_path(form: str, media: str) -> dict[str, Any]:
    """``GET /api/stats`` and its CSV: docs/stats.md."""
    params = [_query(name, text) for name, text in STATS_PARAMS]
    if form == "CSV":
        params.append(_query("table", "series, breakdown or rows; default series"))
    return {
        "get": {
            "summary": f"Counts, uniques, sums over time, per bucket and group ({form})",
            "description": "Definitions and parameters in docs/stats.md; any dimension is"
            " also a filter (<dimension>=<value>).",
            "security": [{"bearer": []}],
            "parameters": params,
            "responses": {
                "200": {"description": "The report.", "content": {media: {"schema": {}}}},
                **READ_ERRORS,
            },
        }
    }


def routes() -> list[Route]:
    """``GET /api/openapi.json`` (no token: it holds no data)."""
    body = json.dumps(document(), separators=(",", ":")).encode()

    async def serve(_request: Request) -> Response:
        return Response(body, media_type="application/json")

    return [Route("/openapi.json", serve, methods=["GET"])]
