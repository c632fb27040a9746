"""The admin log: who did what to the data and the keys — a key made or revoked, a purge, an
erasure — kept in the store, read with ``pixel-server admin-log`` and ``GET /api/admin-log``
(admin scope). An entry never holds a secret, nor an erased identifier in clear (erasure.py
writes its keyed hash)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

ACTIONS = ("key_created", "key_revoked", "purge", "erase", "subject_export")


@dataclass(frozen=True)
class AdminEntry:
    ts: int  # epoch ms
    action: str
    actor: str  # "cli", "server", or an API key's id
    detail: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"ts": self.ts, "action": self.action, "actor": self.actor, "detail": self.detail}


def encode(detail: dict[str, Any]) -> str:
    return json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry(row: Any) -> AdminEntry:
    ts, action, actor, detail = row
    return AdminEntry(int(ts), str(action), str(actor), json.loads(detail))
