"""Write what the agent saw into the Nova server's metadata, so Horizon and `openstack server
show` tell the operator where a burst VM runs and how it is. Writes only what changed.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from azfed.receiver.aio import bounded_each
from azfed.receiver.nova import NovaClient
from azfed.receiver.sinks import Batch, Dropped, SinkError

if TYPE_CHECKING:
    from azfed.config import AzfedConfig

log = structlog.get_logger(__name__)

# The keys the receiver owns in a server's metadata. Nova caps values at 255 characters.
KEYS = (
    "azfed_provider",
    "azfed_remote_id",
    "azfed_remote_state",
    "azfed_public_ip",
    "azfed_private_ip",
    "azfed_last_seen",
)


# reported states in which the instance is off while Nova may still say ACTIVE
OFF_STATES = frozenset({"stopped", "terminated"})


def desired_metadata(inst: dict[str, Any]) -> dict[str, str]:
    """The metadata one reported instance should leave on its Nova server."""
    ips = inst["ips"]
    return {
        "azfed_provider": inst["provider"],
        "azfed_remote_id": inst["remote_id"][:255],
        "azfed_remote_state": inst["state"],
        "azfed_public_ip": ",".join(ips["public"])[:255],
        "azfed_private_ip": ",".join(ips["private"])[:255],
        "azfed_last_seen": inst["observed_at"],
    }


def changed_keys(
    have: dict[str, str], want: dict[str, str], last_seen_interval_s: float
) -> dict[str, str]:
    """What must be written: every key that differs, except that last_seen alone is only
    refreshed once per interval (otherwise every report would write every server)."""
    old = have.get("azfed_last_seen")
    if old is not None and _age(old, want["azfed_last_seen"]) < 0:
        return {}  # an older observation arriving late (a replay) must not undo a newer one
    changed = {k: v for k, v in want.items() if have.get(k) != v and k != "azfed_last_seen"}
    due = changed or old is None or _age(old, want["azfed_last_seen"]) >= last_seen_interval_s
    if due and old != want["azfed_last_seen"]:
        changed["azfed_last_seen"] = want["azfed_last_seen"]
    return changed


def _age(old: str, new: str) -> float:
    try:
        return (
            datetime.fromisoformat(new.upper()) - datetime.fromisoformat(old.upper())
        ).total_seconds()
    except ValueError:  # someone hand-edited the key: overwrite it
        return float("inf")


class NovaSink:
    name = "nova"

    def __init__(
        self, client: NovaClient, *, last_seen_interval_s: float = 300.0, concurrency: int = 8
    ) -> None:
        self.client = client
        self.concurrency = concurrency
        self._interval = last_seen_interval_s

    async def start(self) -> None:
        return None

    async def check(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        return None  # the app owns the NovaClient: the reconciler and Gnocchi share it

    async def write(self, batch: Batch) -> None:
        try:
            await bounded_each(
                lambda inst: self._update(inst, batch), batch.instances, self.concurrency
            )
        except SinkError:
            raise
        except Exception as err:  # openstacksdk and keystoneauth raise many kinds: all are Nova's
            raise SinkError(f"nova: {err!r}") from err

    async def _update(self, inst: dict[str, Any], batch: Batch) -> None:
        uuid = inst["instance_uuid"].lower()
        facts = await self.client.server(uuid)
        if facts is None:
            log.warning("nova.unknown_instance", instance_uuid=uuid, remote_id=inst["remote_id"])
            return
        changed = changed_keys(facts.metadata, desired_metadata(inst), self._interval)
        if not changed:
            return
        if await self.client.set_metadata(uuid, changed):
            log.debug("nova.metadata_set", instance_uuid=uuid, keys=sorted(changed))
            if changed.get("azfed_remote_state") in OFF_STATES:
                await self._power_off_if_active(uuid, inst)
            return
        # Deleted since it was cached (`openstack server delete` of a burst VM): not a backend
        # failure. The report is accepted; the instance is skipped and counted.
        log.warning("nova.server_gone", instance_uuid=uuid, remote_id=inst["remote_id"])
        batch.dropped.append(
            Dropped("nova", uuid, 0, "server_gone", "Nova has no such server: deleted")
        )

    async def _power_off_if_active(self, uuid: str, inst: dict[str, Any]) -> None:
        """The instance stopped or was terminated outside Nova (the console, the cloud's API,
        a spot reclaim): tell Nova at once (its power-update event) rather than leave the
        server ACTIVE until the proxy host's next power-state sync. Best effort: a failure is
        logged, and the sync still comes."""
        try:
            facts = await self.client.server(uuid, fresh=True)
            if facts is None or facts.status != "ACTIVE":
                return  # Nova already says so, or its own stop is under way
            sent = await self.client.power_update(uuid, "POWER_OFF")
        except Exception:  # openstacksdk and keystoneauth raise many kinds: all are Nova's
            log.warning("nova.power_update_failed", instance_uuid=uuid, exc_info=True)
            return
        if sent:
            log.info(
                "nova.power_update_sent", instance_uuid=uuid, remote_id=inst["remote_id"],
                remote_state=inst["state"], tag="POWER_OFF",
            )  # fmt: skip


def from_config(config: AzfedConfig, nova: NovaClient) -> NovaSink:
    return NovaSink(
        nova,
        last_seen_interval_s=config.nova.last_seen_interval_s,
        concurrency=config.nova.concurrency,
    )


__all__ = ["KEYS", "NovaSink", "changed_keys", "desired_metadata", "from_config"]
