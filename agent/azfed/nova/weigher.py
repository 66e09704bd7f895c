"""FederationWeigher: orders the hosts the filter kept by the policy's AZ order for this boot.

With it in `[filter_scheduler] weight_classes`, FederationFilter keeps the hosts of the AZ the
policy chose and of the AZs a boot falls back to (the public AZs after it with room, then local
if the policy says so). This weigher puts the chosen AZ's hosts first and the fallbacks after,
in order, so Nova selects a host of the chosen AZ and keeps the others as alternates
(`[scheduler] max_attempts - 1` of them). When the proxy host's driver finds no capacity in
its cloud, it asks for a reschedule, and the conductor tries the next alternate: the same boot
lands in the next AZ of the policy's order. Within an AZ the other weighers order the hosts.

    [filter_scheduler]
    weight_classes = nova.scheduler.weights.all_weighers,azfed.nova.weigher.FederationWeigher
    host_subset_size = 1   # the default: a larger one may select a fallback host first

    [azfed_filter]
    weight_multiplier = 1000.0
"""

from __future__ import annotations

from typing import Any

from azfed.nova.filter import CONF, shared_engine
from azfed.policy.engine import az_weight
from azfed.policy.load import host_az
from nova.scheduler import weights


class FederationWeigher(weights.BaseHostWeigher):  # type: ignore[misc]
    """Hosts of the policy's chosen AZ first, then those of its fallback AZs, in order."""

    def weight_multiplier(self, host_state: Any) -> float:
        return float(CONF.azfed_filter.weight_multiplier)

    def _weigh_object(self, host_state: Any, weight_properties: Any) -> float:
        uuid = str(getattr(weight_properties, "instance_uuid", None) or "")
        return az_weight(shared_engine().order(uuid), host_az(host_state))
