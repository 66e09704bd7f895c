"""`azfed policy simulate`: replay a load/request trace through `decide` to tune a policy.

    trace.csv -> read_trace (TraceRow per row) -> run (decide per row) -> Result -> render | plot

The trace is a CSV with a header and one row per boot request; `TraceRow` declares its columns,
their ranges and their meaning once (the `--help` text is made from it). The load columns are
the local AZ's load seen by that request. An instance the simulation sends to a public AZ
counts against its caps and costs its price from its boot to its end: `lifetime_s` later (even
past the last row), or the last row's time when `lifetime_s` is empty. Spend is accrued from
event to event (each boot, each end), not from row to row, so an instance that ends between
two rows is charged up to its end.

The result: every decision with its rule, reason and skipped AZs, the bursts, the spend (in
total and per AZ), mode switches and flaps (a switch that undoes the previous one within
FLAP_WINDOW_S: the oscillation hysteresis is meant to prevent).
"""

from __future__ import annotations

import csv
import difflib
import heapq
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from typing import Any

from azfed.errors import AzfedError, InputError, Problem
from azfed.policy.budget import PERIODS, Ledger, Spend, warning
from azfed.policy.decide import BURST_HINTS, HINT, Decision, Flavor, History, Request, decide
from azfed.policy.load import Load, LocalLoad, PublicUsage
from azfed.policy.model import METRICS, Policy, Thresholds
from azfed.texttable import table
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

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
# a trace with thousands of bad rows is one mistake made thousands of times: show the first few
MAX_PROBLEMS = 20


class PlotUnavailableError(AzfedError):
    """matplotlib is not installed: install azfed[plot], or simulate without a plot."""


class TraceError(InputError):
    """A load trace is invalid: each problem names the line, the column and the value to fix."""


# --- the trace's columns -----------------------------------------------------------------------


class TraceRow(BaseModel):
    """One row of a trace: one boot request and the local load it sees."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    t: float = Field(
        description="when the request comes: seconds from --start (default the Unix epoch, so "
        "Unix times work as they are), or an ISO 8601 date-time with its UTC offset "
        "(2026-12-07T08:30:00+01:00); never earlier than the row before"
    )
    memory_used_pct: float = Field(ge=0, le=100, description="local AZ memory used, 0..100")
    instances: int = Field(ge=0, description="instances in the local AZ, a whole number >= 0")
    vcpus_used_pct: float = Field(0.0, ge=0, le=100, description="local AZ vCPUs used, 0..100")
    flavor: str = Field(
        DEFAULT_FLAVOR.name,
        min_length=1,
        description=f"the flavor booted (default {DEFAULT_FLAVOR.name}); "
        f"{', '.join(STANDARD_FLAVORS)} have their OpenStack sizes, others 1 vCPU and 1024 MB",
    )
    requested_az: str | None = Field(None, description="the AZ the user asked for, if any")
    project_id: str = Field("", description="the boot's project, for projects.allow/deny")
    burst_hint: str = Field(
        "allowed", description=f"the server's {HINT} scheduler hint: {', '.join(BURST_HINTS)}"
    )
    lifetime_s: float | None = Field(
        None,
        gt=0,
        description="how long a burst instance lives, in seconds (default: to the last row)",
    )
    no_capacity: str = Field(
        "",
        pattern=r"^[A-Za-z0-9._: -]*$",
        description="public AZs with no capacity for this row's flavor now, separated by "
        "spaces: a boot placed there fails and goes on down the decision's fallback (as Nova's "
        "reschedule does), and the policy backs that AZ off for the flavor",
    )

    @field_validator("burst_hint")
    @classmethod
    def _hint(cls, value: str) -> str:
        if value not in BURST_HINTS:
            raise PydanticCustomError("hint", f"not one of {', '.join(BURST_HINTS)}")
        return value

    @field_validator("t", mode="before")
    @classmethod
    def _clock(cls, value: object, info: ValidationInfo) -> object:
        """Seconds after the trace's start, or a date-time, as Unix time."""
        if not isinstance(value, str):
            return value
        start = (info.context or {}).get("start", 0.0)
        try:
            return start + float(value)
        except ValueError:
            pass
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise PydanticCustomError(
                "clock", "neither seconds nor an ISO 8601 date-time"
            ) from None
        if when.tzinfo is None:
            raise PydanticCustomError(
                "clock", "an ISO 8601 date-time needs its UTC offset (+01:00, Z...)"
            )
        return when.timestamp()


