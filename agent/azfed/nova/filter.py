"""FederationFilter: the nova-scheduler host filter that applies policy.json (its weigher,
FederationWeigher, is in azfed.nova.weigher).

Enable it in nova.conf on the scheduler:

    [filter_scheduler]
    available_filters = nova.scheduler.filters.all_filters
    available_filters = azfed.nova.filter.FederationFilter
    enabled_filters = ComputeFilter,...,FederationFilter

    [filter_scheduler]
    # with azfed's weigher, the filter also keeps the fallback AZs' hosts: a boot that fails
    # for lack of public capacity is rescheduled to the next AZ of the policy's order
    weight_classes = nova.scheduler.weights.all_weighers,azfed.nova.weigher.FederationWeigher

    [azfed_filter]
    policy_file = /etc/azfed/policy.json
    public_azs = aws-az
    state_file = /var/lib/nova/azfed-filter-state.json
    receiver_url = http://controller:8790

Everything else, down to reading Nova's RequestSpec (flavor, AZ, project, the `azfed:burst`
scheduler hint), lives in azfed.policy.engine, which is tested without Nova.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from typing import Any

from azfed.nova import logs
from azfed.nova.networks import NetworkPins, nova_neutron_client
from azfed.policy.engine import PolicyEngine, request_from_spec
from nova.scheduler import filters
from nova.scheduler import utils as scheduler_utils
from oslo_config import cfg

CONF = cfg.CONF
# azfed's events (the engine's decisions) go through Nova's logging: its file, format, request id
logs.configure()

# Registered here, not in azfed.config: only a process that loads this filter has nova.conf.
OPTS = [
    cfg.StrOpt(
        "policy_file",
        default="/etc/azfed/policy.json",
        help="policy.json; re-read when it changes, the last good one kept if it is invalid.",
    ),
    cfg.ListOpt(
        "public_azs",
        default=[],
        help="Public AZs: never used while no valid policy has been loaded.",
    ),
    cfg.StrOpt(
        "state_file",
        default=None,
        help="Where the filter keeps its mode and cooldown clocks across restarts.",
    ),
    cfg.StrOpt(
        "receiver_url",
        deprecated_name="spend_url",
        default=None,
        help="The azfed receiver's base URL (http://controller:8790): its /v1/spend gives the "
        "spend so far for the policy's spend budgets, its /v1/capacity-events the boots the "
        "proxy hosts saw fail for lack of capacity (the policy backs those AZs off). Unset, a "
        "policy with a spend budget bursts nothing, and no AZ is backed off.",
    ),
    cfg.FloatOpt(
        "weight_multiplier",
        default=1000.0,
        min=0.0,
        help="FederationWeigher's multiplier: large enough that the policy's AZ order wins "
        "over every other weigher (they order the hosts within an AZ).",
    ),
]
CONF.register_opts(OPTS, group="azfed_filter")


WEIGHER = "azfed.nova.weigher.FederationWeigher"


@functools.cache
def shared_engine() -> PolicyEngine:
    """The scheduler process's one PolicyEngine: the filter decides with it, and the weigher
    reads the order of the AZs it decided for each boot."""
    opts = CONF.azfed_filter
    return PolicyEngine(
        opts.policy_file,
        public_azs=opts.public_azs,
        state_file=opts.state_file,
        spend_url=opts.receiver_url,
        capacity_url=opts.receiver_url,
    )


def fallback_enabled(weight_classes: Iterable[str]) -> bool:
    """Whether the fallback AZs' hosts are kept: only with azfed's weigher to order them
    (without it Nova's weighers could pick a fallback host first, against the policy)."""
    return WEIGHER in weight_classes


def _is_rebuild(spec_obj: Any) -> bool:
    # a rebuild stays on its host: there is nothing to place
    return bool(scheduler_utils.request_is_rebuild(spec_obj))


class FederationFilter(filters.BaseHostFilter):  # type: ignore[misc]
    """Keep only the local AZ's hosts or only a public AZ's hosts, as the policy decides."""

    # one decision per instance, even in a multi-create request: each boot is its own decision
    run_filter_once_per_request = False
    RUN_ON_REBUILD = True

    def __init__(self) -> None:
        super().__init__()
        self.engine = shared_engine()
        self.with_fallback = fallback_enabled(CONF.filter_scheduler.weight_classes)
        self.pins = NetworkPins(nova_neutron_client)
        self.engine.log.info(
            "filter.started",
            fallback_hosts=self.with_fallback,
            why=f"{WEIGHER} is {'' if self.with_fallback else 'not '}in "
            "[filter_scheduler] weight_classes",
        )

    def filter_all(self, filter_obj_list: Iterable[Any], spec_obj: Any) -> list[Any]:
        hosts = list(filter_obj_list)
        if _is_rebuild(spec_obj):
            return hosts
        request = request_from_spec(spec_obj)
        if request.requested_az is None:
            # a network that mirrors a VPC subnet exists only in its public AZ (networks.py)
            pinned = self.pins.az_for(spec_obj)
            if pinned is not None:
                request = dataclasses.replace(request, requested_az=pinned)
        kept, _ = self.engine.filter(hosts, request, with_fallback=self.with_fallback)
        return kept
