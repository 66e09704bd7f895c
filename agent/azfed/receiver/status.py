"""`azfed status`, the receiver's part: agents' freshness, burst instances by state, orphans.
Read straight from the store, so it works while the receiver is down."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from azfed.config import AzfedConfig
from azfed.receiver.store import Store


async def collect(config: AzfedConfig, now: float | None = None) -> dict[str, Any]:
    config.require("receiver")
    assert config.receiver is not None
    now = time.time() if now is None else now
    store = Store(config.receiver.database_url)
    await store.open()
    try:
        agents = await store.agents()
        instances = await store.all_instances()
        orphans = await store.orphans()
    finally:
        await store.close()
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
    return "\n".join(lines)