REQUIRED = tuple(n for n, f in TraceRow.model_fields.items() if f.is_required())
COLUMNS = tuple(TraceRow.model_fields)

# pydantic's wording for the common mistakes, said the way this command always said them
_REASONS = {
    "float_parsing": "not a number",
    "int_parsing": "not a whole number",
    "int_from_float": "not a whole number",
    "finite_number": "not a finite number (NaN and infinity are refused)",
    "missing": "required: the cell is empty",
}


def trace_help() -> list[tuple[str, str]]:
    """(column, what it holds) for --help, required columns marked."""
    return [
        (name + ("" if name in REQUIRED else " (optional)"), f.description or "")
        for name, f in TraceRow.model_fields.items()
    ]


@dataclass(frozen=True)
class Step:
    """One row of the trace, ready to replay: `t` is Unix time."""

    t: float
    memory_used_pct: float
    instances: int
    vcpus_used_pct: float = 0.0
    flavor: Flavor = DEFAULT_FLAVOR
    requested_az: str | None = None
    lifetime_s: float | None = None
    project_id: str = ""
    burst_hint: str = "allowed"
    no_capacity: frozenset[str] = frozenset()

    def metric(self, name: str) -> float:
        return float(getattr(self, name))


# --- reading the trace ------------------------------------------------------------------------


def _header_problems(header: list[str]) -> list[Problem]:
    out, meant = [], set()
    for name in header:
        if name not in COLUMNS:
            near = difflib.get_close_matches(name, COLUMNS, n=1)
            meant.update(near)
            hint = f"did you mean {near[0]!r}?" if near else f"known columns: {', '.join(COLUMNS)}"
            out.append(Problem("line 1: header", name, f"unknown column; {hint}"))
    # a misspelt required column is one problem, not two
    missing = [c for c in REQUIRED if c not in header and c not in meant]
    if missing:
        out.append(Problem("line 1: header", header, f"missing required column(s) {missing}"))
    return out


