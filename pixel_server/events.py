"""What a ``POST /e`` body means: its events, each valid or rejected with a reason. Pure.

The contract is docs/events.md. A body that cannot be read as events at all raises
:class:`BadBatch` (the request is answered 400, 413 or 415 and nothing is stored); an event
that breaks a rule becomes a :class:`Rejected` in its place, so the answer can say, index by
index, what was stored and why the rest was not.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .cleaning import UNSAFE, clean_text
from .clientip import parse_ip
from .eventschema import Registry
from .fields import UTM_KEYS

MAX_NAME_CHARS = 64
MAX_EID_CHARS = 128
MAX_PARAM_NAME_CHARS = 64
MAX_SEQ = 2**31 - 1
MAX_SAFE_INTEGER = 2**53 - 1  # beyond, JavaScript (and many JSON readers) lose digits
NAME = re.compile(r"[a-z][a-z0-9_]*")
# what JSON's \\ud800 escapes give: half a character, which no UTF-8 store can hold
SURROGATE = re.compile("[\ud800-\udfff]")
# what no JSON text may hold raw in a string but UNSAFE finds: JSON's own whitespace (\t \n \r,
# between tokens only). A body without these and without a backslash has no escape anywhere,
# so every key and value in it is its own text: none holds a control character or half a
# character (UTF-8 cannot encode one), and only lengths are left to check
UNSAFE_RAW = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
STRING_MEMBERS = ("sid", "uid", "cid", "url", "ref", *UTM_KEYS)
# what only a server call (an API key with the ingest scope) may say: the client's address and
# user agent, and when the event happened
SERVER_MEMBERS = ("ts", "ip", "ua")
MEMBERS = frozenset(("name", "eid", "seq", "params", *STRING_MEMBERS, *SERVER_MEMBERS))
_STRING_SET, _SERVER_SET = frozenset(STRING_MEMBERS), frozenset(SERVER_MEMBERS)
NO_FLAGS: frozenset[str] = frozenset()
MAX_UA_CHARS = 512
FUTURE_MS = 300_000  # a server's clock ahead of ours by up to 5 minutes: its "now"
# media types a body may have, and how it is read: a JSON document, or NDJSON lines ("text":
# what sendBeacon sends with a string, either of the two)
FORMATS = {
    "application/json": "json",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "text/plain": "text",
    "": "text",
}


class BadBatch(ValueError):
    """The body as a whole is not a batch of events; ``status`` and ``code`` answer it."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


@dataclass(frozen=True, slots=True)
class Rejected:
    """An event that breaks a rule of the contract; ``reason`` is stable, ``message`` says
    what the rule is."""

    reason: str
    message: str


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ is several times slower
class Event:
    """A valid event: its column values (strings), its parameters and its sequence number."""

    fields: dict[str, str]  # name ("e"), eid and the STRING_MEMBERS present, cleaned
    params: dict[str, str | int | float | bool | None]
    seq: int | None
    flags: frozenset[str]  # input problems recorded with it (value_truncated, ...)
    ts: int | None = None  # a server call's event time (ms); None: when it arrived
    ip: str | None = None  # a server call's client address (not yet anonymised)
    ua: str | None = None  # a server call's client user agent


@dataclass(frozen=True, slots=True)
class ServerCall:
    """The request carries an API key with the ingest scope: the SERVER_MEMBERS may be sent,
    and every event needs an eid (a server retries; its events must be recognised)."""

    now_ms: int
    max_age_ms: int


@dataclass(slots=True)
class Batch:
    """The items of a body (JSON values, or Rejected for an NDJSON line that is not JSON) and
    whether its text is ``plain``: no escape and no control character in it (UNSAFE_RAW)."""

    items: list[Any]
    plain: bool = False


@dataclass(frozen=True, slots=True)
class Rules:
    max_batch: int = 500
    max_params: int = 50
    max_value_chars: int = 2048
    registry: Registry = field(default_factory=Registry)  # PIXEL_EVENT_SCHEMAS


class _Repeated(dict[str, Any]):
    """A JSON object in which a member name appears twice (``repeated`` is the first such)."""

    repeated = ""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) == len(pairs):  # the common case: one dict built in C, one comparison
        return result
    marked, seen = _Repeated(result), set()
    for key, _ in pairs:
        if key in seen:
            marked.repeated = key
            break
        seen.add(key)
    return marked


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


# made once: json.loads with hooks builds a decoder (and its scanner) per call
_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_no_constant)


def _loads(text: str) -> Any:
    """JSON as RFC 8259 has it: no NaN or Infinity, a repeated member name marked."""
    return _DECODER.decode(text)


