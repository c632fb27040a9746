"""SQL shared by the SQL stores: a :class:`HitQuery` rendered as a ``WHERE`` clause.

The stores differ only in how a parameter is written: SQLite's ``?``, PostgreSQL's ``$1 ..
$n``. Column names come from query.py's own tables (never from input), and every value travels
as a parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..apikeys import ApiKey
from ..bursts import SEEN_COLUMNS, Relabel
from ..hits import COLUMNS
from ..loss import DAY_MS
from ..query import OPERATORS, HitQuery
from ..revocations import Revocation
from ..totals import KINDS as CAMPAIGN_KINDS
from ..totals import PROXY, PROXY_REPEAT_MS
from ..traffic import MACHINE, RULES_VERSION

# a parameter's text from its 1-based position
Placeholder = Callable[[int], str]
SELECT_COLUMNS = "id, " + ", ".join(COLUMNS)
# newest first; every filter's index yields this order (SQLite schema.py migration 3, the
# PostgreSQL migrations likewise), and the cursor clause continues it, so no page sorts;
# oldest first (a copy) walks the same indexes forwards
ORDER_BY = "ts DESC, id DESC"
OLDEST_FIRST = "ts, id"
_COLUMNS = frozenset(COLUMNS)
NOTHING = " WHERE 1 = 0"  # a filter no row can match
KEY_COLUMNS = "id, name, scopes, hash, created_ms, revoked_ms"  # of api_keys, as ApiKey's


def api_key(row: Any) -> ApiKey:
    """An ``api_keys`` row (KEY_COLUMNS) as an ApiKey."""
    key_id, name, scopes, digest, created, revoked = row
    revoked_ms = None if revoked is None else int(revoked)
    return ApiKey(key_id, name, tuple(scopes.split(",")), digest, int(created), revoked_ms)


def storable(text: str) -> bool:
    """Whether a stored hit can hold ``text``: hits never keep NUL (hits.py replaces control
    characters) and are UTF-8, and PostgreSQL refuses both in a parameter; such a filter
    value matches no row, rather than failing the query."""
    if "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate, e.g. from a command line's stray bytes
        return False
    return True


def qmark(_position: int) -> str:
    return "?"


def numbered(position: int) -> str:
    return f"${position}"


def where(query: HitQuery, placeholder: Placeholder = qmark) -> tuple[str, list[Any]]:
    """``" WHERE ..."`` (or ``""``) and its arguments, in placeholder order."""
    clauses: list[str] = []
    args: list[Any] = []
    for column, operator, value in query.conditions():
        if column not in _COLUMNS or operator not in OPERATORS:
            raise ValueError(f"not a hit filter: {column} {operator}")
        if isinstance(value, str) and not storable(value):
            return NOTHING, []
        args.append(value)
        clauses.append(f"{column} {operator} {placeholder(len(args))}")
    for operator, bound in query.keyset():
        # a row value, so the index on (..., ts) [+ id] is entered at the cursor
        args.extend(bound)
        pair = f"({placeholder(len(args) - 1)}, {placeholder(len(args))})"
        clauses.append(f"(ts, id) {operator} {pair}")
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def page(query: HitQuery, placeholder: Placeholder = qmark) -> tuple[str, list[Any]]:
    """The statement and arguments that read one page of ``query``, newest first (or oldest
    first)."""
    clause, args = where(query, placeholder)
    args.append(query.page_size)
    sql = (
        f"SELECT {SELECT_COLUMNS} FROM hits{clause}"  # noqa: S608 - see the module docstring
        f" ORDER BY {OLDEST_FIRST if query.oldest_first else ORDER_BY}"
        f" LIMIT {placeholder(len(args))}"
    )
    return sql, args


def count(query: HitQuery, placeholder: Placeholder = qmark) -> tuple[str, list[Any]]:
    """The statement and arguments that count the rows of ``query`` (its limit ignored)."""
    clause, args = where(query, placeholder)
    return f"SELECT count(*) FROM hits{clause}", args  # noqa: S608 - see the module docstring


def count_by_kind(query: HitQuery, placeholder: Placeholder = qmark) -> tuple[str, list[Any]]:
    """The statement and arguments that count the rows of ``query`` per kind: rows of
    ``(kind, count)``."""
    clause, args = where(query, placeholder)
    return f"SELECT kind, count(*) FROM hits{clause} GROUP BY kind", args  # noqa: S608


def loss_sessions(
    span: tuple[int, int], cid: str | None, placeholder: Placeholder = qmark
) -> tuple[str, list[Any]]:
    """Per (day, cid): sessions, events received, lost and repeated, for the sessions that
    began in ``span`` (ms, whole days); their events are read a day beyond each edge
    (loss.py says why). Rows of ``(day, cid, sessions, received, lost, repeated)``."""
    since, until = span
    args: list[Any] = [since - DAY_MS, until + DAY_MS]
    campaign = ""
    if cid is not None:
        args.append(cid)
        campaign = f" AND coalesce(cid, '') = {placeholder(len(args))}"
    args.extend((since, until))
    first, last = placeholder(len(args) - 1), placeholder(len(args))
    sql = f"""
