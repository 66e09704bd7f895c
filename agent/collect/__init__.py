"""Collectors: read instance state and usage from a public cloud (or the guest itself).

Pipeline: collector -> sample (this package) -> batcher -> spool -> pusher (`agent.push`).
Each provider has one module; `COLLECTORS` names them for lazy import, so the agent in an
OpenStack cloud never imports aioboto3.
"""

from __future__ import annotations

COLLECTORS = {
    "ec2": "agent.collect.ec2:Ec2Collector",
    "openstack": "agent.collect.openstack:OpenStackCollector",
    "guest": "agent.collect.guest:GuestCollector",
}
