"""The placement decision: pure, synchronous, deterministic. No I/O, no clock: `now` is passed.

    decide(request, load, policy, history, now) -> Decision

The policy has two modes. In `local` mode boots stay local until a burst threshold is reached
(any one: memory used %, vCPUs used %, instance count), then the mode turns to `burst`. In
`burst` mode boots go public until every metric is back at or below its return threshold,
which sits below the burst one (hysteresis), and the return cooldown has passed. A full local
AZ bursts whatever the thresholds say; a flavor or a project the policy will not burst, or a
server whose `azfed:burst` hint says never, stays local whatever they say, and a hint that says
prefer goes public when an AZ has room even at low load (never past a cap). Public AZs are
tried in priority order, skipping those at a hard cap or within the back-off after a capacity
failure, and all of them once a cap on the public AZs together or a spend budget would be
passed (`budget`); when none is left, the policy falls back to local or refuses. The spend so
far is an input, like the load: `decide` never reads it.
A schedule swaps the thresholds and caps by time of day: `now` picks the window in force.

Every Decision names the rule that fired and carries the numbers it compared, so the scheduler's
log line and `azfed policy explain` can say why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from azfed.policy import budget
from azfed.policy.budget import NOTHING_SPENT, Room, Spend
from azfed.policy.load import Load, PublicUsage
from azfed.policy.model import Backoff, Caps, Policy, PublicAz

Mode = Literal["local", "burst"]

# Every rule decide can fire. Tests iterate over this to show each one is reachable.
RULES = (
    "below_burst_threshold",  # local mode, every metric under its burst threshold -> local
    "burst_threshold_exceeded",  # local mode, a metric reached its burst threshold -> public
    "burst_cooldown",  # threshold reached, but too soon after returning -> local
    "above_return_threshold",  # burst mode, a metric still above its return threshold -> public
    "return_cooldown",  # burst mode, load is low but too soon after bursting -> public
    "below_return_threshold",  # burst mode, load low and cooldown over -> local
    "local_full",  # no local host can take the request -> public
    "flavor_denied",  # the flavor may not burst -> local
    "project_denied",  # the project may not burst -> local
    "burst_hint_never",  # the server's scheduler hint says never burst -> local
    "burst_hint_prefer",  # the hint prefers public, and the policy has room -> public
    "burst_hint_invalid",  # the hint's value is not one of BURST_HINTS -> no host
    "public_unavailable_local",  # every public AZ capped or backing off -> local fallback
    "public_unavailable_reject",  # ... and the policy says refuse -> no host
    "budget_exhausted",  # a spend budget is used up: nothing bursts -> local, or no host
    "explicit_az_honoured",  # the user asked for an AZ; policy honours it
    "explicit_az_refused",  # the user asked for a public AZ the policy cannot give
    "explicit_az_against_policy",  # apply-policy: the asked AZ is not the policy's -> no host
    "explicit_az_unknown",  # the asked AZ is not in the policy: not ours to judge
)


# The per-server choice a user makes at boot: `openstack server create --hint azfed:burst=never`.
# Within what the policy allows: `prefer` never passes a cap, a deny list or a back-off.
HINT = "azfed:burst"
BURST_HINTS = ("never", "allowed", "prefer")
# The Placement trait of the public AZ's proxy hosts. An image that requires it (a snapshot of a
# burst instance: an AMI with a placeholder in Glance) can only boot there, so Placement never
# offers a local host for it, and the scheduler filter takes it as the `prefer` hint.
BURST_TRAIT = "CUSTOM_AZFED_BURST"


@dataclass(frozen=True)
class Flavor:
    """What a boot asks for."""

    name: str
    vcpus: int = 1
    ram_mb: int = 512


@dataclass(frozen=True)
class Request:
    """One boot to place."""

    flavor: Flavor
    requested_az: str | None = None
    instance_uuid: str = ""
    project_id: str = ""
    burst_hint: str = "allowed"  # as the user wrote it: decide refuses a value not in BURST_HINTS


# A failure recorded for this flavor backs the AZ off for every flavor (a state file written
# before failures were kept per flavor holds only AZs).
ANY_FLAVOR = "*"


@dataclass(frozen=True)
class Streak:
    """Consecutive capacity failures of one public AZ for one flavor: how many, the last when."""

    count: int
    last_at: float
    reason: str = ""

    def backoff(self, backoff: Backoff) -> float:
        return backoff.after(self.count)

    def ends_at(self, backoff: Backoff) -> float:
        return self.last_at + backoff.after(self.count)

    def forgotten(self, now: float, backoff: Backoff) -> bool:
        """A streak ends once `max_s` more has passed after its back-off without a failure."""
        return now >= self.ends_at(backoff) + backoff.max_s


@dataclass(frozen=True)
class History:
    """What the policy remembers between decisions: its mode, since when, and the public AZs'
    capacity failures, per (AZ, flavor)."""

    mode: Mode = "local"
    mode_since: float = -math.inf
    failures: Mapping[tuple[str, str], Streak] = field(default_factory=dict)

    def after(self, decision: Decision, now: float) -> History:
        """The history once `decision` is taken at `now`."""
        if decision.mode == self.mode:
            return self
        return replace(self, mode=decision.mode, mode_since=now)

    def with_failure(
        self, az: str, flavor: str, now: float, backoff: Backoff, reason: str = ""
    ) -> History:
        """A boot of `flavor` failed in public AZ `az` at `now` for lack of capacity (or a limit,
        or throttling). The first failure backs the AZ off for `backoff.initial_s`; one after
        that back-off ended doubles it (up to `max_s`); one during it (a boot already on its
        way) leaves it as it is; a streak forgotten (see Streak.forgotten) starts again."""
        key = (az, flavor)
        prev = self.failures.get(key)
        if prev is None or prev.forgotten(now, backoff):
            streak = Streak(1, now, reason)
        elif now < prev.ends_at(backoff):
            streak = replace(prev, reason=reason or prev.reason)
        else:
            streak = Streak(prev.count + 1, now, reason)
        kept = {k: v for k, v in self.failures.items() if not v.forgotten(now, backoff)}
        return replace(self, failures={**kept, key: streak})

    def with_success(self, az: str, flavor: str) -> History:
        """A boot of `flavor` launched in `az`: its failure streak there is over."""
        if (az, flavor) not in self.failures:
            return self
        return replace(self, failures={k: v for k, v in self.failures.items() if k != (az, flavor)})

    def backing_off(
        self, az: str, flavor: str, now: float, backoff: Backoff
    ) -> tuple[str, Streak] | None:
        """The (flavor key, streak) that keeps `az` backed off for `flavor` at `now`, if any."""
        for key in (flavor, ANY_FLAVOR):
            streak = self.failures.get((az, key))
            # not `last_at <= now`: the driver's clock may run a little ahead of the scheduler's
            if streak is not None and now < streak.ends_at(backoff):
                return key, streak
        return None

    def as_dict(self) -> dict[str, Any]:
        since = None if math.isinf(self.mode_since) else self.mode_since
        failures = [
            {"az": az, "flavor": fl, "count": s.count, "last_at": s.last_at, "reason": s.reason}
            for (az, fl), s in self.failures.items()
        ]
        return {"mode": self.mode, "mode_since": since, "failures": failures}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        since = data.get("mode_since")
        return cls(
            mode="burst" if data.get("mode") == "burst" else "local",
            mode_since=-math.inf if since is None else float(since),
            failures=_failures(data.get("failures")),
        )


def _failures(raw: Any) -> dict[tuple[str, str], Streak]:
    if isinstance(raw, dict):  # the state file's old form: {az: last failure}, any flavor
        return {(str(az), ANY_FLAVOR): Streak(1, float(at)) for az, at in raw.items()}
    return {
        (str(f["az"]), str(f["flavor"])): Streak(
            int(f["count"]), float(f["last_at"]), str(f.get("reason", ""))
        )
        for f in raw or ()
    }


@dataclass(frozen=True)
class Decision:
    """Where a boot goes (`az` None: nowhere, refuse it), the rule that fired, and why."""

    az: str | None
    rule: str
    reason: str
    mode: Mode
    burst: bool = False
    compared: Mapping[str, Any] = field(default_factory=dict)
    skipped: tuple[tuple[str, str], ...] = ()
    # where a boot that fails in `az` for lack of capacity goes next, in order (the policy's
    # fallback: the public AZs after it with room, then local if the policy falls back there)
    fallback: tuple[str, ...] = ()
    window: str | None = None  # the schedule window whose thresholds and caps applied

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["compared"] = dict(self.compared)
        out["skipped"] = [{"az": az, "why": why} for az, why in self.skipped]
        out["fallback"] = list(self.fallback)
        return out


# --- the local question: stay or burst --------------------------------------------------------


@dataclass(frozen=True)
class _Verdict:
    public: bool
    rule: str
    reason: str
    compared: Mapping[str, Any]


def _metrics(load: Load, limits: Any) -> dict[str, dict[str, float]]:
    return {m: {"value": load.local.metric(m), "limit": lim} for m, lim in limits.items()}


def _local_mode(load: Load, policy: Policy, history: History, now: float) -> _Verdict:
    compared = _metrics(load, policy.burst)
    hit = [
        f"{m} {c['value']:g} >= {c['limit']:g}"
        for m, c in compared.items()
        if c["value"] >= c["limit"]
    ]
    if not hit:
        return _Verdict(
            False, "below_burst_threshold", "every metric below its burst threshold", compared
        )
    waited = now - history.mode_since
    if waited < policy.burst_after_s:
        compared = {
            **compared,
            "cooldown_s": {"value": round(waited, 3), "limit": policy.burst_after_s},
        }
        why = f"{'; '.join(hit)}, but returned only {waited:.0f}s ago (< {policy.burst_after_s:g}s)"
        return _Verdict(False, "burst_cooldown", why, compared)
    return _Verdict(True, "burst_threshold_exceeded", "; ".join(hit), compared)


def _burst_mode(load: Load, policy: Policy, history: History, now: float) -> _Verdict:
    compared = _metrics(load, policy.return_)
    above = [
        f"{m} {c['value']:g} > {c['limit']:g}"
        for m, c in compared.items()
        if c["value"] > c["limit"]
    ]
    if above:
        return _Verdict(True, "above_return_threshold", "; ".join(above), compared)
    waited = now - history.mode_since
    if waited < policy.return_after_s:
        compared = {
            **compared,
            "cooldown_s": {"value": round(waited, 3), "limit": policy.return_after_s},
        }
        why = f"load is back under the return thresholds, but burst began {waited:.0f}s ago"
        return _Verdict(True, "return_cooldown", f"{why} (< {policy.return_after_s:g}s)", compared)
    return _Verdict(
        False, "below_return_threshold", "every metric at or below its return threshold", compared
    )


def _verdict(
    request: Request, load: Load, policy: Policy, history: History, now: float
) -> _Verdict:
    fl = request.flavor
    if not load.local.fits(fl.ram_mb, fl.vcpus):
        compared = {
            "free_ram_mb": {"value": load.local.largest_free_ram_mb, "limit": fl.ram_mb},
            "free_vcpus": {"value": load.local.largest_free_vcpus, "limit": fl.vcpus},
            "hosts": {"value": load.local.hosts, "limit": 1},
        }
        return _Verdict(True, "local_full", f"no local host has room for {fl.name}", compared)
    if history.mode == "local":
        return _local_mode(load, policy, history, now)
    return _burst_mode(load, policy, history, now)


# --- the public question: which AZ, within its caps -------------------------------------------


def cap_problem(az: PublicAz, usage: PublicUsage, flavor: Flavor) -> str | None:
    """Why one more `flavor` would break a hard cap of `az`, or None if it fits."""
    return _caps_problem("cap", az.caps, usage, flavor, az.price(flavor.name))


def _caps_problem(
    label: str, caps: Caps, usage: PublicUsage, flavor: Flavor, price: float | None
) -> str | None:
    checks = (
        ("instances", caps.instances, usage.instances + 1),
        ("vcpus", caps.vcpus, usage.vcpus + flavor.vcpus),
        ("ram_mb", caps.ram_mb, usage.ram_mb + flavor.ram_mb),
    )
    for name, cap, after in checks:
        if cap is not None and after > cap:
            return f"{label} {name}: {after:g} would exceed {cap:g}"
    if caps.hourly_cost is None:
        return None
    if price is None:
        return f"{label} hourly_cost: no price for flavor {flavor.name!r}"
    cost = usage.hourly_cost + price
    if cost > caps.hourly_cost + 1e-9:
        return f"{label} hourly_cost: {cost:.4f} would exceed {caps.hourly_cost:g}"
    return None


def _public_total(load: Load, policy: Policy) -> PublicUsage:
    """What every public AZ of the policy carries, together."""
    usages = [load.usage(az.name) for az in policy.public_azs]
    return PublicUsage(
        az="*",
        hosts=sum(u.hosts for u in usages),
        instances=sum(u.instances for u in usages),
        vcpus=sum(u.vcpus for u in usages),
        ram_mb=sum(u.ram_mb for u in usages),
        hourly_cost=sum(u.hourly_cost for u in usages),
    )


def _room(load: Load, policy: Policy, spend: Spend, now: float) -> Room:
    if not policy.budgets.spend_limited:
        return Room()
    return budget.room(policy.budgets, spend, _public_total(load, policy).hourly_cost, now)


def budget_problem(
    az: PublicAz, load: Load, policy: Policy, flavor: Flavor, room: Room
) -> str | None:
    """Why one more `flavor` in `az` would pass a budget of all public AZs, or None."""
    if room.exhausted:
        return room.exhausted
    price = budget.price(az, flavor.name)
    total = _caps_problem(
        "budget cap", policy.budgets.caps, _public_total(load, policy), flavor, price
    )
    if total:
        return total
    if price > room.hourly + 1e-9:
        return (
            f"budget spend: {price:g}/h more would pass a spend budget (room {room.hourly:.4g}/h)"
        )
    return None


def _unavailable(
    policy: Policy, history: History, now: float, az: PublicAz, flavor: str
) -> str | None:
    off = history.backing_off(az.name, flavor, now, policy.capacity_backoff)
    if off is None:
        return None
    key, streak = off
    what = "any flavor" if key == ANY_FLAVOR else key
    left = streak.ends_at(policy.capacity_backoff) - now
    why = f"capacity failure of {what} {now - streak.last_at:.0f}s ago "
    why += f"({streak.count} in a row: backing off {streak.backoff(policy.capacity_backoff):g}s, "
    why += f"{left:.0f}s left)"
    return f"{why}: {streak.reason}" if streak.reason else why


def _public_problems(  # noqa: PLR0917 - decide's inputs
    request: Request, load: Load, policy: Policy, history: History, now: float, room: Room
) -> list[tuple[PublicAz, str | None]]:
    """Every public AZ in fallback order, with why it cannot take this boot now (None: it can)."""
    return [
        (
            az,
            _unavailable(policy, history, now, az, request.flavor.name)
            or cap_problem(az, load.usage(az.name), request.flavor)
            or budget_problem(az, load, policy, request.flavor, room),
        )
        for az in policy.public_azs
    ]


def _first_public(  # noqa: PLR0917 - decide's inputs
    request: Request, load: Load, policy: Policy, history: History, now: float, room: Room
) -> tuple[PublicAz | None, tuple[tuple[str, str], ...], tuple[str, ...]]:
    """The first public AZ in fallback order with room, the AZs passed over with why, and the
    public AZs after it that have room too (where a boot that fails there goes next)."""
    problems = _public_problems(request, load, policy, history, now, room)
    skipped: list[tuple[str, str]] = []
    for i, (az, problem) in enumerate(problems):
        if not problem:
            rest = tuple(other.name for other, why in problems[i + 1 :] if not why)
            return az, tuple(skipped), rest
        skipped.append((az.name, problem))
    return None, tuple(skipped), ()


def _local_fallback(request: Request, load: Load, policy: Policy) -> tuple[str, ...]:
    """The local AZ, when a boot no public AZ can take is placed there."""
    fits = load.local.fits(request.flavor.ram_mb, request.flavor.vcpus)
    return (policy.local_az,) if fits and policy.when_public_unavailable == "local" else ()


def _pick_public(  # noqa: PLR0917 - decide's inputs, then why it goes public
    request: Request,
    load: Load,
    policy: Policy,
    history: History,
    now: float,
    room: Room,
    why: _Verdict,
) -> Decision:
    # a flavor too big for local is not a load signal: it must not switch the mode
    mode: Mode = history.mode if why.rule == "local_full" else "burst"
    az, skipped, rest = _first_public(request, load, policy, history, now, room)
    if az is not None:
        fallback = rest + _local_fallback(request, load, policy)
        return Decision(az.name, why.rule, why.reason, mode, True, why.compared, skipped, fallback)
    compared, reason = why.compared, f"{why.reason}; no public AZ available"
    if room.exhausted:
        compared, reason = {**compared, **room.compared}, f"{why.reason}; {room.exhausted}"
    local = policy.when_public_unavailable == "local" and load.local.fits(
        request.flavor.ram_mb, request.flavor.vcpus
    )
    rule = "budget_exhausted" if room.exhausted else None
    if local:
        rule = rule or "public_unavailable_local"
        return Decision(policy.local_az, rule, reason, mode, False, compared, skipped)
    rule = rule or "public_unavailable_reject"
    return Decision(None, rule, reason, history.mode, False, compared, skipped)


def _prefer_public(  # noqa: PLR0917 - decide's inputs, then the load's decision
    request: Request,
    load: Load,
    policy: Policy,
    history: History,
    now: float,
    room: Room,
    local: Decision,
) -> Decision:
    """`azfed:burst=prefer` under a load that keeps boots local: public if an AZ has room now,
    else the local decision, with the AZs passed over. A preference is not a load signal: the
    mode is the one the load gave."""
    az, skipped, rest = _first_public(request, load, policy, history, now, room)
    if az is None:
        return replace(local, skipped=skipped)
    why = f"scheduler hint {HINT}=prefer ({local.rule}: {local.reason})"
    fallback = (*rest, local.az) if local.az else rest
    return Decision(
        az.name, "burst_hint_prefer", why, local.mode, True, local.compared, skipped, fallback
    )


# --- explicit AZ requests ----------------------------------------------------------------------


def _explicit(  # noqa: PLR0917 - decide's inputs
    request: Request, load: Load, policy: Policy, history: History, now: float, room: Room
) -> Decision:
    asked = request.requested_az
    assert asked is not None
    az = policy.public(asked)
    if asked != policy.local_az and az is None:
        return Decision(
            asked, "explicit_az_unknown", f"{asked!r} is not in the policy", history.mode
        )
    if policy.explicit_az == "apply-policy":
        chosen = _decide(replace(request, requested_az=None), load, policy, history, now, room)
        if chosen.az == asked:
            return chosen
        why = f"{chosen.rule}: {chosen.reason}"
        reason = f"asked for {asked!r}, policy places it in {chosen.az!r} ({why})"
        return Decision(
            None, "explicit_az_against_policy", reason, history.mode, False, chosen.compared
        )
    if az is None:
        return Decision(asked, "explicit_az_honoured", "asked for the local AZ", history.mode)
    problem = (
        _may_not_burst(request, policy)
        or cap_problem(az, load.usage(asked), request.flavor)
        or budget_problem(az, load, policy, request.flavor, room)
    )
    if problem:
        return Decision(None, "explicit_az_refused", problem, history.mode)
    return Decision(
        asked, "explicit_az_honoured", f"asked for public AZ {asked!r}", history.mode, True
    )


def _flavor_problem(request: Request, policy: Policy) -> str | None:
    may, why = policy.flavor_may_burst(request.flavor.name)
    return None if may else why


def _project_problem(request: Request, policy: Policy) -> str | None:
    may, why = policy.project_may_burst(request.project_id)
    return None if may else why


def _may_not_burst(request: Request, policy: Policy) -> str | None:
    """Why this request may not go public whatever the load, or None."""
    denied = _denied(request, policy)
    return denied[1] if denied else None


def _denied(request: Request, policy: Policy) -> tuple[str, str] | None:
    """(rule, why) when this request may not go public whatever the load, or None."""
    checks = (
        ("flavor_denied", _flavor_problem(request, policy)),
        ("project_denied", _project_problem(request, policy)),
        (
            "burst_hint_never",
            f"scheduler hint {HINT}=never" if request.burst_hint == "never" else None,
        ),
    )
    return next(((rule, why) for rule, why in checks if why), None)


# --- the entry point ---------------------------------------------------------------------------


def decide(  # noqa: PLR0917 - the inputs, all of them, no I/O
    request: Request,
    load: Load,
    policy: Policy,
    history: History,
    now: float,
    spend: Spend = NOTHING_SPENT,
) -> Decision:
    """Where this boot goes and why. Pure: the same inputs always give the same Decision.

    `now` (Unix time) picks the schedule window in force as well as timing the cooldowns and
    the budgets' periods; `spend` is what public instances cost so far in the day and the month
    of `now` (only read when the policy has a spend budget)."""
    in_force, window = policy.in_force(now)
    room = _room(load, in_force, spend, now)
    decision = _decide(request, load, in_force, history, now, room)
    return decision if window is None else replace(decision, window=window.name)


def _decide(  # noqa: PLR0917 - decide's inputs
    request: Request, load: Load, policy: Policy, history: History, now: float, room: Room
) -> Decision:
    if request.burst_hint not in BURST_HINTS:
        why = f"scheduler hint {HINT}={request.burst_hint!r} is not one of {', '.join(BURST_HINTS)}"
        return Decision(None, "burst_hint_invalid", why, history.mode)
    if request.requested_az:
        return _explicit(request, load, policy, history, now, room)
    denied = _denied(request, policy)
    if denied:
        return Decision(policy.local_az, denied[0], denied[1], history.mode)
    verdict = _verdict(request, load, policy, history, now)
    if verdict.public:
        return _pick_public(request, load, policy, history, now, room, verdict)
    local = Decision(
        policy.local_az, verdict.rule, verdict.reason, "local", False, verdict.compared
    )
    if request.burst_hint == "prefer":
        return _prefer_public(request, load, policy, history, now, room, local)
    return local