SELECT day, cid, count(*), sum(n), sum(last_seq - got), sum(n - got) FROM (
    SELECT min(ts) / {DAY_MS} AS day, coalesce(cid, '') AS cid, max(seq) AS last_seq,
           count(DISTINCT seq) AS got, count(*) AS n
    FROM hits
    WHERE kind = 'event' AND sid IS NOT NULL AND seq IS NOT NULL
      AND ts >= {placeholder(1)} AND ts < {placeholder(2)}{campaign}
    GROUP BY sid, coalesce(cid, '')
    HAVING min(ts) >= {first} AND min(ts) < {last}
) AS sessions
GROUP BY day, cid ORDER BY day, cid"""  # noqa: S608 - see the module docstring
    return sql, args


def loss_duplicates(
    span: tuple[int, int], cid: str | None, placeholder: Placeholder = qmark
) -> tuple[str, list[Any]]:
    """Rows of ``(day, cid, n)``: the duplicates counted in ``span``."""
    args: list[Any] = [span[0] // DAY_MS, span[1] // DAY_MS]
    bounds = f"day >= {placeholder(1)} AND day < {placeholder(2)}"
    sql = f"SELECT day, cid, n FROM event_duplicates WHERE {bounds}"  # noqa: S608
    if cid is not None:
        args.append(cid)
        sql += f" AND cid = {placeholder(3)}"
    return sql, args


# the burst pass's read (burstpass.py): the clicks since a time, oldest first. `kind =
# 'click'` is spelled out, not a parameter, so that the partial index on the clicks' ts
# (SQLite migration 10, PostgreSQL 8) can serve it
SEEN_SELECT = ", ".join(SEEN_COLUMNS)


def clicks_since(
    since_ms: int, limit: int, placeholder: Placeholder = qmark
) -> tuple[str, list[Any]]:
    """The statement and arguments that read up to ``limit`` clicks at or after
    ``since_ms``, oldest first, as rows in bursts.SEEN_COLUMNS order."""
    sql = (
        f"SELECT {SEEN_SELECT} FROM hits WHERE kind = 'click' AND ts >= {placeholder(1)}"  # noqa: S608
        f" ORDER BY ts, id LIMIT {placeholder(2)}"
    )
    return sql, [since_ms, limit]


def relabel_args(changes: Iterable[Relabel]) -> list[tuple[Any, ...]]:
    """``(traffic, traffic_reasons, traffic_rules, is_bot, id, ts, expected)`` per change,
    the parameters of the stores' compare-and-set update."""
    return [
        (c.cls, c.reasons or None, RULES_VERSION, int(c.cls in MACHINE), c.id, c.ts, c.expected)
        for c in changes
    ]


def _campaign_where(
    cid: str, span: tuple[int, int], placeholder: Placeholder
) -> tuple[str, list[Any]]:
    kinds = ", ".join(f"'{kind}'" for kind in CAMPAIGN_KINDS)
    clause = (
        f"cid = {placeholder(1)} AND ts >= {placeholder(2)} AND ts < {placeholder(3)}"
        f" AND kind IN ({kinds})"
    )
    return clause, [cid, *span]


