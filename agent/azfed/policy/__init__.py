"""The placement policy: policy.json -> load -> decide -> Decision.

Pure and Nova-free, so nova-scheduler's filter, the CLI and the receiver share one engine.
Imported inside nova-scheduler: only the stdlib, jsonschema, structlog and agent.* here.
"""

from azfed.policy.decide import Decision, Flavor, History, Request, decide
from azfed.policy.explain import explain
from azfed.policy.load import Load, LocalLoad, PublicUsage, load_from_cloud, load_from_hosts
from azfed.policy.model import Policy, load_policy, parse_policy

__all__ = [
    "Decision",
    "Flavor",
    "History",
    "Load",
    "LocalLoad",
    "Policy",
    "PublicUsage",
    "Request",
    "decide",
    "explain",
    "load_from_cloud",
    "load_from_hosts",
    "load_policy",
    "parse_policy",
]
