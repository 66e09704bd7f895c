"""`azfed status`, the receiver's part: agents' freshness, burst instances by state, orphans,
and the resources whose samples a backend refused (the rest of their reports was written). Read
straight from the store, so it works while the receiver is down."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from azfed.config import AzfedConfig
from azfed.receiver.store import Store


async def collect(config: AzfedConfig, now: float | None = None) -> dict[str, Any]:
    """The status from the receiver's database, opened for this (`azfed status`)."""
    config.require("receiver")
    assert config.receiver is not None
    store = Store(config.receiver.database_url)
    await store.open()
    try:
        return await from_store(store, time.time() if now is None else now)
    finally:
        await store.close()


async def from_store(store: Store, now: float) -> dict[str, Any]:
    """The status from an open store (`azfed status`, and the receiver's GET /v1/status)."""
    agents = await store.agents()
    instances = await store.all_instances()
    orphans = await store.orphans()
    dropped = await store.dropped()
    return {
        "agents": [
            {
                "agent_id": a["agent_id"],
                "last_seq": a["last_seq"],
                "last_report_age_s": round(now - a["last_report_at"], 1),
            }
            for a in agents
        ],
        "instances": dict(Counter(i["state"] for i in instances)),
        "orphans": [
            {
                "kind": o["kind"],
                "instance_uuid": o["subject"],
                "reason": o["detail"].get("reason", ""),
            }
            for o in orphans
        ],
        "dropped": [
            {
                "sink": d["sink"],
                "resource_id": d["resource_id"],
                "reason": d["reason"],
                "samples": d["samples"],
                "last_dropped_age_s": round(now - d["last_seen"], 1),
                "detail": d["detail"],
            }
            for d in dropped
        ],
    }


def render(status: dict[str, Any]) -> str:
    lines = ["agents:"]
    lines += [
        f"  {a['agent_id']}: seq {a['last_seq']}, last report {a['last_report_age_s']}s ago"
        for a in status["agents"]
    ] or ["  (none has reported)"]
    lines.append(
        "burst instances: "
        + (", ".join(f"{k} {v}" for k, v in sorted(status["instances"].items())) or "none")
    )
    lines.append(f"orphans: {len(status['orphans'])}")
    lines += [f"  {o['kind']} {o['instance_uuid']}: {o['reason']}" for o in status["orphans"]]
    lines.append(f"resources with refused samples: {len(status['dropped'])}")
    lines += [
        f"  {d['sink']} {d['resource_id']}: {d['samples']} samples dropped ({d['reason']}), "
        f"last {d['last_dropped_age_s']}s ago: {d['detail']}"
        for d in status["dropped"]
    ]
    return "\n".join(lines)