def campaign_groups(
    cid: str, span: tuple[int, int], placeholder: Placeholder = qmark
) -> tuple[str, list[Any]]:
    """Rows of ``(kind, traffic, uid, link, head, repeat, n)``: the hits of campaign ``cid``
    in ``span`` (ms) grouped as totals.py's Group. A repeat is a mail_proxy GET of the same
    kind and uid less than PROXY_REPEAT_MS after the one before (lag over its partition)."""
    clause, args = _campaign_where(cid, span, placeholder)
    sql = f"""
SELECT kind, traffic, uid, link, head, CASE WHEN gap < {PROXY_REPEAT_MS} THEN 1 ELSE 0 END
       AS is_repeat, count(*)
FROM (
    SELECT kind, traffic, uid, CASE WHEN kind = 'click' THEN url END AS link,
           CASE WHEN method = 'HEAD' THEN 1 ELSE 0 END AS head,
           CASE WHEN traffic = '{PROXY}' AND uid IS NOT NULL AND method <> 'HEAD'
                THEN ts - lag(ts) OVER (
                    PARTITION BY kind, traffic, uid, method = 'HEAD' ORDER BY ts, id)
           END AS gap
    FROM hits WHERE {clause}
) AS campaign
GROUP BY kind, traffic, uid, link, head, is_repeat"""  # noqa: S608 - see the module docstring
    return sql, args


def campaign_reasons(
    cid: str, span: tuple[int, int], placeholder: Placeholder = qmark
) -> tuple[str, list[Any]]:
    """Rows of ``(traffic, traffic_reasons, n)`` of the same hits as campaign_groups."""
    clause, args = _campaign_where(cid, span, placeholder)
    sql = (
        "SELECT traffic, traffic_reasons, count(*) FROM hits"  # noqa: S608 - as above
        f" WHERE {clause} AND traffic_reasons IS NOT NULL GROUP BY traffic, traffic_reasons"
    )
    return sql, args


# of revocations, as Revocation's fields (its id first)
REVOCATION_COLUMNS = "id, kind, link, cid, target, reason, offer_continue, created_ms"


def revocation(row: Any) -> Revocation:
    """A ``revocations`` row (REVOCATION_COLUMNS) as a Revocation."""
    _id, kind, link, cid, target, reason, offer_continue, created = row
    return Revocation(kind, link, cid, target, reason, bool(offer_continue), int(created))


def revocation_values(rule: Revocation) -> tuple[Any, ...]:
    """The REVOCATION_COLUMNS values of ``rule``."""
    return (
        rule.id,
        rule.kind,
        rule.link,
        rule.cid,
        rule.target,
        rule.reason,
        rule.offer_continue,
        rule.created_ms,
    )


def revocation_sql(placeholder: Placeholder = qmark) -> tuple[str, str, str]:
    """The statements that add (or replace) a revocation, list them oldest first, and delete
    one by id returning it."""
    values = ", ".join(placeholder(n) for n in range(1, 9))
    upsert = (
        f"INSERT INTO revocations ({REVOCATION_COLUMNS}) VALUES ({values})"  # noqa: S608
        " ON CONFLICT (id) DO UPDATE SET reason = excluded.reason,"
        " offer_continue = excluded.offer_continue, created_ms = excluded.created_ms"
    )
    listing = f"SELECT {REVOCATION_COLUMNS} FROM revocations ORDER BY created_ms, id"  # noqa: S608
    delete = (
        f"DELETE FROM revocations WHERE id = {placeholder(1)}"  # noqa: S608
        f" RETURNING {REVOCATION_COLUMNS}"
    )
    return upsert, listing, delete


def rejects_sql(placeholder: Placeholder = qmark) -> tuple[str, str]:
    """The statements that add to the refused requests of a day, kind and reason, and read
    them for a span of days: rows of ``(day, kind, reason, n)``."""
    p = placeholder
    add = (
        f"INSERT INTO rejects (day, kind, reason, n) VALUES ({p(1)}, {p(2)}, {p(3)}, {p(4)})"  # noqa: S608
        " ON CONFLICT (day, kind, reason) DO UPDATE SET n = rejects.n + excluded.n"
    )
    read = (
        "SELECT day, kind, reason, n FROM rejects"  # noqa: S608 - placeholders only
        f" WHERE day >= {p(1)} AND day < {p(2)} ORDER BY day, kind, reason"
    )
    return add, read
