"""`azfed audit`: what the receiver decided on its own, newest first: each public orphan it
cleaned, and each it failed to clean with the error. Read straight from the store, so it works
while the receiver is down."""

from __future__ import annotations

import datetime as dt
from typing import Any

from azfed.config import AzfedConfig
from azfed.receiver.store import Store
from azfed.texttable import table


async def collect(config: AzfedConfig, limit: int = 50) -> list[dict[str, Any]]:
    """The last `limit` entries of the audit trail, newest first."""
    config.require("receiver")
    assert config.receiver is not None
    store = Store(config.receiver.database_url)
    await store.open()
    try:
        rows = await store.audit_trail(limit=limit)
    finally:
        await store.close()
    return [
        {"at": _rfc3339(r["at"]), "kind": r["kind"], "subject": r["subject"], "detail": r["detail"]}
        for r in rows
    ]


def render(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return "no decisions recorded"
    rows = [(e["at"], e["kind"], e["subject"], _summary(e["detail"])) for e in entries]
    return table(["at", "decision", "instance", "detail"], rows)


def _summary(detail: dict[str, Any]) -> str:
    where = f"{detail.get('provider', '?')} {detail.get('remote_id', '?')}"
    why = detail.get("error") or detail.get("reason", "")
    return f"{where}: {why}" if why else where


def _rfc3339(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds")
