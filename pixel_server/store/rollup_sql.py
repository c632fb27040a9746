"""SQL of the rollups (rollup.py), shared by the SQL stores: reading cells for a report, and
the statements that add to them.

Column names come from rollup.py's own tuples, checked here; every value is a parameter.
"""

from __future__ import annotations

from typing import Any

from ..rollup import MACHINE_CELL, SELECTABLE, CellQuery
from ..traffic import MACHINE
from .sql import Placeholder, qmark, storable

# the purge's horizon (retention.py), 0 without one: no cell before it is recounted
HORIZON_SQL = "SELECT coalesce(horizon, 0) FROM retention_state"
MACHINES = ", ".join(f"'{name}'" for name in sorted({*MACHINE, MACHINE_CELL}))


def _where(query: CellQuery, placeholder: Placeholder) -> tuple[str, list[Any]] | None:
    args: list[Any] = [query.dim, *query.slots]
    clauses = [
        f"dim = {placeholder(1)}",
        f"slot >= {placeholder(2)}",
        f"slot < {placeholder(3)}",
    ]
    for column, value in query.equals:
        if column not in SELECTABLE:
            raise ValueError(f"not a rollup column: {column}")
        if not storable(value):
            return None
        args.append(value)
        clauses.append(f"{column} = {placeholder(len(args))}")
    if not query.machines:
        clauses.append(f"traffic NOT IN ({MACHINES})")
    return " AND ".join(clauses), args


def _by(query: CellQuery) -> str:
    for column in query.by:
        if column not in SELECTABLE:
            raise ValueError(f"not a rollup column: {column}")
    return "".join(f"{column}, " for column in query.by)


def cell_reads(
    query: CellQuery, placeholder: Placeholder = qmark
) -> list[tuple[str, list[Any]]] | None:
    """The statements (counts, sums, and sketches if asked) that answer ``query``, in the
    order of CellAnswer's lists; None when no cell can match (a value no hit can hold)."""
    where = _where(query, placeholder)
    if where is None:
        return None
    clause, args = where
    by = _by(query)
    group = f"GROUP BY slot, {by}kind"
    reads = [
        (f"SELECT slot, {by}kind, sum(n) FROM rollups WHERE {clause} {group}", args),  # noqa: S608
        (
            f"SELECT slot, {by}kind, param, sum(total), sum(n) FROM rollup_sums"  # noqa: S608
            f" WHERE {clause} {group}, param",
            args,
        ),
    ]
    if query.sketches:
        reads.append(
            (
                f"SELECT slot, {by}kind, uniques FROM rollups"  # noqa: S608
                f" WHERE {clause} AND uniques IS NOT NULL",
                args,
            )
        )
    return reads
