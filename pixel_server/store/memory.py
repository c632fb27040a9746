"""An in-memory store for tests: the Store protocol in a list, with an outage switch."""

from __future__ import annotations

import asyncio
import operator
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from operator import itemgetter
from typing import Any

from ..adminlog import AdminEntry
from ..apikeys import ApiKey
from ..bursts import SEEN_COLUMNS, Relabel, Seen
from ..erasure import Subject
from ..hits import COLUMNS, Hit
from ..loss import DAY_MS, LossRow, duplicate_counts, merge
from ..query import HitQuery
from ..retention import Plan, Report
from ..revocations import Revocation
from ..rollup import Cell, CellAnswer, CellQuery, Key, Spec, answer, counting
from ..totals import KINDS, Campaign, group_rows
from .base import ROW_KEYS, CopyPosition, PositionMoved, Row, StoreUnavailable
from .sql import relabel_args

_values = itemgetter(*ROW_KEYS)

ROW_KEYS = ("id", *COLUMNS)
_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    "<": operator.lt,
    "=": operator.eq,
    ">": operator.gt,
    "<=": operator.le,
}


class MemoryStore:
    """Keeps rows in a list. Set ``down = True`` to make writes fail as an outage would."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.batches: list[int] = []
        self.progress: dict[str, int] = {}
        self.copies: dict[str, CopyPosition] = {}
        self.id = uuid.uuid4().hex
        self.down = False
        self.gate: asyncio.Event | None = None  # when set, each write waits for it
        self.keys: dict[str, ApiKey] = {}
        self.duplicates: Counter[tuple[int, str]] = Counter()
        self.revoked: dict[str, Revocation] = {}
        self.spec = Spec()
        self.refused: Counter[tuple[int, str, str]] = Counter()
        self.salts: dict[int, bytes] = {}
        self.admin: list[AdminEntry] = []

    async def open(self) -> None:
        return None

    async def spill_offset(self, journal: str) -> int:
        return self.progress.get(journal, 0)

    async def forget_spill(self, journal: str) -> None:
        self.progress.pop(journal, None)

    async def write(
        self, hits: Sequence[Hit], progress: tuple[str, int] | None = None
    ) -> Counter[str]:
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise StoreUnavailable("memory store is down")
        # an eid is unique per kind, as SQLite's hits_kind_eid index makes it
        seen = {(row["kind"], row["eid"]) for row in self.rows if row["eid"] is not None}
        added: Counter[str] = Counter()
        for hit in hits:
            if hit.eid is not None and (hit.kind, hit.eid) in seen:
                continue
            if hit.eid is not None:
                seen.add((hit.kind, hit.eid))
            self.rows.append(
                {"id": len(self.rows) + 1, **dict(zip(COLUMNS, hit.row(), strict=True))}
            )
            added[hit.kind] += 1
        self.batches.append(len(hits))
        if progress is not None:
            self.progress[progress[0]] = progress[1]
        return added

    async def write_events(self, hits: Sequence[Hit]) -> list[bool]:
        before = len(self.rows)
        await self.write(hits)
        new = {(row["kind"], row["eid"]) for row in self.rows[before:]}
        outcomes = []
        for hit in hits:
            key = (hit.kind, hit.eid)
            outcomes.append(hit.eid is None or key in new)
            new.discard(key)  # a second one in the batch is a duplicate
        self.duplicates.update(duplicate_counts(hits, outcomes))
        return outcomes

    def _cells(self) -> dict[Key, Cell]:
        rows = [tuple(row[c] for c in COLUMNS) for row in self.rows]
        return counting(rows, self.spec).cells()

    async def rollup_cells(self, query: CellQuery) -> CellAnswer:
        return answer(self._cells(), query)

    async def add_rejects(self, day: int, counts: Mapping[tuple[str, str], int]) -> None:
        for (kind, reason), n in counts.items():
            self.refused[(day, kind, reason)] += n

    async def rejects(self, days: tuple[int, int]) -> list[tuple[int, str, str, int]]:
        return sorted(
            (d, k, r, n) for (d, k, r), n in self.refused.items() if days[0] <= d < days[1]
        )

    async def purge(self, plan: Plan) -> Report:
        report = Report(plan.dry_run, hits_before=plan.hits_before, raw_before=plan.raw_before)
        old = [r for r in self.rows if plan.hits_before is not None and r["ts"] < plan.hits_before]
        report.hits_deleted = len(old)
        raw = [r for r in self.rows if plan.raw_before is not None and r["ts"] < plan.raw_before]
        raw = [r for r in raw if r not in old and any(r[f] is not None for f in plan.fields)]
        report.hits_cleared = len(raw)
        if not plan.dry_run:
            self.rows = [r for r in self.rows if r not in old]
            for row in raw:
                row.update(dict.fromkeys(plan.fields))
        return report

    async def subject_hits(self, uid: str) -> list[dict[str, Any]]:
        subject = Subject(uid)
        rows = [r for r in self.rows if subject.matches(Hit(*(r[c] for c in COLUMNS)))]
        return sorted(rows, key=itemgetter("ts", "id"))

    async def erase_subject(self, uid: str) -> tuple[int, int]:
        found = await self.subject_hits(uid)
        self.rows = [r for r in self.rows if r not in found]
        return len(found), 0

    async def log_admin(self, ts: int, action: str, actor: str, detail: dict[str, Any]) -> None:
        self.admin.append(AdminEntry(ts, action, actor, detail))

    async def admin_log(self, span: tuple[int, int], limit: int) -> list[AdminEntry]:
        return [e for e in self.admin if span[0] <= e.ts < span[1]][:limit]

    async def day_salt(self, day: int, offered: bytes, keep_from: int) -> bytes:
        if self.down:
            raise StoreUnavailable("memory store is down")
        salt = self.salts.setdefault(day, offered)
        for old in [d for d in self.salts if d < keep_from]:
            del self.salts[old]
        return salt

    async def rollups_complete(self) -> bool:
        return True  # computed from the rows at each read

    async def rebuild_rollups(self) -> int:
        return len(self.rows)

    async def loss_report(self, span: tuple[int, int], cid: str | None = None) -> list[LossRow]:
        since, until = span
        sessions: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row in self.rows:
            if row["kind"] != "event" or row["sid"] is None or row["seq"] is None:
                continue
            if since - DAY_MS <= row["ts"] < until + DAY_MS:
                sessions.setdefault((row["sid"], row["cid"] or ""), []).append(row)
        per_day: dict[tuple[int, str], list[int]] = {}
        for (_, campaign), rows in sessions.items():
            start = min(r["ts"] for r in rows)
            if not since <= start < until or (cid is not None and campaign != cid):
                continue
            got = len({r["seq"] for r in rows})
            totals = per_day.setdefault((start // DAY_MS, campaign), [0, 0, 0, 0])
            for i, add in enumerate(
                (1, len(rows), max(r["seq"] for r in rows) - got, len(rows) - got)
            ):
                totals[i] += add
        duplicates = [
            (day, campaign, n)
            for (day, campaign), n in self.duplicates.items()
            if since // DAY_MS <= day < until // DAY_MS and cid in (None, campaign)
        ]
        return merge([(*key, *totals) for key, totals in sorted(per_day.items())], duplicates)

    async def campaign_groups(self, cid: str, span: tuple[int, int]) -> Campaign:
        rows = [
            row
            for row in self.rows
            if row["cid"] == cid and span[0] <= row["ts"] < span[1] and row["kind"] in KINDS
        ]
        reasons: Counter[tuple[str | None, str]] = Counter(
            (row["traffic"], row["traffic_reasons"]) for row in rows if row["traffic_reasons"]
        )
        return Campaign(group_rows(rows), [(t, text, n) for (t, text), n in reasons.items()])

    async def add_api_key(self, key: ApiKey) -> None:
        if self.down:
            raise StoreUnavailable("memory store is down")
        if key.id in self.keys:
            raise ValueError(f"key {key.id} exists")
        self.keys[key.id] = key

    async def api_keys(self) -> list[ApiKey]:
        if self.down:
            raise StoreUnavailable("memory store is down")
        return sorted(self.keys.values(), key=lambda key: (key.created_ms, key.id))

    async def revoke_api_key(self, key_id: str, now_ms: int) -> ApiKey | None:
        key = self.keys.get(key_id)
        if key is not None and key.revoked_ms is None:
            key = self.keys[key_id] = replace(key, revoked_ms=now_ms)
        return key

    async def add_revocation(self, rule: Revocation) -> None:
        self._check_up()
        self.revoked.pop(rule.id, None)
        self.revoked[rule.id] = rule

    async def revocations(self) -> list[Revocation]:
        self._check_up()
        return sorted(self.revoked.values(), key=lambda rule: (rule.created_ms, rule.id))

    async def remove_revocation(self, rule_id: str) -> Revocation | None:
        self._check_up()
        return self.revoked.pop(rule_id, None)

    def _check_up(self) -> None:
        if self.down:
            raise StoreUnavailable("memory store is down")

    async def prepare_span(self, first_ms: int, last_ms: int) -> None:
        return None  # one table holds any time

    async def copy_in(
        self,
        rows: Sequence[Row],
        position: CopyPosition,
        previous: Awaitable[object] | None = None,
    ) -> Counter[str]:
        if previous is not None:
            await previous
        before = self.copies.get(position.source)
        if (before.last if before else None) != position.after:
            raise PositionMoved(f"the copy stands at {before}, not {position.after}")
        added = await self.write([Hit(*row[1:]) for row in rows])  # (id, *COLUMNS)
        copied = (before.copied if before else 0) + added.total()
        self.copies[position.source] = replace(position, copied=copied, after=None)
        return added

    async def copy_position(self, source: str) -> CopyPosition | None:
        return self.copies.get(source)

    async def store_id(self) -> str:
        return self.id

    async def query(self, query: HitQuery) -> list[dict[str, Any]]:
        tests = [(column, _OPERATORS[op], value) for column, op, value in query.conditions()]
        bounds = [(_OPERATORS[op], bound) for op, bound in query.keyset()]

        def matches(row: dict[str, Any]) -> bool:
            key = (row["ts"], row["id"])
            if not all(test(key, bound) for test, bound in bounds):
                return False
            return all(test(row[column], value) for column, test, value in tests)

        ordered = sorted(
            self.rows, key=lambda row: (row["ts"], row["id"]), reverse=not query.oldest_first
        )
        return [row for row in ordered if matches(row)][: query.page_size]

    async def query_rows(self, query: HitQuery) -> list[Sequence[Any]]:
        return [_values(row) for row in await self.query(query)]

    async def count(self, query: HitQuery) -> int:
        return len(await self.query(replace(query, limit=len(self.rows) or 1)))

    async def count_by_kind(self, query: HitQuery) -> Counter[str]:
        return Counter(
            row["kind"] for row in await self.query(replace(query, limit=len(self.rows) or 1))
        )

    async def clicks_since(self, since_ms: int, limit: int) -> list[Seen]:
        clicks = [r for r in self.rows if r["kind"] == "click" and r["ts"] >= since_ms]
        clicks.sort(key=itemgetter("ts", "id"))
        return [Seen._make(r[c] for c in SEEN_COLUMNS) for r in clicks[:limit]]

    async def relabel(self, changes: Sequence[Relabel]) -> int:
        by_id = {r["id"]: r for r in self.rows}
        changed = 0
        for cls, reasons, rules, bot, row_id, ts, expected in relabel_args(changes):
            row = by_id.get(row_id)
            if row is not None and row["ts"] == ts and row["traffic"] == expected:
                row.update(traffic=cls, traffic_reasons=reasons, traffic_rules=rules, is_bot=bot)
                changed += 1
        return changed

    async def schema_version(self) -> int:
        return 0  # nothing to migrate

    async def aclose(self) -> None:
        return None
