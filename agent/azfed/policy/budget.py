"""Budgets across all public AZs: caps on what runs there together, and spend per day and month.

Pure, like `decide`: the caller passes the spend so far (`Spend`) and `now`. Spend is money in
the price table's currency: each burst instance costs its AZ's price for its flavor per hour of
its life, from launch to termination (an unpriced flavor at the AZ's dearest price, as the caps
count it). `spend_at` computes it from instance lifetimes (the receiver, from Nova's records);
`Ledger` accrues it from a piecewise-constant hourly cost (the simulator, event by event).

decide does not know how long an instance will live, and azfed never ends one to save money, so
a spend budget holds only if it holds should every running instance run on: a new instance may
go public only while, with its price added to the hourly cost of the running ones,

    spent so far + hourly cost x hours left in the period <= budget, and
    hourly cost x hours of the next period <= budget (it runs on past midnight).

Early in a period this admits only what the rest of the period can pay for; instances that end
early leave room for later ones. The warning level compares what is spent, not that projection.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from azfed.policy.model import Budgets, Policy, PublicAz

PERIODS = ("day", "month")
# the receiver answers the spend so far here (azfed.receiver.spend); the scheduler's filter reads it
SPEND_PATH = "/v1/spend"


@dataclass(frozen=True)
class Spend:
    """Money spent on public instances since the start of the day and of the month (in the
    budgets' time zone) that contain the `now` it was computed for."""

    day: float = 0.0
    month: float = 0.0

    def of(self, period: str) -> float:
        return self.day if period == "day" else self.month


NOTHING_SPENT = Spend()
# A spend that could not be read counts as used up: a budget is never passed for want of a count
UNKNOWN_SPEND = Spend(math.inf, math.inf)


@dataclass(frozen=True)
class Lifetime:
    """One burst instance's life in a public AZ: launched at `start`, terminated at `end`
    (None: still running). Unix times."""

    az: str
    flavor: str
    start: float
    end: float | None = None


# the last bounds computed per zone: decide asks for the same day's on every boot, and the
# datetimes they take to compute were most of decide's cost and garbage with a budget on
_LAST: dict[ZoneInfo, dict[str, tuple[float, float]]] = {}


def period_bounds(now: float, zone: ZoneInfo) -> dict[str, tuple[float, float]]:
    """period -> (start, end) in Unix time: the local day and month that contain `now`."""
    last = _LAST.get(zone)
    if last is not None and last["day"][0] <= now < last["day"][1]:
        return last
    _LAST[zone] = bounds = _period_bounds(now, zone)
    return bounds


@functools.lru_cache(maxsize=64)
def _next_hours(period: str, end: float, zone: ZoneInfo) -> float:
    """How long the period that starts at `end` lasts (a day of 23 or 25 h across DST)."""
    return (_period_bounds(end, zone)[period][1] - end) / 3600.0


def _period_bounds(now: float, zone: ZoneInfo) -> dict[str, tuple[float, float]]:
    local = datetime.fromtimestamp(now, zone)
    day = local.date()
    first = day.replace(day=1)
    next_first = (first + timedelta(days=32)).replace(day=1)

    def at(d: date) -> float:
        return datetime.combine(d, time(), zone).timestamp()

    return {
        "day": (at(day), at(day + timedelta(days=1))),
        "month": (at(first), at(next_first)),
    }


def price(az: PublicAz, flavor: str) -> float:
    """The hourly price of one instance of `flavor` in `az`; the dearest when unpriced."""
    known = az.price(flavor)
    return az.max_price if known is None else known


def spend_at(lifetimes: Iterable[Lifetime], policy: Policy, now: float) -> Spend:
    """What the instances' lives up to `now` cost in the day and the month of `now`."""
    bounds = period_bounds(now, policy.budgets.zone)
    totals = dict.fromkeys(PERIODS, 0.0)
    for life in lifetimes:
        az = policy.public(life.az)
        if az is None:
            continue
        end = now if life.end is None else min(life.end, now)
        hourly = price(az, life.flavor)
        for period, (start, _) in bounds.items():
            totals[period] += hourly * max(0.0, end - max(life.start, start)) / 3600.0
    return Spend(**totals)


@dataclass
class Ledger:
    """Spend accrued from a public hourly cost that changes only at the times given, split at
    the budgets' day and month boundaries (a day's spend starts again at local midnight)."""

    zone: ZoneInfo
    clock: float
    spend: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PERIODS, 0.0))
    peak: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PERIODS, 0.0))
    _bounds: dict[str, tuple[float, float]] = field(default_factory=dict)

    def accrue(self, hourly_cost: float, to: float) -> None:
        """Charge `hourly_cost` from the clock to `to`, then move the clock there."""
        while self.clock < to:
            self._roll()
            step_end = min(to, *(end for _, end in self._bounds.values()))
            for period in PERIODS:
                self.spend[period] += hourly_cost * (step_end - self.clock) / 3600.0
                self.peak[period] = max(self.peak[period], self.spend[period])
            self.clock = step_end
        self._roll()

    def _roll(self) -> None:
        if self._bounds and all(s <= self.clock < e for s, e in self._bounds.values()):
            return
        old, self._bounds = self._bounds, period_bounds(self.clock, self.zone)
        for period, bound in self._bounds.items():
            if old.get(period) != bound:
                self.spend[period] = 0.0

    def now(self) -> Spend:
        return Spend(**self.spend)


