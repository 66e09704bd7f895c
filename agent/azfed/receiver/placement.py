"""GET /v1/placement: what the next boot of a flavor would get, and why.

The same explanation `azfed policy explain` prints, from the same pure `explain()`: the
receiver reads the policy file and the cloud's load (Placement, Nova) on each request, so the
answer always reflects the file and the load the scheduler's filter sees now. The filter's
mode and cooldown clocks come from its state file when the receiver can read it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from azfed.errors import AzfedError

Placement = Callable[[str], Awaitable[dict[str, Any]]]


class UnknownFlavorError(AzfedError):
    """The flavor asked about does not exist in the local cloud."""


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
