"""The bodies the event scenarios POST to ``/e`` (docs/events.md), made once, here.

A body is a JSON array of events in which every ``eid`` holds ``EID_MARK``: ``body_template``
is what bench/events.lua gets (in ``BENCH_EVENT_BODY``) and what the probe sends, and each of
them puts a value unique to its request in place of every mark (``fill``); the mark is followed
by the event's index in the batch, so the eids of one request differ too. Everything else
(names, session, seq, params) is the same in every request: the server's work per event does
not depend on the values, and a fixed template keeps wrk's own cost per request to one
``table.concat``.
"""

from __future__ import annotations

import json
from typing import Any

from scenarios import Scenario

EID_MARK = "@@"  # not in the JSON otherwise (checked by body_template)
SESSION = "s-5d41402abc4b2a76"
PAGE_URL = "https://shop.example/products/trail-runner-2?utm_source=newsletter"

# What a shop's pages and app send between the pixel's views: 3-5 params each, strings, a
# number, a boolean.
EVENT_KINDS: list[tuple[str, dict[str, Any]]] = [
    (
        "view_item",
        {"item_id": "sku-48213", "category": "shoes", "price": 89.95, "on_sale": True},
    ),
    (
        "add_to_cart",
        {
            "item_id": "sku-48213",
            "item_name": "Trail Runner 2",
            "price": 89.95,
            "quantity": 1,
            "in_stock": True,
        },
    ),
    (
        "video_started",
        {"video_id": "v-2231", "title": "Spring lookbook", "duration_s": 94, "autoplay": False},
    ),
    (
        "video_progress",
        {"video_id": "v-2231", "percent": 50, "muted": False, "quality": "1080p"},
    ),
    (
        "add_to_wishlist",
        {"item_id": "sku-50117", "list": "favourites", "price": 59.0, "logged_in": True},
    ),
]


def events(count: int, *, page: bool) -> list[dict[str, Any]]:
    """``count`` events of one session, seq 1..count, the kinds in turn; ``page``: with the
    page's ``url``, as the /t.js tracker sends it."""
    out = []
    for index in range(count):
        name, params = EVENT_KINDS[index % len(EVENT_KINDS)]
        event: dict[str, Any] = {"name": name, "eid": f"{EID_MARK}.{index + 1}"}
        if page:
            event["url"] = PAGE_URL
        event.update(sid=SESSION, seq=index + 1, params=params)
        out.append(event)
    return out


def body_template(sc: Scenario) -> str:
    """The JSON body of ``sc`` with ``EID_MARK`` where each eid's unique part goes."""
    batch = events(sc.events_per_request, page=sc.content_type.startswith("text/plain"))
    text = json.dumps(batch, separators=(",", ":"))
    if text.count(EID_MARK) != sc.events_per_request:
        raise ValueError(f"{EID_MARK!r} must only mark the eids")
    return text


def fill(template: str, unique: str) -> bytes:
    """A body with ``unique`` in every eid: what events.lua does per request."""
    return template.replace(EID_MARK, unique).encode()