def _row_problems(err: ValidationError, raw: Mapping[str, str], line: int) -> Iterator[Problem]:
    for e in err.errors():
        column = str(e["loc"][0]) if e["loc"] else "row"
        reason = _REASONS.get(e["type"], e["msg"])
        yield Problem(f"line {line}: {column}", raw.get(column, ""), reason)


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, cells) per row; a cell left empty is absent (its column's default)."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in reader.fieldnames or []]
        problems = _header_problems(header)
        if problems:
            raise TraceError(str(path), problems)
        reader.fieldnames = header
        for row in reader:
            if None in row:  # more cells than the header has columns
                raise TraceError(
                    str(path), [Problem(f"line {reader.line_num}: row", row[None], "extra cells")]
                )
            yield reader.line_num, {k: v.strip() for k, v in row.items() if v and v.strip()}


def _step(row: TraceRow, flavors: Mapping[str, Flavor]) -> Step:
    return Step(
        t=row.t,
        memory_used_pct=row.memory_used_pct,
        instances=row.instances,
        vcpus_used_pct=row.vcpus_used_pct,
        flavor=flavors.get(row.flavor, Flavor(row.flavor, 1, 1024)),
        requested_az=row.requested_az,
        lifetime_s=row.lifetime_s,
        project_id=row.project_id,
        burst_hint=row.burst_hint,
        no_capacity=frozenset(row.no_capacity.split()),
    )


def read_trace(
    path: Path, flavors: Mapping[str, Flavor] | None = None, start: float = 0.0
) -> list[Step]:
    """Parse and check the CSV (`start`: the Unix time of t = 0). Raise TraceError naming the
    line, column and value of every bad cell (the first MAX_PROBLEMS of them)."""
    steps: list[Step] = []
    problems: list[Problem] = []
    last: tuple[int, float] | None = None
    try:
        for line, raw in _rows(path):
            try:
                row = TraceRow.model_validate(raw, context={"start": start})
            except ValidationError as err:
                problems += _row_problems(err, raw, line)
                continue
            if last is not None and row.t < last[1]:
                why = f"earlier than line {last[0]}: time goes backwards"
                problems.append(Problem(f"line {line}: t", raw.get("t"), why))
            last = (line, row.t)
            steps.append(_step(row, flavors or STANDARD_FLAVORS))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise TraceError(str(path), [Problem("<file>", str(path), str(err))]) from None
    if len(problems) > MAX_PROBLEMS:
        more = len(problems) - MAX_PROBLEMS
        problems = [*problems[:MAX_PROBLEMS], Problem("...", more, "more problems not shown")]
    if problems:
        raise TraceError(str(path), problems)
    return steps


# --- simulated public usage -------------------------------------------------------------------


@dataclass
class AzTotals:
    """What one AZ received over the trace."""

    placements: int = 0
    skipped: int = 0  # decisions that passed over this public AZ (cap, back-off)
    failed: int = 0  # boots placed here that failed for lack of capacity (trace's no_capacity)
    spend: float = 0.0
    instance_hours: float = 0.0
    peak_instances: int = 0
    peak_hourly_cost: float = 0.0


@dataclass
class _Public:
    """Public usage over simulated time: what we placed, until it ends, and what it cost.

    `clock` is the time spend has been accrued up to; `advance` moves it event by event, so
    cost is charged for exactly the time each instance lived."""

    usage: dict[str, PublicUsage]
    totals: dict[str, AzTotals]
    clock: float
    ledger: Ledger  # the spend per day and month, for the budgets
    ends: list[tuple[float, int, str, Flavor, float]] = field(default_factory=list)
    seq: int = 0

    def add(self, az: str, flavor: Flavor, price: float, until: float) -> None:
        self.usage[az] = _plus(self.usage[az], flavor, price, 1)
        self.seq += 1
        heapq.heappush(self.ends, (until, self.seq, az, flavor, price))
        u, tot = self.usage[az], self.totals[az]
        tot.peak_instances = max(tot.peak_instances, u.instances)
        tot.peak_hourly_cost = max(tot.peak_hourly_cost, u.hourly_cost)

    def advance(self, to: float) -> None:
        """Accrue spend up to `to`, ending each instance at its own end on the way."""
        while self.ends and self.ends[0][0] <= to:
            until, _, az, flavor, price = heapq.heappop(self.ends)
            self._accrue(until)
            self.usage[az] = _plus(self.usage[az], flavor, price, -1)
        self._accrue(to)

    def drain(self) -> None:
        """Run every instance still alive to its end."""
        if self.ends:
            self.advance(max(until for until, *_ in self.ends))

    def _accrue(self, to: float) -> None:
        self.ledger.accrue(self.hourly_cost(), to)
        hours = (to - self.clock) / 3600.0
        if hours > 0:
            for az, u in self.usage.items():
                self.totals[az].spend += u.hourly_cost * hours
                self.totals[az].instance_hours += u.instances * hours
        self.clock = max(self.clock, to)

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


# --- running it ----------------------------------------------------------------------------


@dataclass
class Result:
    policy: Policy
    steps: list[Step] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    # the thresholds and caps in force at each step (the schedule's window's), for the plot
    in_force: list[Policy] = field(default_factory=list)
    burst_count: list[int] = field(default_factory=list)  # running total, one per step
    spent: list[Spend] = field(default_factory=list)  # the day's and month's, seen by each step
    peak_spend: dict[str, float] = field(default_factory=dict)  # the most a day / month cost
    usage: list[Mapping[str, PublicUsage]] = field(default_factory=list)  # after each step
    # the AZs each step's boot failed in for lack of capacity (the trace's no_capacity)
    failed_in: list[tuple[str, ...]] = field(default_factory=list)
    azs: dict[str, AzTotals] = field(default_factory=dict)  # the local AZ, then public ones
    peak_hourly_cost: float = 0.0
    switches: int = 0
    flaps: int = 0

    @property
    def bursts(self) -> int:
        return self.burst_count[-1] if self.burst_count else 0

    @property
    def spend(self) -> float:
        """Public cost over the trace, in price units x hours."""
        return sum(t.spend for t in self.azs.values())

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
            "azs": {az: _rounded(vars(t)) for az, t in self.azs.items()},
            "budgets": self.budgets(),
            "steps": [
                _step_dict(s, d, spent, failed)
                for s, d, spent, failed in zip(
                    self.steps, self.decisions, self.spent, self.failed_in, strict=True
                )
            ],
        }

    def budgets(self) -> dict[str, Any]:
        """Per period with a spend budget: the budget, the most a period cost, the first step
        that saw the warning level reached."""
        b = self.policy.budgets
        out: dict[str, Any] = {}
        for period in PERIODS:
            limit = getattr(b, period)
            if limit is None:
                continue
            warned = next(
                (
                    s.t
                    for s, sp in zip(self.steps, self.spent, strict=True)
                    if period in warning(b, sp)
                ),
                None,
            )
            out[period] = {
                "budget": limit,
                "peak_spend": round(self.peak_spend.get(period, 0.0), 6),
                "warned_at": None if warned is None else clock(warned),
            }
        return out


