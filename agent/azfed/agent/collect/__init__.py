"""Collectors: read instance state and usage from a public cloud (or the guest itself).

Pipeline: collector -> sample (this package) -> batcher -> spool -> pusher (`azfed.agent.push`).
Each provider has one module; `COLLECTORS` names them for lazy import, so the agent in an
OpenStack cloud never imports aioboto3.
"""

from __future__ import annotations

COLLECTORS = {
    "ec2": "azfed.agent.collect.ec2:Ec2Collector",
    "openstack": "azfed.agent.collect.openstack:OpenStackCollector",
    "guest": "azfed.agent.collect.guest:GuestCollector",
}
