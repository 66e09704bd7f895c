"""Cleaning public orphans: `[reconcile] action = "clean"` with an `[aws]` table.

Only `public_without_nova` orphans are ever cleaned: a public instance still running (and
billing) for a Nova instance that no longer exists. Before terminating, the cleaner asks EC2
again and refuses unless the instance still carries the azfed tag with that Nova UUID, so a
stale or forged report can never make the receiver terminate someone else's instance.
"""

from __future__ import annotations

import structlog
from azfed.config import AzfedConfig
from azfed.errors import PermanentError
from azfed.receiver.reconcile import Cleaner, Orphan

log = structlog.get_logger(__name__)


def cloud_cleaner(config: AzfedConfig) -> Cleaner | None:
    """A cleaner for the receiver's config, or None when it has nothing to clean with."""
    if config.reconcile.action != "clean" or config.aws is None:
        return None
    from azfed.clouds.ec2 import Ec2Backend, Ec2Settings

    aws = config.aws
    settings = Ec2Settings(
        region=aws.region,
        endpoint_url=str(aws.endpoint_url) if aws.endpoint_url else None,
        connect_timeout_s=aws.connect_timeout_s,
        read_timeout_s=aws.read_timeout_s,
        max_attempts=aws.max_attempts,
    )

    async def clean(orphan: Orphan) -> None:
        if orphan.provider != "ec2":
            raise PermanentError(f"cannot clean a {orphan.provider!r} orphan: only [aws] is set")
        # cleaning is rare: a client per call costs nothing and holds no connection idle
        backend = Ec2Backend(settings)
        try:
            remote = await backend.describe(orphan.remote_id)
            if remote.instance_uuid != orphan.instance_uuid:
                raise PermanentError(
                    f"{orphan.remote_id} is tagged {remote.instance_uuid!r}, not "
                    f"{orphan.instance_uuid!r}: not terminating it"
                )
            await backend.terminate(orphan.remote_id)
            log.warning("reconcile.cleaned", **orphan.__dict__)
        finally:
            await backend.close()

    return clean