def _rounded(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in d.items()}


def clock(t: float) -> str:
    """Unix time as an ISO 8601 UTC date-time."""
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


def _step_dict(step: Step, d: Decision, spent: Spend, failed: tuple[str, ...]) -> dict[str, Any]:
    return {
        "t": step.t,
        "clock": clock(step.t),
        "flavor": step.flavor.name,
        "az": d.az,
        "rule": d.rule,
        "reason": d.reason,
        "mode": d.mode,
        "window": d.window,
        "skipped": [{"az": az, "why": why} for az, why in d.skipped],
        "failed_in": list(failed),
        "spend_day": round(spent.day, 6),
        "spend_month": round(spent.month, 6),
    }


class _Flaps:
    """Counts mode switches, and the switches that undo the previous one too soon."""

    def __init__(self) -> None:
        self.switches = self.flaps = 0
        self.last: float | None = None

    def see(self, before: History, after: History, t: float) -> None:
        if after.mode == before.mode:
            return
        self.switches += 1
        if self.last is not None and t - self.last < FLAP_WINDOW_S:
            self.flaps += 1
        self.last = t


def _place(public: _Public, policy: Policy, step: Step, d: Decision, end: float) -> bool:
    """Start the instance `d` sent public; False if it stayed local or was refused."""
    az = policy.public(d.az) if d.az else None
    if az is None:
        return False
    price = az.price(step.flavor.name)
    until = step.t + step.lifetime_s if step.lifetime_s is not None else end
    public.add(az.name, step.flavor, az.max_price if price is None else price, max(until, step.t))
    return True


def _request(step: Step) -> Request:
    return Request(step.flavor, step.requested_az, "", step.project_id, step.burst_hint)