# --- what decide asks: may one more instance go public? -------------------------------------


@dataclass(frozen=True)
class Room:
    """What the budgets leave for new public instances at one `now`: hourly cost that may be
    added before a spend budget would be exceeded by the period's end (inf: no spend budget),
    and why nothing at all may be added (None: something may)."""

    hourly: float = math.inf
    exhausted: str | None = None
    compared: dict[str, dict[str, float]] = field(default_factory=dict)


def room(budgets: Budgets, spend: Spend, running_hourly: float, now: float) -> Room:
    """The spend budgets' room, given what is spent and what the running instances cost."""
    limits = {p: getattr(budgets, p) for p in PERIODS if getattr(budgets, p) is not None}
    if not limits:
        return Room()
    bounds = period_bounds(now, budgets.zone)
    hourly, exhausted, compared = math.inf, None, {}
    for period, limit in limits.items():
        end = bounds[period][1]
        hours_left = max(end - now, 1.0) / 3600.0
        committed = spend.of(period) + running_hourly * hours_left
        compared[f"spend_{period}"] = {"value": round(spend.of(period), 6), "limit": limit}
        compared[f"committed_{period}"] = {"value": round(committed, 6), "limit": limit}
        # what runs at the end of this period runs on into the next: a whole next period of
        # it must fit that period's budget too
        next_hours = _next_hours(period, end, budgets.zone)
        left_now = (limit - committed) / hours_left
        left_next = limit / next_hours - running_hourly
        if exhausted is None and math.isinf(spend.of(period)):
            exhausted = f"budget spend.{period}: spend unknown ({SPEND_PATH} not read): no burst"
        elif exhausted is None and left_now <= 1e-12:
            exhausted = (
                f"budget spend.{period}: {spend.of(period):.2f} spent + {running_hourly:.4g}/h "
                f"running x {hours_left:.1f} h left = {committed:.2f}, budget {limit:g}"
            )
        elif exhausted is None and left_next <= 1e-12:
            exhausted = (
                f"budget spend.{period}: {running_hourly:.4g}/h running would cost "
                f"{running_hourly * next_hours:.2f} in the next {period}, budget {limit:g}"
            )
        hourly = min(hourly, left_now, left_next)
    return Room(hourly, exhausted, compared)


def warning(budgets: Budgets, spend: Spend) -> list[str]:
    """The periods whose spend reached the warning level."""
    return [
        p
        for p in PERIODS
        if getattr(budgets, p) is not None
        and spend.of(p) >= getattr(budgets, p) * budgets.warn_at_pct / 100.0
    ]
