"""The plain-body fast path of POST /e (events.Batch.plain) changes nothing but speed: for any
body, every event is checked exactly as it is with every string scanned."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pixel_server.events import STRING_MEMBERS, Rules, check_event, read_batch

# every kind of character a sender may put in a string: control characters (C0, DEL, C1),
# backslashes and quotes, half characters (only as \\u escapes), non-ASCII
TEXT = st.text(
    st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(["\x00", "\t", "\n", "\x1b", "\x7f", "\x85", "\x9f", "\\", '"', "\ud800"]),
    ),
    max_size=12,
)
VALUE = st.one_of(TEXT, st.integers(-(2**60), 2**60), st.floats(), st.booleans(), st.none())
EVENT = st.fixed_dictionaries(
    {"name": st.sampled_from(["add_to_cart", "Bad-Name", "x"])},
    optional={
        "eid": TEXT,
        "seq": st.integers(0, 10),
        "params": st.dictionaries(TEXT, VALUE, max_size=4),
        **{key: st.one_of(TEXT, st.integers()) for key in STRING_MEMBERS},
    },
)
RULES = Rules(max_value_chars=8)  # short: the cut is exercised too


def _bodies(events: list[dict[str, Any]], ascii_only: bool) -> bytes:
    text = json.dumps(events, ensure_ascii=ascii_only)
    return text.encode("utf-8", "surrogatepass")


@settings(max_examples=400, deadline=None)
@given(st.lists(EVENT, min_size=1, max_size=5), st.booleans())
def test_plain_checks_like_a_full_scan(events: list[dict[str, Any]], ascii_only: bool) -> None:
    body = _bodies(events, ascii_only)
    try:
        batch = read_batch(body, "application/json", RULES)
    except ValueError:  # a raw half character is no UTF-8: the body is refused either way
        return
    fast = [check_event(item, RULES, None, batch.plain) for item in batch.items]
    full = [check_event(item, RULES, None, False) for item in batch.items]
    assert fast == full


def test_plain_is_only_said_of_bodies_without_escapes_or_controls() -> None:
    plain = read_batch(b'[{"name":"a","params":{"k":"v\xc3\xa9"}}]', "application/json", RULES)
    assert plain.plain
    for body in (rb'[{"name":"a","sid":"\n"}]', b'[{"name":"a","sid":"\xc2\x85"}]'):
        assert not read_batch(body, "application/json", RULES).plain
    # JSON's whitespace between tokens is no reason to scan
    assert read_batch(b'[\n\t{"name": "a"}\r\n]', "application/json", RULES).plain
