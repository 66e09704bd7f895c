"""`azfed quota`: raise a project's Nova quotas by the public AZ's burst allowance.

Bursting adds capacity but not quota: a project at its instance, core or RAM quota cannot use
the public AZ until its quotas are raised by what it may burst. This shows the quotas and
raises them, and reports before/after. Unlimited quotas (-1) stay unlimited.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from azfed.texttable import table

# Nova's quota-set field for each resource azfed manages
RESOURCES = {"instances": "instances", "cores": "cores", "ram_mb": "ram"}


@dataclass(frozen=True)
class QuotaChange:
    resource: str
    before: int
    after: int


def plan(current: Mapping[str, int], allowance: Mapping[str, int]) -> list[QuotaChange]:
    """The new quotas: current + allowance, per resource; -1 (unlimited) is kept."""
    out = []
    for resource, field in RESOURCES.items():
        before = int(current[field])
        extra = int(allowance.get(resource, 0))
        after = before if before < 0 else before + extra
        out.append(QuotaChange(resource, before, after))
    return out


def current_quotas(conn: Any, project_id: str) -> dict[str, int]:
    qs = conn.compute.get_quota_set(project_id)
    return {field: int(getattr(qs, field)) for field in RESOURCES.values()}


def find_project(conn: Any, name_or_id: str) -> Any:
    project = conn.identity.find_project(name_or_id, ignore_missing=True)
    if project is None:
        raise LookupError(f"no project named or with id {name_or_id!r} in Keystone")
    return project


def apply(conn: Any, project_id: str, allowance: Mapping[str, int]) -> list[QuotaChange]:
    """Raise the project's quotas by `allowance` in Nova; return before/after."""
    changes = plan(current_quotas(conn, project_id), allowance)
    updates = {RESOURCES[c.resource]: c.after for c in changes if c.after != c.before}
    if updates:
        conn.compute.update_quota_set(project_id, **updates)
    after = current_quotas(conn, project_id)
    return [QuotaChange(c.resource, c.before, after[RESOURCES[c.resource]]) for c in changes]


def render(project: str, changes: list[QuotaChange]) -> str:
    rows = [(c.resource, _fmt(c.before), _fmt(c.after)) for c in changes]
    return f"project {project}\n" + table(("resource", "before", "after"), rows)


def _fmt(n: int) -> str:
    return "unlimited" if n < 0 else str(n)
