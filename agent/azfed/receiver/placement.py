"""GET /v1/placement: what the next boot of a flavor would get, and why; GET /v1/decisions: what
the scheduler's filter decided last.

The same explanation `azfed policy explain` prints, from the same pure `explain()`: the
receiver reads the policy file and the cloud's load (Placement, Nova) on each request, so the
answer always reflects the file and the load the scheduler's filter sees now. The filter's
mode and cooldown clocks come from its state file when the receiver can read it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from azfed.errors import AzfedError

Placement = Callable[[str], Awaitable[dict[str, Any]]]


class UnknownFlavorError(AzfedError):
    """The flavor asked about does not exist in the local cloud."""


class StateUnreadable(AzfedError):
    """The filter's state file cannot be read as the filter writes it."""


def recent_decisions(state_file: Path, limit: int) -> list[dict[str, Any]]:
    """The filter's last `limit` decisions, newest first, from its state file ([azfed_filter]
    state_file, shared with the receiver as [receiver] policy_state_file); none before the
    filter's first decision."""
    try:
        state = json.loads(state_file.read_text("utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as err:
        raise StateUnreadable(f"the filter's state file {state_file}: {err}") from err
    recent = state.get("recent") if isinstance(state, dict) else None
    if not isinstance(recent, list):
        raise StateUnreadable(f"the filter's state file {state_file} has no list of decisions")
    return [d for d in reversed(recent) if isinstance(d, dict)][:limit]


def policy_placement(
    policy_file: Path,
    state_file: Path | None,
    connect: Callable[[], Any],
    concurrency: int = 2,
) -> Placement:
    """A Placement answering from `policy_file` and the cloud `connect()` reaches."""
    from azfed.policy.commands import explain_cloud
    from azfed.policy.model import load_policy

    # openstacksdk blocks: its calls run in threads, a few at a time
    gate = asyncio.Semaphore(concurrency)

    def explain_now(flavor: str) -> dict[str, Any]:
        policy = load_policy(policy_file)  # raises PolicyError naming the bad key
        conn = connect()
        try:
            if conn.compute.find_flavor(flavor) is None:
                raise UnknownFlavorError(f"no flavor named {flavor!r} in the local cloud")
            return explain_cloud(policy, conn, flavor, state_file)
        finally:
            conn.close()

    async def placement(flavor: str) -> dict[str, Any]:
        async with gate:
            return await asyncio.to_thread(explain_now, flavor)

    return placement