def _load(step: Step, policy: Policy, public: _Public) -> Load:
    used = CAPACITY_MB * step.memory_used_pct / 100.0
    local = LocalLoad(
        az=policy.local_az,
        hosts=1,
        instances=step.instances,
        ram_used_mb=used,
        ram_capacity_mb=CAPACITY_MB,
        vcpus_used=step.vcpus_used_pct,
        vcpus_capacity=100.0,
        largest_free_ram_mb=CAPACITY_MB - used,
        largest_free_vcpus=100.0 - step.vcpus_used_pct,
    )
    return Load(local, dict(public.usage))


def run(policy: Policy, steps: list[Step]) -> Result:
    """Replay `steps` through `decide`, keeping history and public usage as the filter would.
    A row's `no_capacity` AZs must be public AZs of the policy (TraceError otherwise)."""
    _check_no_capacity(policy, steps)
    names = [policy.local_az, *(az.name for az in policy.public_azs)]
    result = Result(policy, azs={n: AzTotals() for n in names})
    start, end = (steps[0].t, steps[-1].t) if steps else (0.0, 0.0)
    ledger = Ledger(policy.budgets.zone, start)
    public = _Public({n: PublicUsage(n) for n in names[1:]}, result.azs, start, ledger)
    history, flaps, bursts = History(), _Flaps(), 0
    for step in steps:
        public.advance(step.t)
        spent = ledger.now()
        d = decide(_request(step), _load(step, policy, public), policy, history, step.t, spent)
        d, history, failed = _fall_back(policy, step, d, history)
        new = history.after(d, step.t)
        flaps.see(history, new, step.t)
        history = new
        bursts += _place(public, policy, step, d, end)
        _count(result, d)
        result.peak_hourly_cost = max(result.peak_hourly_cost, public.hourly_cost())
        result.steps.append(step)
        result.decisions.append(d)
        result.in_force.append(policy.in_force(step.t)[0])
        result.burst_count.append(bursts)
        result.spent.append(spent)
        result.usage.append(dict(public.usage))
        result.failed_in.append(failed)
        for az in failed:
            result.azs[az].failed += 1
    public.drain()
    result.peak_spend = dict(ledger.peak)
    result.switches, result.flaps = flaps.switches, flaps.flaps
    return result


def _check_no_capacity(policy: Policy, steps: list[Step]) -> None:
    public = {az.name for az in policy.public_azs}
    problems = [
        Problem(
            f"t {clock(step.t)}: no_capacity",
            az,
            f"not a public AZ of the policy: {sorted(public)}",
        )
        for step in steps
        for az in sorted(step.no_capacity - public)
    ]
    if problems:
        raise TraceError("trace", problems[:MAX_PROBLEMS])


def _fall_back(
    policy: Policy, step: Step, d: Decision, history: History
) -> tuple[Decision, History, tuple[str, ...]]:
    """A boot placed in an AZ the trace says has no capacity fails there and goes on to the
    next AZ of the decision's fallback, as Nova's reschedule does through the alternates; each
    failure backs that AZ off for the flavor. Also the AZs it failed in; none left: refused
    (ERROR in Nova)."""
    if d.az is None or d.az not in step.no_capacity:
        return d, history, ()
    order = (d.az, *d.fallback)
    i = next((i for i, az in enumerate(order) if az not in step.no_capacity), len(order))
    failed = order[:i]
    for az in failed:
        history = history.with_failure(
            az, step.flavor.name, step.t, policy.capacity_backoff, "no capacity (trace)"
        )
    left = order[i] if i < len(order) else None
    why = f"{d.reason}; no capacity in {', '.join(failed)}"
    burst = left is not None and policy.public(left) is not None
    return replace(d, az=left, burst=burst, reason=why, fallback=order[i + 1 :]), history, failed


def _count(result: Result, d: Decision) -> None:
    if d.az in result.azs:
        result.azs[d.az].placements += 1
    for az, _ in d.skipped:
        result.azs[az].skipped += 1


# --- output --------------------------------------------------------------------------------


