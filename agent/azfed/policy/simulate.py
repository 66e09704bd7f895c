"""`azfed policy simulate`: replay a load/request trace through `decide` to tune a policy.

The trace is a CSV with a header; one row per boot request:

    t,memory_used_pct,instances[,vcpus_used_pct][,flavor][,requested_az][,lifetime_s]

`t` is seconds from the start (non-decreasing); the load columns are the local AZ's load seen
by that request. Instances the simulation sends to a public AZ count against its caps and cost
until their `lifetime_s` ends (empty: until the end of the trace). The result: every decision,
the number of bursts, the public spend, mode switches and flaps (a switch that undoes the
previous one within FLAP_WINDOW_S: the oscillation hysteresis is meant to prevent).
"""

from __future__ import annotations

import csv
import heapq
import itertools
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from azfed.errors import AzfedError, PolicyError, Problem
from azfed.policy.decide import Decision, Flavor, History, Request, decide
from azfed.policy.load import Load, LocalLoad, PublicUsage
from azfed.policy.model import Policy
from azfed.texttable import table

FLAP_WINDOW_S = 600.0
CAPACITY_MB = 100_000.0  # the trace gives percentages; any capacity reproduces them
# OpenStack's classic sizes; a trace may name other flavors (1 vCPU, 1024 MB assumed)
STANDARD_FLAVORS = {
    f.name: f
    for f in (
        Flavor("m1.tiny", 1, 512),
        Flavor("m1.small", 1, 2048),
        Flavor("m1.medium", 2, 4096),
        Flavor("m1.large", 4, 8192),
        Flavor("m1.xlarge", 8, 16384),
    )
}
DEFAULT_FLAVOR = STANDARD_FLAVORS["m1.small"]


class PlotUnavailableError(AzfedError):
    """matplotlib is not installed: install azfed[plot], or simulate without a plot."""


@dataclass(frozen=True)
class Step:
    t: float
    memory_used_pct: float
    instances: int
    vcpus_used_pct: float = 0.0
    flavor: Flavor = DEFAULT_FLAVOR
    requested_az: str | None = None
    lifetime_s: float | None = None


@dataclass
class Result:
    policy: Policy
    steps: list[Step] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    burst_count: list[int] = field(default_factory=list)  # running total, one per step
    spend: float = 0.0  # public cost over the trace, in price units x hours
    peak_hourly_cost: float = 0.0
    switches: int = 0
    flaps: int = 0

    @property
    def bursts(self) -> int:
        return self.burst_count[-1] if self.burst_count else 0

    def rules(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.decisions:
            out[d.rule] = out.get(d.rule, 0) + 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": len(self.steps),
            "bursts": self.bursts,
            "refused": sum(d.az is None for d in self.decisions),
            "spend": round(self.spend, 6),
            "peak_hourly_cost": round(self.peak_hourly_cost, 6),
            "mode_switches": self.switches,
            "flaps": self.flaps,
            "rules": self.rules(),
            "steps": [
                {"t": s.t, "az": d.az, "rule": d.rule, "mode": d.mode}
                for s, d in zip(self.steps, self.decisions, strict=True)
            ],
        }


# --- reading the trace ------------------------------------------------------------------------


def _num(row: dict[str, str], key: str, line: int, default: float | None = None) -> float:
    raw = (row.get(key) or "").strip()
    if not raw and default is not None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise PolicyError("trace", [Problem(f"line {line}: {key}", raw, "not a number")]) from None


def _step(row: dict[str, str], line: int, flavors: dict[str, Flavor]) -> Step:
    name = (row.get("flavor") or "").strip() or DEFAULT_FLAVOR.name
    lifetime = (row.get("lifetime_s") or "").strip()
    return Step(
        t=_num(row, "t", line),
        memory_used_pct=_num(row, "memory_used_pct", line),
        instances=int(_num(row, "instances", line)),
        vcpus_used_pct=_num(row, "vcpus_used_pct", line, 0.0),
        flavor=flavors.get(name, Flavor(name, 1, 1024)),
        requested_az=(row.get("requested_az") or "").strip() or None,
        lifetime_s=_num(row, "lifetime_s", line) if lifetime else None,
    )


