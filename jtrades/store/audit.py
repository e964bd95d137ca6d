"""The audit log: one row per management change (who, what, on which object).

Write it in the same transaction as the change it describes, so a rolled-back change leaves no
audit row and a committed one always has one. ``detail`` must never hold a secret: pass names,
ids and flags, not passwords or tokens (values are also scrubbed of known secrets as a backstop).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jtrades.logging import MASK, scrub
from jtrades.queries import q
from jtrades.store import Executor, translate_errors

_SECRET_KEY = re.compile(r"(pass(word)?|secret|token|^sec$|api[_-]?key|^key$)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    detail: dict[str, Any] | None


def _clean(value: Any, key: str = "") -> Any:
    if isinstance(value, str):
        return MASK if value and _SECRET_KEY.search(key) else scrub(value)
    if isinstance(value, dict):
        return {str(k): _clean(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v, key) for v in value]
    return value


async def record(
    ex: Executor,
    actor: str,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
) -> int:
    """Append one audit row (e.g. ``record(conn, actor(), "users.approve", "alice")``)."""
    with translate_errors():
        row_id: int = await ex.fetchval(
            q("audit.insert"), actor, action, target, _clean(detail) if detail else None
        )
    return row_id


async def recent(ex: Executor, limit: int = 50) -> list[AuditEntry]:
    """The newest entries first."""
    with translate_errors():
        rows = await ex.fetch(q("audit.recent"), limit)
    return [AuditEntry(**dict(r)) for r in rows]
