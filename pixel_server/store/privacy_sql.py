"""SQL of the privacy features (privacy.py, salts.py), for both SQL stores: the daily salts.

Written with placeholders (sql.py's ``qmark`` or ``numbered``) so the two stores run the same
statements.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..erasure import Subject
from .sql import Placeholder, numbered, qmark


@dataclass(frozen=True)
class SaltSQL:
    """Offer a day's salt (kept if the day has none), destroy the salts of days before one,
    read a day's salt."""

    offer: str
    destroy: str
    read: str


def salt_sql(p: Placeholder = qmark) -> SaltSQL:
    # S608: placeholders only, never a value
    return SaltSQL(
        offer=f"INSERT INTO salts (day, salt) VALUES ({p(1)}, {p(2)})"  # noqa: S608
        " ON CONFLICT (day) DO NOTHING",
        destroy=f"DELETE FROM salts WHERE day < {p(1)}",  # noqa: S608
        read=f"SELECT salt FROM salts WHERE day = {p(1)}",  # noqa: S608
    )


@dataclass(frozen=True)
class PurgeSQL:
    """The purge's statements (retention.py): windows of hits by time, the raw fields of a
    window cleared, the purge's progress, the admin log."""

    first_ts: str  # the first hit time in [p1, p2)
    count_before: str
    delete_window: str
    state: str
    set_state: str
    log_add: str
    log_read: str

    @staticmethod
    def clear(fields: tuple[str, ...], p: Placeholder = qmark) -> tuple[str, str]:
        """(clear ``fields`` of the hits in [p1, p2), count those it would clear); the field
        names come from retention.RAW_FIELDS, never from input."""
        where = (
            f" WHERE ts >= {p(1)} AND ts < {p(2)} AND ("
            + " OR ".join(f"{f} IS NOT NULL" for f in fields)
            + ")"
        )
        sets = ", ".join(f"{f} = NULL" for f in fields)
        return f"UPDATE hits SET {sets}{where}", f"SELECT count(*) FROM hits{where}"  # noqa: S608


def purge_sql(p: Placeholder = qmark) -> PurgeSQL:
    # S608: placeholders only, never a value
    return PurgeSQL(
        first_ts=f"SELECT min(ts) FROM hits WHERE ts >= {p(1)} AND ts < {p(2)}",  # noqa: S608
        count_before=f"SELECT count(*) FROM hits WHERE ts < {p(1)}",  # noqa: S608
        delete_window=f"DELETE FROM hits WHERE ts >= {p(1)} AND ts < {p(2)}",  # noqa: S608
        state="SELECT hits_before, raw_before, raw_fields, horizon FROM retention_state",
        set_state=(
            f"UPDATE retention_state SET hits_before = {p(1)}, raw_before = {p(2)},"  # noqa: S608
            f" raw_fields = {p(3)}, horizon = {p(4)}"
        ),
        log_add=(
            "INSERT INTO admin_log (ts, action, actor, detail)"  # noqa: S608
            f" VALUES ({p(1)}, {p(2)}, {p(3)}, {p(4)})"
        ),
        log_read=(
            "SELECT ts, action, actor, detail FROM admin_log"  # noqa: S608
            f" WHERE ts >= {p(1)} AND ts < {p(2)} ORDER BY ts, id LIMIT {p(3)}"
        ),
    )


def subject_where(uid: str, p: Placeholder, sqlite: bool) -> tuple[str, list[str]]:
    """The WHERE clause of a data subject's hits (erasure.Subject's test) and its values:
    the uid, the uid as a JSON string inside the parameters, or as a query value of url,
    ref or referer (``=value`` followed by ``&``, ``#`` or the end)."""
    subject = Subject(uid)
    json_text, url_values = subject.json_text, subject.url_values
    args: list[str] = []

    def arg(value: str) -> str:
        args.append(value)
        return p(len(args))

    find = "instr" if sqlite else "strpos"
    clauses = [f"uid = {arg(uid)}", f"{find}(params, {arg(json_text)}) > 0"]
    for column in ("url", "ref", "referer"):
        for value in url_values:
            clauses.append(f"{find}({column}, {arg(value + '&')}) > 0")
            clauses.append(f"{find}({column}, {arg(value + '#')}) > 0")
            n = len(value)  # an int of ours, not input
            tail = f"substr({column}, -{n})" if sqlite else f"right({column}, {n})"
            clauses.append(f"{tail} = {arg(value)}")
    return " OR ".join(clauses), args


# the free-text columns where another hit may mention a data subject's uid: redacted there
REDACT_COLUMNS = (
    "sid", "msg", "url", "ref", "referer", "params", "utm_term", "utm_content", "utm_id", "ua",
)  # fmt: skip
ERASED = "[erased]"


def redactions(uid: str, sqlite: bool) -> list[tuple[str, str, tuple[str, ...]]]:
    """(select the (ts, cid, kind) of the hits that mention ``uid``, replace it in them,
    their arguments) per free-text column and form of the uid (erasure.Subject.forms)."""
    p = (lambda n: f"?{n}") if sqlite else numbered
    find = "instr" if sqlite else "strpos"
    found: list[tuple[str, str, tuple[str, ...]]] = []
    for form in Subject(uid).forms:
        for column in REDACT_COLUMNS:
            where = f" WHERE {find}({column}, {p(1)}) > 0"
            select = f"SELECT ts, cid, kind FROM hits{where}"  # noqa: S608
            update = f"UPDATE hits SET {column} = replace({column}, {p(1)}, {p(2)}){where}"  # noqa: S608
            found.append((select, update, (form, ERASED)))
    return found