def read_trace(path: Path, flavors: dict[str, Flavor] | None = None) -> list[Step]:
    """Parse the CSV; raise PolicyError naming the line, column and value of each bad cell."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as err:
        raise PolicyError(str(path), [Problem("<file>", str(path), str(err))]) from None
    missing = {"t", "memory_used_pct", "instances"} - set(rows[0] if rows else {})
    if missing:
        raise PolicyError(str(path), [Problem("header", sorted(missing), "required column(s)")])
    steps = [_step(r, i + 2, flavors or STANDARD_FLAVORS) for i, r in enumerate(rows)]
    for i, (a, b) in enumerate(itertools.pairwise(steps)):
        if b.t < a.t:
            raise PolicyError(str(path), [Problem(f"line {i + 3}: t", b.t, "time goes backwards")])
    return steps


# --- running it ----------------------------------------------------------------------------


def _local(step: Step) -> LocalLoad:
    used = CAPACITY_MB * step.memory_used_pct / 100.0
    return LocalLoad(
        az="local",
        hosts=1,
        instances=step.instances,
        ram_used_mb=used,
        ram_capacity_mb=CAPACITY_MB,
        vcpus_used=step.vcpus_used_pct,
        vcpus_capacity=100.0,
        largest_free_ram_mb=CAPACITY_MB - used,
        largest_free_vcpus=100.0 - step.vcpus_used_pct,
    )


@dataclass
class _Public:
    """Simulated public usage: what we placed, until it ends."""

    usage: dict[str, PublicUsage]
    ends: list[tuple[float, int, str, Flavor, float]] = field(default_factory=list)
    seq: int = 0

    def add(self, az: str, flavor: Flavor, price: float, until: float) -> None:
        self.usage[az] = _plus(self.usage[az], flavor, price, 1)
        self.seq += 1
        heapq.heappush(self.ends, (until, self.seq, az, flavor, price))

    def expire(self, now: float) -> None:
        while self.ends and self.ends[0][0] <= now:
            _, _, az, flavor, price = heapq.heappop(self.ends)
            self.usage[az] = _plus(self.usage[az], flavor, price, -1)

    def hourly_cost(self) -> float:
        return sum(u.hourly_cost for u in self.usage.values())


def _plus(u: PublicUsage, flavor: Flavor, price: float, sign: int) -> PublicUsage:
    return replace(
        u,
        instances=u.instances + sign,
        vcpus=u.vcpus + sign * flavor.vcpus,
        ram_mb=u.ram_mb + sign * flavor.ram_mb,
        hourly_cost=u.hourly_cost + sign * price,
    )


def run(policy: Policy, steps: list[Step]) -> Result:
    """Replay `steps` through `decide`, keeping history and public usage as the filter would."""
    result = Result(policy)
    public = _Public({az.name: PublicUsage(az.name) for az in policy.public_azs})
    history, last_t, bursts, last_switch = History(), steps[0].t if steps else 0.0, 0, None
    for step in steps:
        public.expire(step.t)
        result.spend += public.hourly_cost() * (step.t - last_t) / 3600.0
        last_t = step.t
        load = Load(replace(_local(step), az=policy.local_az), dict(public.usage))
        d = decide(Request(step.flavor, step.requested_az), load, policy, history, step.t)
        new = history.after(d, step.t)
        if new.mode != history.mode:
            result.switches += 1
            if last_switch is not None and step.t - last_switch < FLAP_WINDOW_S:
                result.flaps += 1
            last_switch = step.t
        history = new
        az = policy.public(d.az) if d.az else None
        if az is not None:
            bursts += 1
            price = az.price(step.flavor.name)
            until = step.t + step.lifetime_s if step.lifetime_s is not None else float("inf")
            public.add(az.name, step.flavor, az.max_price if price is None else price, until)
        result.peak_hourly_cost = max(result.peak_hourly_cost, public.hourly_cost())
        result.steps.append(step)
        result.decisions.append(d)
        result.burst_count.append(bursts)
    return result


# --- output --------------------------------------------------------------------------------


def render(result: Result) -> str:
    s = result.as_dict()
    summary = table(
        ["requests", "bursts", "refused", "spend", "peak cost/h", "mode switches", "flaps"],
        [[s["requests"], s["bursts"], s["refused"], s["spend"], s["peak_hourly_cost"],
          s["mode_switches"], s["flaps"]]],
    )  # fmt: skip
    rules = table(["rule", "decisions"], sorted(s["rules"].items()))
    return f"{summary}\n\n{rules}"


def plot(result: Result, out: Path) -> None:
    """Local memory used, the thresholds and the running burst count, over time, as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: render to a file only
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailableError(
            "--plot needs matplotlib: pip install 'azfed[plot]' (or drop --plot)"
        ) from None
    t = [s.t for s in result.steps]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
    top.plot(t, [s.memory_used_pct for s in result.steps], label="local memory used %")
    p = result.policy
    for name, limits, style in (("burst", p.burst, "--"), ("return", p.return_, ":")):
        if limits.memory_used_pct is not None:
            top.axhline(limits.memory_used_pct, linestyle=style, color="grey", label=f"{name} at")
    top.set_ylabel("%")
    top.legend(loc="upper left")
    bottom.step(t, result.burst_count, where="post", label="bursts (cumulative)")
    bottom.set_xlabel("t (s)")
    bottom.legend(loc="upper left")
    fig.suptitle(f"{result.policy.source}: {result.bursts} bursts, {result.flaps} flaps")
    fig.savefig(out, dpi=80)
    plt.close(fig)
