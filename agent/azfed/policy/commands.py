"""`azfed policy check|explain|simulate`: the work behind the CLI's thin click commands.

Each returns the text to print and an exit code; the CLI prints and exits. Only `explain`
opens a connection (openstacksdk: clouds.yaml by name, or the OS_* variables).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from azfed.errors import PolicyError, Problem
from azfed.policy.budget import NOTHING_SPENT
from azfed.policy.decide import Flavor, History
from azfed.policy.explain import explain
from azfed.policy.load import load_from_cloud
from azfed.policy.model import Policy, load_policy
from azfed.texttable import cell, table

# --- check ----------------------------------------------------------------------------------


def check(file: Path) -> Policy:
    """Load and validate; raises PolicyError listing every problem."""
    return load_policy(file)


def check_summary(policy: Policy) -> dict[str, Any]:
    return {
        "source": policy.source,
        "valid": True,
        "local_az": policy.local_az,
        "public_azs": [a.name for a in policy.public_azs],
        "warnings": [{"key": w.key, "value": w.value, "reason": w.reason} for w in policy.warnings],
    }


# --- explain --------------------------------------------------------------------------------


def read_history(state_file: Path | None) -> History:
    """The filter's remembered mode, from its state file; a fresh history without one.

    A state file that does not exist yet is the filter's own fresh start (it writes the file
    at its first decision), as the filter itself reads it."""
    if state_file is None or not state_file.exists():
        return History()
    try:
        data = json.loads(state_file.read_text("utf-8"))
        return History.from_dict(data["history"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise PolicyError(
            str(state_file),
            [Problem("<file>", str(state_file), f"unreadable filter state: {err}")],
        ) from None


def flavor_of(conn: Any, name: str) -> Flavor:
    found = conn.compute.find_flavor(name, ignore_missing=True)
    if found is None:
        raise PolicyError("--flavor", [Problem("--flavor", name, "no such flavor in Nova")])
    return Flavor(found.name, int(found.vcpus), int(found.ram))


def explain_cloud(
    policy: Policy,
    conn: Any,
    flavor: str,
    state_file: Path | None,
    now: float | None = None,
    *,
    project_id: str = "",
    burst_hint: str = "allowed",
) -> dict[str, Any]:
    """Read the cloud and the filter's state, and explain the next boot of `flavor` by
    `project_id` with the `azfed:burst` hint `burst_hint`. The spend so far is counted from
    Nova's records, as the receiver counts it, when the policy has a spend budget."""
    from azfed.receiver.spend import spend_from_cloud

    at = time.time() if now is None else now
    history = read_history(state_file)
    load = load_from_cloud(conn, policy)
    spend = spend_from_cloud(conn, policy, at) if policy.budgets.spend_limited else NOTHING_SPENT
    return explain(
        load,
        policy,
        history,
        at,
        flavor_of(conn, flavor),
        project_id=project_id,
        burst_hint=burst_hint,
        spend=spend,
    )


def render_explain(doc: dict[str, Any]) -> str:
    local, nxt = doc["local"], doc["next_boot"]
    out = [
        f"policy {doc['policy']}: mode {doc['mode']}, cooldown left {doc['cooldown_left_s']:g}s",
        *_schedule_line(doc["schedule"]),
        "",
        f"local AZ {local['az']}: {local['hosts']} host(s), {local['instances']} instance(s)",
        table(
            ["metric", "value", "burst at", "return at"],
            [[m, t["value"], t["burst"], t["return"]] for m, t in local["thresholds"].items()],
        ),
        "",
        table(
            ["public AZ", "prio", "hosts", "instances", "vcpus", "ram_mb", "cost/h", "room"],
            [_public_row(p) for p in doc["public"]],
        ),
        "",
        *_budget_lines(doc["budgets"]),
        f"next boot of {doc['flavor']['name']}{_asker(doc['request'])}: "
        f"{nxt['az'] or 'REFUSED'} (rule {nxt['rule']}: {nxt['reason']})",
    ]
    out += [f"  skipped {s['az']}: {s['why']}" for s in nxt["skipped"]]
    return "\n".join(out)


def _asker(request: dict[str, Any]) -> str:
    parts = [f"project {request['project_id']}"] if request["project_id"] else []
    if request["burst_hint"] != "allowed":
        parts.append(f"hint azfed:burst={request['burst_hint']}")
    return f" ({', '.join(parts)})" if parts else ""


def _budget_lines(budgets: dict[str, Any] | None) -> list[str]:
    if budgets is None:
        return []
    caps = ", ".join(
        f"{name} {cell(c['used'])}/{cell(c['cap'])}"
        for name, c in budgets["caps"].items()
        if c["cap"] is not None
    )
    spend = ", ".join(
        f"{p} {s['spent']:.2f} of {s['budget']:g} spent"
        + (" (WARNING)" * (p in budgets["warning"]))
        for p, s in budgets["spend"].items()
    )
    used = "; ".join(filter(None, [caps, spend]))
    return [f"budgets (all public AZs; {budgets['timezone']}): {used}", ""]


def _schedule_line(schedule: dict[str, Any] | None) -> list[str]:
    if schedule is None:
        return []
    at = f"{schedule['local_time']} in {schedule['timezone']}"
    if schedule["window"] is None:
        return [f"schedule: no window at {at}: the top-level thresholds and caps apply"]
    return [f"schedule: window {schedule['window']} ({schedule['window_hours']}) at {at}"]


def _backoff_cell(backoff: dict[str, Any]) -> str:
    return (
        f"backing off {backoff['left_s']:.0f}s more ({backoff['failures']} capacity "
        f"failure(s) in a row, of {backoff['flavor']})"
    )


def _public_row(p: dict[str, Any]) -> list[object]:
    caps = p["caps"]

    def used(name: str) -> str:
        c = caps[name]
        return f"{cell(c['used'])}/{cell(c['cap'])}"

    room = _backoff_cell(p["backoff"]) if p["backing_off"] else p["room_for_flavor"]
    names = ("instances", "vcpus", "ram_mb", "hourly_cost")
    return [p["az"], p["priority"], p["hosts"], *map(used, names), room]
