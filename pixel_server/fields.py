"""The names a hit carries: its kinds, id columns and UTM keys (a token's own keys: payload.py).

No imports, on purpose: the CLI and the query parser read these names without loading the
hit pipeline (importing the user-agent parser alone costs about 100 ms, docs/benchmarks.md).
"""

from __future__ import annotations

KINDS = ("view", "open", "click", "event")
UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "utm_id")
ID_KEYS = ("e", "eid", "cid", "uid", "sid", "url", "ref")
COLUMN_KEYS = frozenset((*ID_KEYS, *UTM_KEYS))
# the ids `link` and `pixel` (and POST /api/links) take by name; other fields are extras
NAMED_KEYS = ("cid", "uid", "sid", *UTM_KEYS)
MAX_KEY_CHARS = 128
