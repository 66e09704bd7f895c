"""GET /v1/spend: what burst instances cost so far this day and this month, against the
policy's spend budgets, for the scheduler's filter and for Prometheus.

The lifetimes are Nova's own records of the public AZs' servers: `launched_at` and
`terminated_at` (set by nova-compute when the proxy host's driver spawned and destroyed the
VM), the flavor and the AZ, for the servers alive now and those deleted since the month began
(an admin may list deleted servers). The prices are the policy's; the sum is
`azfed.policy.budget.spend_at`, the same the simulator's accrual is tested against.

Nova keeps a deleted server's row until `nova-manage db archive_deleted_rows` moves it away:
archive no more often than monthly (or with `--before` the month's start), or the month's
spend forgets what it archived.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from azfed.errors import CloudError
from azfed.policy.budget import PERIODS, Lifetime, Spend, period_bounds, spend_at, warning
from azfed.policy.model import Policy

SpendAnswer = Callable[[], Awaitable[dict[str, Any]]]


def _unix(text: str | None) -> float | None:
    if not text:
        return None
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    # Nova's OS-SRV-USG times carry no offset: they are UTC
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def lifetimes(servers: Iterable[Any], public_azs: set[str]) -> list[Lifetime]:
    """The lives of the servers (openstacksdk Servers) that ran in a public AZ. A server
    never launched (failed, or still building) cost nothing."""
    out = []
    for s in servers:
        start = _unix(s.launched_at)
        if s.availability_zone not in public_azs or start is None:
            continue
        flavor = s.flavor or {}
        name = str(flavor.get("original_name") or flavor.get("name") or "")
        out.append(Lifetime(s.availability_zone, name, start, _unix(s.terminated_at)))
    return out


def server_queries(month_start: float) -> list[dict[str, Any]]:
    """openstacksdk's `compute.servers()` arguments: every project's servers alive now, and
    those deleted since the month began (Nova's ?deleted=true&changes-since=, admin only)."""
    since = datetime.fromtimestamp(month_start, timezone.utc).isoformat()
    return [
        {"details": True, "all_projects": True},
        {"details": True, "all_projects": True, "deleted_only": True, "changes_since": since},
    ]


def spend_from_cloud(conn: Any, policy: Policy, now: float) -> Spend:
    """The spend so far (day and month of `now`) from Nova's records, through an admin
    openstacksdk connection (blocking)."""
    month_start = period_bounds(now, policy.budgets.zone)["month"][0]
    servers = [s for q in server_queries(month_start) for s in conn.compute.servers(**q)]
    azs = {az.name for az in policy.public_azs}
    return spend_at(lifetimes(servers, azs), policy, now)


def spend_doc(policy: Policy, spend: Spend, now: float) -> dict[str, Any]:
    """The answer of GET /v1/spend: spend, budget and what is left per period."""
    b = policy.budgets
    periods = {}
    for period in PERIODS:
        limit = getattr(b, period)
        spent = spend.of(period)
        periods[period] = {
            "spent": round(spent, 6),
            "budget": limit,
            "left": None if limit is None else round(limit - spent, 6),
            "since": period_bounds(now, b.zone)[period][0],
        }
    return {
        "at": now,
        "timezone": b.timezone,
        "warn_at_pct": b.warn_at_pct,
        "warning": warning(b, spend),
        **periods,
    }


def policy_spend(
    policy_file: Path,
    connect: Callable[[], Any],
    clock: Callable[[], float],
    concurrency: int = 1,
) -> SpendAnswer:
    """A SpendAnswer from `policy_file` and the cloud `connect()` reaches."""
    from azfed.policy.model import load_policy

    # openstacksdk blocks: its calls run in threads, one at a time (a full listing each)
    gate = asyncio.Semaphore(concurrency)

    def now_doc() -> dict[str, Any]:
        # imported here, as openstacksdk is everywhere in the receiver: only when Nova is asked
        from keystoneauth1.exceptions import ClientException
        from openstack.exceptions import SDKException

        policy = load_policy(policy_file)  # raises PolicyError naming the bad key
        try:
            conn = connect()
            try:
                now = clock()
                return spend_doc(policy, spend_from_cloud(conn, policy, now), now)
            finally:
                conn.close()
        except (SDKException, ClientException) as err:
            # Nova's or Keystone's failure, not the caller's: a 503, which the filter treats
            # as unreadable (it keeps its last answer), never a 500
            raise CloudError(f"Nova did not answer the spend's server listing: {err}") from err

    async def answer() -> dict[str, Any]:
        async with gate:
            return await asyncio.to_thread(now_doc)

    return answer