def _document(text: str) -> list[Any]:
    try:
        document = _loads(text)
    except (ValueError, RecursionError) as exc:
        raise BadBatch(400, "bad_json", f"the body is not JSON: {_reason(exc)}") from None
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        return [document]
    raise BadBatch(400, "bad_json", "the body is neither an array of events nor an event")


def _lines(text: str) -> list[Any]:
    """NDJSON: one event per non-blank line; a line that is not JSON is that event's
    rejection, not the batch's."""
    items: list[Any] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            items.append(_loads(line))
        except (ValueError, RecursionError) as exc:
            items.append(Rejected("bad_json", f"the line is not JSON: {_reason(exc)}"))
    return items


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc).split(":")[0]  # json's message without the echo of a position


def read_batch(body: bytes, media_type: str, rules: Rules) -> Batch:
    """The batch of a body (already gunzipped) of ``media_type``: its items to check with
    :func:`check_event`."""
    form = FORMATS.get(media_type)
    if form is None:
        accepted = ", ".join(t for t in FORMATS if t)
        raise BadBatch(415, "unsupported_media_type", f"Content-Type must be one of {accepted}")
    try:
        text = body.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise BadBatch(400, "bad_encoding", "the body is not UTF-8") from None
    if form == "text":  # an array, an object, or NDJSON: a body of several objects
        try:
            items = _document(text)
        except BadBatch:
            if not text.lstrip().startswith("{"):
                raise
            items = _lines(text)
    else:
        items = _document(text) if form == "json" else _lines(text)
    if not items:
        raise BadBatch(400, "no_events", "the body holds no event")
    if len(items) > rules.max_batch:
        message = f"{len(items)} events in one body; at most {rules.max_batch}"
        raise BadBatch(413, "too_many_events", message)
    # isprintable (C, no regex) settles the common body: no control character at all
    plain = "\\" not in text and (text.isprintable() or not UNSAFE_RAW.search(text))
    return Batch(items, plain)


def check_event(
    item: Any, rules: Rules, server: ServerCall | None = None, plain: bool = False
) -> Event | Rejected:
    """An item of a batch as an Event, or why it is not one; ``server`` for a server call;
    ``plain``: the item is from a plain body (:class:`Batch`), its strings need no scan."""
    if isinstance(item, Rejected):
        return item
    if not isinstance(item, dict):
        return Rejected("not_an_object", "an event is a JSON object")
    if isinstance(item, _Repeated):
        return Rejected("repeated_member", f"the member {item.repeated!r} appears twice")
    if not item.keys() <= MEMBERS:
        shown = clean_text(", ".join(sorted(item.keys() - MEMBERS)), 200, set())
        return Rejected("unknown_field", f"not a member of an event: {shown}")
    if server is None and not _SERVER_SET.isdisjoint(item):
        given = [key for key in SERVER_MEMBERS if key in item]
        message = f"{', '.join(given)}: only a server call (an ingest API key) may send them"
        return Rejected("server_only", message)
    name = item.get("name")
    if name is None:
        return Rejected("missing_name", "an event needs a name")
    if not isinstance(name, str) or len(name) > MAX_NAME_CHARS or not NAME.fullmatch(name):
        message = f"name must be snake_case: ^[a-z][a-z0-9_]*$, at most {MAX_NAME_CHARS} characters"
        return Rejected("bad_name", message)
    fields = {"e": name}
    flags: set[str] = set()
    eid = item.get("eid")
    if eid is not None:
        if not isinstance(eid, str) or not 0 < len(eid) <= MAX_EID_CHARS or _unsafe(eid, plain):
            message = f"eid must be 1 to {MAX_EID_CHARS} characters, no control character"
            return Rejected("bad_eid", message)
        fields["eid"] = eid
    elif server is not None:
        return Rejected("missing_eid", "a server call's events each need an eid")
    limit = rules.max_value_chars
    for key, value in item.items():  # the event's order: its first bad member is the one said
        if key not in _STRING_SET or value is None:
            continue
        if type(value) is not str:
            return Rejected("bad_value", f"{key} must be a string")
        fields[key] = value if plain and len(value) <= limit else _text(value, limit, flags, plain)
    seq = item.get("seq")
    if seq is not None and (type(seq) is not int or not 1 <= seq <= MAX_SEQ):
        return Rejected("bad_seq", f"seq must be an integer from 1 to {MAX_SEQ}")
    params = item.get("params")
    if params is None:
        params = {}
    checked = _params(params, rules, flags, plain)
    if isinstance(checked, Rejected):
        return checked
    problem = rules.registry.check(name, checked)
    if problem is not None:
        if rules.registry.rejects(problem):
            return Rejected(problem.reason, problem.message)
        flags.add("unknown_event" if problem.reason == "unknown_event" else "schema_violation")
    noted = frozenset(flags) if flags else NO_FLAGS
    if server is None:
        return Event(fields, checked, seq, noted)
    told = _server_members(item, server, flags, plain)
    if isinstance(told, Rejected):
        return told
    return Event(fields, checked, seq, frozenset(flags) if flags else NO_FLAGS, *told)