def render(result: Result) -> str:
    s = result.as_dict()
    summary = table(
        ["requests", "bursts", "refused", "spend", "peak cost/h", "mode switches", "flaps"],
        [[s["requests"], s["bursts"], s["refused"], s["spend"], s["peak_hourly_cost"],
          s["mode_switches"], s["flaps"]]],
    )  # fmt: skip
    per_az = table(
        ["AZ", "placed", "skipped", "no capacity", "spend", "instance-hours", "peak instances",
         "peak cost/h"],
        [[az, t["placements"], t["skipped"], t["failed"], t["spend"], t["instance_hours"],
          t["peak_instances"], t["peak_hourly_cost"]] for az, t in s["azs"].items()],
    )  # fmt: skip
    rules = table(["rule", "decisions"], sorted(s["rules"].items()))
    out = f"{summary}\n\n{per_az}\n\n{rules}"
    if s["budgets"]:
        budgets = table(
            ["budget", "limit", "peak spend", "warning reached"],
            [[p, b["budget"], b["peak_spend"], b["warned_at"] or "-"]
             for p, b in s["budgets"].items()],
        )  # fmt: skip
        out += f"\n\n{budgets}"
    return out


# --- the plot ------------------------------------------------------------------------------


def metrics_used(result: Result) -> list[str]:
    """The load metrics the policy compares at some step, in METRICS order."""
    used = {m for p in result.in_force for lim in (p.burst, p.return_) for m, _ in lim.items()}
    return [m for m in METRICS if m in used]


def burst_spans(result: Result) -> list[tuple[float, float]]:
    """The (start, end) times the policy was in burst mode, each ending at the next row."""
    times = [s.t for s in result.steps]
    ends = [*times[1:], times[-1]] if times else []
    spans: list[tuple[float, float]] = []
    for t, end, d in zip(times, ends, result.decisions, strict=True):
        if d.mode != "burst":
            continue
        if spans and spans[-1][1] == t:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((t, end))
    return spans


def placement_rows(result: Result) -> list[str]:
    """The y axis of the placements panel: the policy's AZs, any other AZ a request named
    (the policy lets those through), then refusals."""
    others = sorted({d.az for d in result.decisions if d.az and d.az not in result.azs})
    return [*result.azs, *others, "refused"]


def plot(result: Result, out: Path) -> None:
    """Every load metric the policy uses against its thresholds, the burst mode as a band,
    the spend against each spend budget and its warning level, the public cost against the
    caps, and each request's placement (per AZ, refusals apart), over clock time, as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: render to a file only
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailableError(
            "--plot needs matplotlib: pip install 'azfed[plot]' (or drop --plot)"
        ) from None
    metrics = metrics_used(result)
    spend = spend_series(result)
    zone = result.policy.schedule.zone if result.policy.schedule else timezone.utc
    when = [datetime.fromtimestamp(s.t, zone) for s in result.steps]
    panels = len(metrics) + 2 + bool(spend)
    fig, axes = plt.subplots(panels, 1, sharex=True, figsize=(11, 2.4 * panels + 1))
    for ax, metric in zip(axes, metrics, strict=False):
        _plot_metric(ax, result, when, metric)
    if spend:
        _plot_spend(axes[len(metrics)], spend, when)
    _plot_public_cost(axes[-2], result, when)
    _plot_placements(axes[-1], result, when)
    for ax in axes:
        for a, b in burst_spans(result):
            ax.axvspan(_at(a, zone), _at(b, zone), color="tab:orange", alpha=0.15, lw=0)
    # ticks in the schedule's zone, where its windows are (matplotlib's default is UTC)
    locator = mdates.AutoDateLocator(tz=zone)  # type: ignore[no-untyped-call]
    axes[-1].xaxis.set_major_locator(locator)
    axes[-1].xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=zone))  # type: ignore[no-untyped-call]
    axes[-1].set_xlabel(f"clock time ({zone}); shaded: burst mode")
    fig.suptitle(
        f"{result.policy.source}: {result.bursts} bursts, spend {result.spend:.4g}, "
        f"{result.flaps} flaps"
    )
    fig.savefig(out, dpi=80)
    plt.close(fig)


def _at(t: float, zone: tzinfo) -> datetime:
    return datetime.fromtimestamp(t, zone)


def _plot_metric(ax: Any, result: Result, when: list[datetime], metric: str) -> None:
    ax.plot(when, [s.metric(metric) for s in result.steps], label=metric, color="tab:blue")
    for name, style in (("burst", "--"), ("return", ":")):
        limits = [
            _limit(p.burst if name == "burst" else p.return_, metric) for p in result.in_force
        ]
        ax.step(when, limits, where="post", linestyle=style, color="grey", label=f"{name} at")
    ax.set_ylabel(metric)
    ax.legend(loc="upper left", fontsize="small")


def _limit(thresholds: Thresholds, metric: str) -> float:
    value = getattr(thresholds, metric)
    return math.nan if value is None else float(value)  # nan: not drawn


@dataclass(frozen=True)
class SpendSeries:
    """One spend budget over the trace: what each step saw spent, the budget, its warning."""

    spent: list[float]
    budget: float
    warn_at: float


def spend_series(result: Result) -> dict[str, SpendSeries]:
    """Per period with a spend budget (day, month), the plot's spend panel."""
    b = result.policy.budgets
    out: dict[str, SpendSeries] = {}
    for period in PERIODS:
        limit = getattr(b, period)
        if limit is not None:
            spent = [sp.of(period) for sp in result.spent]
            out[period] = SpendSeries(spent, float(limit), float(limit) * b.warn_at_pct / 100.0)
    return out


