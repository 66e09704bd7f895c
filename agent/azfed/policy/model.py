"""policy.json: validated against the shipped JSON Schema, then turned into frozen objects.

The schema (policy.schema.json, package data) catches shapes and ranges; `_semantic_problems`
catches what a schema cannot say well: a return threshold must sit strictly below its burst
threshold (or hysteresis is gone), names must be unique, the local AZ cannot also be public, and
an hourly cost cap needs a price table. Every problem names the JSON path, the value and the rule.

This module runs inside nova-scheduler: it may import only the stdlib, jsonschema and agent.*.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import jsonschema
from azfed.errors import PolicyError, Problem

METRICS = ("memory_used_pct", "vcpus_used_pct", "instances")

ExplicitAz = Literal["honour", "apply-policy"]
WhenUnavailable = Literal["local", "reject"]


@dataclass(frozen=True)
class Thresholds:
    """Limits on the local AZ's load; a metric left out (None) is never compared."""

    memory_used_pct: float | None = None
    vcpus_used_pct: float | None = None
    instances: int | None = None

    def items(self) -> Iterator[tuple[str, float]]:
        """The metrics this policy sets, with their limits."""
        for name in METRICS:
            value = getattr(self, name)
            if value is not None:
                yield name, float(value)


@dataclass(frozen=True)
class Caps:
    """Hard caps on one public AZ; None means no cap on that resource."""

    instances: int | None = None
    vcpus: int | None = None
    ram_mb: int | None = None
    hourly_cost: float | None = None


@dataclass(frozen=True)
class PublicAz:
    """One public AZ the policy may burst into."""

    name: str
    provider: Literal["ec2", "openstack"]
    priority: int = 100
    caps: Caps = Caps()
    prices: Mapping[str, float] = field(default_factory=dict)

    def price(self, flavor: str) -> float | None:
        return self.prices.get(flavor)

    @property
    def max_price(self) -> float:
        """The price charged for an instance whose flavor we do not know: never under-count."""
        return max(self.prices.values(), default=0.0)


@dataclass(frozen=True)
class Policy:
    """A whole, valid policy.json. Public AZs are kept in fallback order (priority, then name)."""

    local_az: str
    public_azs: tuple[PublicAz, ...]
    burst: Thresholds
    return_: Thresholds
    return_after_s: float = 0.0
    burst_after_s: float = 0.0
    allow: tuple[str, ...] = ("*",)
    deny: tuple[str, ...] = ()
    explicit_az: ExplicitAz = "honour"
    capacity_failure_backoff_s: float = 300.0
    when_public_unavailable: WhenUnavailable = "local"
    source: str = "<memory>"

    def public(self, name: str) -> PublicAz | None:
        return next((az for az in self.public_azs if az.name == name), None)

    def flavor_may_burst(self, flavor: str) -> tuple[bool, str]:
        """(may it burst, the rule that said so): deny wins over allow."""
        for pattern in self.deny:
            if fnmatchcase(flavor, pattern):
                return False, f"flavor {flavor!r} matches deny pattern {pattern!r}"
        for pattern in self.allow:
            if fnmatchcase(flavor, pattern):
                return True, f"flavor {flavor!r} matches allow pattern {pattern!r}"
        return False, f"flavor {flavor!r} matches no allow pattern {list(self.allow)!r}"


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema shipped with the package."""
    text = resources.files("azfed.policy").joinpath("policy.schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def _validator() -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema())
    cls.check_schema(schema())
    validator: jsonschema.protocols.Validator = cls(schema())
    return validator


def _schema_problems(data: Any) -> list[Problem]:
    errors = sorted(_validator().iter_errors(data), key=lambda e: list(map(str, e.path)))
    return [Problem(e.json_path, e.instance, f"{e.validator}: {e.message}") for e in errors]


def _semantic_problems(data: dict[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    burst, ret = data["burst"], data["return"]
    for name in METRICS:
        if name in ret and name not in burst:
            out.append(Problem(f"$.return.{name}", ret[name], "no burst threshold to return from"))
        elif name in burst and name not in ret:
            out.append(
                Problem(f"$.return.{name}", None, f"required: burst.{name} is set (hysteresis)")
            )
        elif name in burst and ret[name] >= burst[name]:
            reason = f"must be below burst.{name} = {burst[name]} (hysteresis)"
            out.append(Problem(f"$.return.{name}", ret[name], reason))
    names = [az["name"] for az in data["public_azs"]]
    for i, az in enumerate(data["public_azs"]):
        path = f"$.public_azs[{i}]"
        if names.count(az["name"]) > 1:
            out.append(Problem(f"{path}.name", az["name"], "public AZ names must be unique"))
        if az["name"] == data["local_az"]:
            out.append(Problem(f"{path}.name", az["name"], "is also the local_az"))
        cost_cap = az.get("caps", {}).get("hourly_cost")
        if cost_cap is not None and not az.get("prices"):
            out.append(Problem(f"{path}.prices", None, "required when caps.hourly_cost is set"))
    return out


def _thresholds(raw: Mapping[str, Any]) -> Thresholds:
    return Thresholds(**{k: v for k, v in raw.items() if k in METRICS})


def _public_az(raw: Mapping[str, Any]) -> PublicAz:
    caps = {k: v for k, v in raw.get("caps", {}).items() if k != "$comment"}
    return PublicAz(
        name=raw["name"],
        provider=raw["provider"],
        priority=raw.get("priority", 100),
        caps=Caps(**caps),
        prices=dict(raw.get("prices", {})),
    )


def _build(data: dict[str, Any], source: str) -> Policy:
    azs = sorted((_public_az(a) for a in data["public_azs"]), key=lambda a: (a.priority, a.name))
    cooldown, flavors = data.get("cooldown", {}), data.get("flavors", {})
    fallback = data.get("fallback", {})
    return Policy(
        local_az=data["local_az"],
        public_azs=tuple(azs),
        burst=_thresholds(data["burst"]),
        return_=_thresholds(data["return"]),
        return_after_s=cooldown.get("return_after_s", 0.0),
        burst_after_s=cooldown.get("burst_after_s", 0.0),
        allow=tuple(flavors.get("allow", ["*"])),
        deny=tuple(flavors.get("deny", [])),
        explicit_az=data.get("explicit_az", "honour"),
        capacity_failure_backoff_s=fallback.get("capacity_failure_backoff_s", 300.0),
        when_public_unavailable=fallback.get("when_public_unavailable", "local"),
        source=source,
    )


def parse_policy(data: object, source: str = "<memory>") -> Policy:
    """Validate an already parsed policy document; raise PolicyError listing every problem."""
    problems = _schema_problems(data)
    if problems:
        raise PolicyError(source, problems)
    assert isinstance(data, dict)  # the schema says so: "type": "object"
    problems = _semantic_problems(data)
    if problems:
        raise PolicyError(source, problems)
    return _build(data, source)


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy.json file."""
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise PolicyError(str(p), [Problem("<file>", str(p), str(err))]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        where = f"line {err.lineno} column {err.colno}"
        raise PolicyError(
            str(p), [Problem("<file>", where, f"not valid JSON: {err.msg}")]
        ) from None
    return parse_policy(data, str(p))
