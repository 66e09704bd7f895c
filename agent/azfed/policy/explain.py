"""What the next boot of a flavor would get, and why: for `azfed policy explain` and the
receiver's `GET /v1/placement`. Pure, like `decide`: the caller reads the load and the clock.
"""

from __future__ import annotations

import math
from typing import Any

from azfed.policy.budget import NOTHING_SPENT, PERIODS, Spend, warning
from azfed.policy.decide import Decision, Flavor, History, Request, cap_problem, decide
from azfed.policy.load import Load
from azfed.policy.model import Caps, Policy, Window


def _thresholds(load: Load, policy: Policy) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for metric, limit in policy.burst.items():
        out[metric] = {
            "value": load.local.metric(metric),
            "burst": limit,
            "return": getattr(policy.return_, metric),
        }
    return out


def _caps_used(caps: Caps, usage: Any) -> dict[str, dict[str, float | None]]:
    return {
        name: {"used": float(getattr(usage, name)), "cap": getattr(caps, name)}
        for name in ("instances", "vcpus", "ram_mb", "hourly_cost")
    }


def _cooldown_left(policy: Policy, history: History, now: float) -> float:
    wait = policy.return_after_s if history.mode == "burst" else policy.burst_after_s
    if math.isinf(history.mode_since):
        return 0.0
    return max(0.0, round(wait - (now - history.mode_since), 3))


def _schedule(policy: Policy, window: Window | None, now: float) -> dict[str, Any] | None:
    if policy.schedule is None:
        return None
    return {
        "timezone": policy.schedule.timezone,
        "local_time": policy.schedule.local(now).isoformat(),
        "window": window.name if window else None,
        "window_hours": window.describe() if window else None,
    }


def _public(load: Load, policy: Policy, history: History, now: float, flavor: Flavor) -> Any:
    out = []
    for az in policy.public_azs:
        usage = load.usage(az.name)
        out.append(
            {
                "az": az.name,
                "provider": az.provider,
                "priority": az.priority,
                "hosts": usage.hosts,
                "caps": _caps_used(az.caps, usage),
                "room_for_flavor": cap_problem(az, usage, flavor) or "yes",
                **_backing_off(policy, history, now, az.name, flavor.name),
            }
        )
    return out


def _backing_off(
    policy: Policy, history: History, now: float, az: str, flavor: str
) -> dict[str, Any]:
    """Whether `az` is backed off for `flavor` now, and the capacity failures that say so."""
    off = history.backing_off(az, flavor, now, policy.capacity_backoff)
    if off is None:
        return {"backing_off": False, "backoff": None}
    key, streak = off
    return {"backing_off": True, "backoff": {
        "flavor": key,
        "failures": streak.count,
        "last_failure_at": streak.last_at,
        "backoff_s": streak.backoff(policy.capacity_backoff),
        "left_s": round(streak.ends_at(policy.capacity_backoff) - now, 3),
        "reason": streak.reason,
    }}  # fmt: skip


def _budgets(load: Load, policy: Policy, spend: Spend) -> dict[str, Any] | None:
    b = policy.budgets
    if b == type(b)():
        return None
    total = {
        name: {
            "used": sum(float(getattr(load.usage(az.name), name)) for az in policy.public_azs),
            "cap": getattr(b.caps, name),
        }
        for name in ("instances", "vcpus", "ram_mb", "hourly_cost")
    }
    spent = {
        p: {"spent": round(spend.of(p), 6), "budget": getattr(b, p)}
        for p in PERIODS
        if getattr(b, p) is not None
    }
    return {"caps": total, "spend": spent, "warning": warning(b, spend), "timezone": b.timezone}


def explain(
    load: Load,
    policy: Policy,
    history: History,
    now: float,
    flavor: Flavor,
    *,
    project_id: str = "",
    burst_hint: str = "allowed",
    spend: Spend = NOTHING_SPENT,
) -> dict[str, Any]:
    """The local load against the thresholds, each public AZ against its caps (both as the
    schedule sets them at `now`), the budgets against the spend so far, and the decision the
    next boot of `flavor` (no AZ asked) by `project_id` with `burst_hint` would get."""
    request = Request(flavor, project_id=project_id, burst_hint=burst_hint)
    decision: Decision = decide(request, load, policy, history, now, spend)
    in_force, window = policy.in_force(now)
    local = load.local
    return {
        "policy": policy.source,
        "now": now,
        "schedule": _schedule(policy, window, now),
        "mode": history.mode,
        "cooldown_left_s": _cooldown_left(policy, history, now),
        "local": {
            "az": local.az,
            "hosts": local.hosts,
            "instances": local.instances,
            "ram_used_mb": local.ram_used_mb,
            "ram_capacity_mb": local.ram_capacity_mb,
            "memory_used_pct": local.memory_used_pct,
            "vcpus_used_pct": local.vcpus_used_pct,
            "thresholds": _thresholds(load, in_force),
        },
        "public": _public(load, in_force, history, now, flavor),
        "flavor": {"name": flavor.name, "vcpus": flavor.vcpus, "ram_mb": flavor.ram_mb},
        "request": {"project_id": project_id, "burst_hint": burst_hint},
        "budgets": _budgets(load, in_force, spend),
        "next_boot": decision.as_dict(),
    }