def _plot_spend(ax: Any, spend: Mapping[str, SpendSeries], when: list[datetime]) -> None:
    for period, series in spend.items():
        (line,) = ax.step(when, series.spent, where="post", label=f"spent this {period}")
        color = line.get_color()
        ax.axhline(series.budget, linestyle="--", color=color, lw=0.8)
        ax.axhline(series.warn_at, linestyle=":", color=color, lw=0.8)
    ax.set_ylabel("spend")
    ax.legend(
        loc="upper left", fontsize="small", title="dashed: budget, dotted: warning",
        title_fontsize="small",
    )  # fmt: skip


def _plot_public_cost(ax: Any, result: Result, when: list[datetime]) -> None:
    for az in result.policy.public_azs:
        (line,) = ax.step(
            when, [u[az.name].hourly_cost for u in result.usage], where="post", label=az.name
        )
        caps = [_cap(p, az.name) for p in result.in_force]
        ax.step(when, caps, where="post", linestyle="--", color=line.get_color(), lw=0.8)
    total_cap = result.policy.budgets.caps.hourly_cost
    if total_cap is not None:  # the cap on all public AZs together
        total = [sum(x.hourly_cost for x in u.values()) for u in result.usage]
        ax.step(when, total, where="post", label="all public", color="black", lw=0.8)
        ax.axhline(total_cap, linestyle="--", color="black", lw=0.8)
    ax.set_ylabel("public cost/h")
    ax.legend(loc="upper left", fontsize="small", title="dashed: cap", title_fontsize="small")


def _cap(policy: Policy, az: str) -> float:
    found = policy.public(az)
    cap = found.caps.hourly_cost if found else None
    return math.nan if cap is None else cap  # nan: not drawn


def _plot_placements(ax: Any, result: Result, when: list[datetime]) -> None:
    rows = placement_rows(result)
    for y, name in enumerate(rows):
        at = [w for w, d in zip(when, result.decisions, strict=True) if (d.az or "refused") == name]
        if name == "refused":
            ax.scatter(at, [y] * len(at), marker="x", color="tab:red", label="refused")
        else:
            ax.scatter(at, [y] * len(at), marker="|", s=80)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_ylim(-0.5, len(rows) - 0.5)
    ax.set_ylabel("placed in")