def _server_members(
    item: dict[str, Any], server: ServerCall, flags: set[str], plain: bool
) -> tuple[int | None, str | None, str | None] | Rejected:
    ts, ip, ua = item.get("ts"), item.get("ip"), item.get("ua")
    if ts is not None:
        ts = _time(ts)
        if ts is None:
            message = "ts is epoch milliseconds, or ISO 8601 with a UTC offset"
            return Rejected("bad_ts", message)
        if ts > server.now_ms + FUTURE_MS:
            return Rejected("in_future", "ts is more than 5 minutes ahead of the server's clock")
        if ts < server.now_ms - server.max_age_ms:
            hours = server.max_age_ms / 3_600_000
            message = f"ts is older than PIXEL_EVENTS_MAX_AGE ({hours:g} h)"
            return Rejected("too_old", message)
    if ip is not None and (not isinstance(ip, str) or parse_ip(ip) is None):
        return Rejected("bad_ip", "ip is one IPv4 or IPv6 address, nothing else")
    if ua is not None:
        if not isinstance(ua, str):
            return Rejected("bad_value", "ua must be a string")
        ua = _text(ua, MAX_UA_CHARS, flags, plain)
    return ts, ip, ua


def _time(value: Any) -> int | None:
    """Epoch milliseconds from an integer, or from ISO 8601 text with an offset."""
    if type(value) is int:
        return value if 0 <= value <= MAX_SAFE_INTEGER else None
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return int(moment.timestamp() * 1000)


def _params(
    params: Any, rules: Rules, flags: set[str], plain: bool
) -> dict[str, str | int | float | bool | None] | Rejected:
    if not isinstance(params, dict):
        return Rejected("bad_params", "params must be an object")
    if isinstance(params, _Repeated):
        return Rejected("repeated_member", f"params has {params.repeated!r} twice")
    if len(params) > rules.max_params:
        return Rejected("bad_params", f"{len(params)} params; at most {rules.max_params}")
    checked: dict[str, str | int | float | bool | None] = params  # a copy once one changes
    limit = rules.max_value_chars
    for key, value in params.items():
        if not 0 < len(key) <= MAX_PARAM_NAME_CHARS or _unsafe(key, plain):
            message = (
                f"a param name is 1 to {MAX_PARAM_NAME_CHARS} characters, no control character"
            )
            return Rejected("bad_params", message)
        kind = type(value)  # the decoder makes only exact types (an object: dict or _Repeated)
        if kind is str:
            if plain and len(value) <= limit:
                continue
            text = _text(value, limit, flags, plain)
            if text != value:
                if checked is params:
                    checked = dict(params)
                checked[key] = text
        elif kind is bool or value is None:
            pass
        elif kind is int:
            if abs(value) > MAX_SAFE_INTEGER:
                return _bad_param(key, "an integer beyond ±(2^53 - 1)")
        elif kind is float:
            if not math.isfinite(value):
                return _bad_param(key, "not a finite number")
        else:
            return _bad_param(key, "a string, number, boolean or null (params are flat)")
    return checked


def _bad_param(key: str, why: str) -> Rejected:
    """The rejection of a param's value; its name quoted as JSON (only now: valid params,
    the common case, never pay for it)."""
    return Rejected("bad_params", f"param {json.dumps(key)}: {why}")


def _unsafe(text: str, plain: bool) -> bool:
    return not plain and bool(UNSAFE.search(text) or SURROGATE.search(text))


def _text(value: str, limit: int, flags: set[str], plain: bool) -> str:
    """A string value made storable: half characters and control characters replaced, cut
    to ``limit``, each noted in ``flags`` (``plain``: there are none, see UNSAFE_RAW)."""
    if plain and len(value) <= limit:
        return value
    if SURROGATE.search(value):
        flags.add("invalid_utf8")
        value = SURROGATE.sub("\ufffd", value)
    return clean_text(value, limit, flags)


def media_type(headers: Mapping[bytes, bytes]) -> str:
    """The media type of a Content-Type header, lowercased, without its parameters."""
    raw = headers.get(b"content-type", b"")
    return raw.split(b";", 1)[0].strip().decode("latin-1").lower()
