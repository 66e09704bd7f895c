"""policy.json: validated against the shipped JSON Schema, then turned into frozen objects.

The schema (policy.schema.json, package data) catches shapes and ranges; `_semantic_problems`
catches what a schema cannot say well: a return threshold must sit strictly below its burst
threshold (or hysteresis is gone), names must be unique, the local AZ cannot also be public, and
an hourly cost cap needs a price table, a schedule's time zone must exist and each window's
thresholds must keep their hysteresis. Every problem names the JSON path, the value and the rule.

A schedule is resolved here, once: each window carries the whole policy in force inside it, so
`Policy.in_force(now)` is a time-zone conversion and a few comparisons, no I/O (the zone's rules
are read at load).

This module runs inside nova-scheduler: it may import only the stdlib, jsonschema and agent.*.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from fnmatch import fnmatchcase
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jsonschema
from azfed.errors import PolicyError, Problem

METRICS = ("memory_used_pct", "vcpus_used_pct", "instances")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # in datetime.weekday() order
DAY_S = 86_400

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
class Budgets:
    """Limits on all public AZs together: caps on what runs there at once, and spend (in the
    price table's currency) per day and per month, in a time zone's calendar (None: no limit)."""

    caps: Caps = Caps()
    day: float | None = None
    month: float | None = None
    warn_at_pct: float = 80.0
    timezone: str = "UTC"
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))

    @property
    def spend_limited(self) -> bool:
        return self.day is not None or self.month is not None


@dataclass(frozen=True)
class Backoff:
    """How long a public AZ is skipped for a flavor after capacity failures: `initial_s` after
    the first, doubling with each consecutive failure, never more than `max_s`."""

    initial_s: float = 300.0
    max_s: float = 3600.0

    def after(self, failures: int) -> float:
        """The back-off after `failures` (>= 1) consecutive failures."""
        # past 2**62 the doubling has long passed any max_s: no float overflow
        return min(self.max_s, self.initial_s * 2.0 ** min(max(failures, 1) - 1, 62))


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
class Window:
    """One schedule window: from `start` to `end` (seconds after local midnight) on `days`.

    An `end` at or before `start` crosses midnight: the window runs from `start` on a listed
    day to `end` on the next day. Times are wall-clock times in the schedule's zone, so across a
    DST change a window keeps its local hours (a window inside the skipped hour never applies
    that day; one inside the repeated hour applies both times)."""

    name: str
    days: frozenset[int]  # datetime.weekday(): 0 is Monday
    start: int
    end: int
    policy: Policy  # the thresholds and caps in force inside the window

    def covers(self, weekday: int, second: float) -> bool:
        if self.start < self.end:
            return weekday in self.days and self.start <= second < self.end
        # past midnight, it is the window of the day before
        return (weekday in self.days and second >= self.start) or (
            (weekday - 1) % 7 in self.days and second < self.end
        )

    def describe(self) -> str:
        days = ",".join(DAYS[d] for d in sorted(self.days))
        return f"{days} {_hhmm(self.start)}-{_hhmm(self.end)}"


def _hhmm(second: int) -> str:
    return f"{second // 3600:02d}:{second % 3600 // 60:02d}"


@dataclass(frozen=True)
class Schedule:
    """Windows in a named time zone; the first that covers the local time applies."""

    timezone: str
    zone: ZoneInfo
    windows: tuple[Window, ...]

    def local(self, now: float) -> datetime:
        return datetime.fromtimestamp(now, self.zone)

    def window_at(self, now: float) -> Window | None:
        t = self.local(now)
        second = t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6
        return next((w for w in self.windows if w.covers(t.weekday(), second)), None)


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
    projects_allow: tuple[str, ...] = ("*",)
    projects_deny: tuple[str, ...] = ()
    explicit_az: ExplicitAz = "honour"
    capacity_backoff: Backoff = Backoff()
    when_public_unavailable: WhenUnavailable = "local"
    source: str = "<memory>"
    schedule: Schedule | None = None
    budgets: Budgets = Budgets()
    # valid, but probably not meant: `policy check` shows them, the filter logs them
    warnings: tuple[Problem, ...] = ()

    def public(self, name: str) -> PublicAz | None:
        return next((az for az in self.public_azs if az.name == name), None)

    def in_force(self, now: float) -> tuple[Policy, Window | None]:
        """The policy that applies at `now` (Unix time) and the schedule window it comes from
        (None: no window covers `now`, the top-level thresholds and caps apply)."""
        window = self.schedule.window_at(now) if self.schedule else None
        return (self, None) if window is None else (window.policy, window)

    def flavor_may_burst(self, flavor: str) -> tuple[bool, str]:
        """(may it burst, the rule that said so): deny wins over allow."""
        return _may("flavor", flavor, self.allow, self.deny)

    def project_may_burst(self, project_id: str) -> tuple[bool, str]:
        """(may this project's server burst, the rule that said so): deny wins over allow."""
        return _may("project", project_id, self.projects_allow, self.projects_deny)


def _may(what: str, name: str, allow: tuple[str, ...], deny: tuple[str, ...]) -> tuple[bool, str]:
    for pattern in deny:
        if fnmatchcase(name, pattern):
            return False, f"{what} {name!r} matches deny pattern {pattern!r}"
    for pattern in allow:
        if fnmatchcase(name, pattern):
            return True, f"{what} {name!r} matches allow pattern {pattern!r}"
    return False, f"{what} {name!r} matches no allow pattern {list(allow)!r}"


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
    return [Problem(e.json_path, e.instance, _schema_reason(e)) for e in errors]


def _schema_reason(error: jsonschema.ValidationError) -> str:
    # "is not valid under any of the given schemas" says nothing: an anyOf of `required`s is
    # "set at least one of these keys", so say that
    options = error.validator_value if error.validator == "anyOf" else None
    if isinstance(options, list) and all(set(o) == {"required"} for o in options):
        keys = ", ".join(k for o in options for k in o["required"])
        return f"anyOf: names none of {keys}: set at least one"
    return f"{error.validator}: {error.message}"


class _Object(dict[str, Any]):
    """A JSON object that remembers the keys it held twice (json keeps only the last value,
    so an operator's second `burst` would silently replace the first)."""

    duplicates: tuple[tuple[str, list[Any]], ...] = ()


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    obj, seen = _Object(), dict[str, list[Any]]()
    for key, value in pairs:
        seen.setdefault(key, []).append(value)
        obj[key] = value
    obj.duplicates = tuple((k, vs) for k, vs in seen.items() if len(vs) > 1)
    return obj


def _children(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        yield from ((f"{path}.{k}", v) for k, v in value.items())
    elif isinstance(value, list):
        yield from ((f"{path}[{i}]", v) for i, v in enumerate(value))


def _document_problems(value: Any, path: str = "$") -> list[Problem]:
    """What JSON lets through and a policy must not: NaN and infinities (Python's json reads
    NaN, Infinity and 1e999; every comparison with NaN is false, so a NaN threshold would never
    fire), and a key given twice in one object."""
    if isinstance(value, float) and not math.isfinite(value):
        why = "not a finite number: NaN and Infinity are refused"
        return [Problem(path, "NaN" if math.isnan(value) else f"{value:+}", why)]
    out = [
        Problem(f"{path}.{key}", values, "duplicate key: JSON keeps only the last; keep one")
        for key, values in getattr(value, "duplicates", ())
    ]
    for child_path, child in _children(value, path):
        out += _document_problems(child, child_path)
    return out


# The semantic checks run on a document the schema may have refused: each reads a part only
# when it has the type the schema asks for, and leaves the rest to the schema's problems.


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _objs(value: Any) -> list[dict[str, Any]]:
    """The list's items, a non-object one as an empty object (indexes keep their meaning)."""
    return [_obj(v) for v in value] if isinstance(value, list) else []


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _hysteresis_problems(
    burst: Mapping[str, Any], ret: Mapping[str, Any], path: str = "$", note: str = ""
) -> list[Problem]:
    out: list[Problem] = []
    for name in METRICS:
        if name in ret and name not in burst:
            out.append(
                Problem(f"{path}.return.{name}", ret[name], "no burst threshold to return from")
            )
        elif name in burst and name not in ret:
            why = f"required: burst.{name} is set (hysteresis)"
            out.append(Problem(f"{path}.return.{name}", None, why))
        elif _number(burst.get(name)) and _number(ret.get(name)) and ret[name] >= burst[name]:
            reason = f"must be below burst.{name} = {burst[name]} (hysteresis{note})"
            out.append(Problem(f"{path}.return.{name}", ret[name], reason))
    return out


def _top_hysteresis_problems(data: dict[str, Any]) -> list[Problem]:
    # with either side missing or not an object the schema has said it: comparing would only
    # add noise ("no burst threshold to return from" for every return key)
    burst, ret = data.get("burst"), data.get("return")
    if not isinstance(burst, dict) or not isinstance(ret, dict):
        return []
    return _hysteresis_problems(burst, ret)


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _window_problems(data: dict[str, Any], i: int, w: dict[str, Any]) -> list[Problem]:
    path = f"$.schedule.windows[{i}]"
    out: list[Problem] = []
    if "from" in w and w["from"] == w.get("to"):
        out.append(Problem(f"{path}.to", w["to"], "equals from: for all day use 00:00 to 24:00"))
    if "burst" in w or "return" in w:
        # the window's values over the top-level ones: the pair in force must keep hysteresis
        burst, ret = (
            {**_obj(data.get("burst")), **_obj(w.get("burst"))},
            {**_obj(data.get("return")), **_obj(w.get("return"))},
        )
        out += _hysteresis_problems(burst, ret, path, ", with the top-level values it keeps")
    return out + _window_caps_problems(data, path, _obj(w.get("caps")))


def _window_caps_problems(data: dict[str, Any], path: str, caps: dict[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    azs = [az.get("name") for az in _objs(data.get("public_azs"))]
    for name, az_caps in caps.items():
        if name == "$comment":
            continue
        if name not in azs:
            out.append(Problem(f"{path}.caps.{name}", az_caps, "not a public AZ of this policy"))
            continue
        i = azs.index(name)
        if "hourly_cost" in _obj(az_caps) and not _objs(data["public_azs"])[i].get("prices"):
            why = f"required: {path}.caps.{name}.hourly_cost is set"
            out.append(Problem(f"$.public_azs[{i}].prices", None, why))
    return out


def _schedule_problems(data: dict[str, Any]) -> list[Problem]:
    schedule = _obj(data.get("schedule"))
    out: list[Problem] = []
    timezone = schedule.get("timezone")
    if isinstance(timezone, str) and _zone(timezone) is None:
        why = "unknown time zone: use an IANA name such as Europe/Paris or UTC (if the host has "
        why += "no zone files in /usr/share/zoneinfo: pip install tzdata)"
        out.append(Problem("$.schedule.timezone", timezone, why))
    windows = _objs(schedule.get("windows"))
    names = [w.get("name") for w in windows]
    for i, w in enumerate(windows):
        if "name" in w and w["name"] in names[:i]:
            out.append(
                Problem(f"$.schedule.windows[{i}].name", w["name"], "window names must be unique")
            )
        out += _window_problems(data, i, w)
    return out


def _semantic_problems(data: dict[str, Any]) -> list[Problem]:
    out = _top_hysteresis_problems(data)
    azs = _objs(data.get("public_azs"))
    names = [az.get("name") for az in azs]
    for i, az in enumerate(azs):
        path = f"$.public_azs[{i}]"
        if "name" in az and names.count(az["name"]) > 1:
            out.append(Problem(f"{path}.name", az["name"], "public AZ names must be unique"))
        if "name" in az and az["name"] == data.get("local_az"):
            out.append(Problem(f"{path}.name", az["name"], "is also the local_az"))
        cost_cap = _obj(az.get("caps")).get("hourly_cost")
        if cost_cap is not None and not az.get("prices"):
            out.append(Problem(f"{path}.prices", None, "required when caps.hourly_cost is set"))
    return out + _schedule_problems(data) + _budget_problems(data) + _backoff_problems(data)


# fallback.capacity_failure_backoff_s, a flat back-off, before capacity_backoff: read still
DEPRECATED_BACKOFF = "capacity_failure_backoff_s"


def _backoff_problems(data: dict[str, Any]) -> list[Problem]:
    fallback = _obj(data.get("fallback"))
    backoff = _obj(fallback.get("capacity_backoff"))
    out: list[Problem] = []
    if DEPRECATED_BACKOFF in fallback and "capacity_backoff" in fallback:
        why = "deprecated, and capacity_backoff is set too: keep capacity_backoff only"
        out.append(Problem(f"$.fallback.{DEPRECATED_BACKOFF}", fallback[DEPRECATED_BACKOFF], why))
    initial = backoff.get("initial_s", Backoff.initial_s)
    top = backoff.get("max_s", Backoff.max_s)
    if _number(initial) and _number(top) and top < initial:
        why = f"must be at least initial_s = {initial:g} (the back-off only grows)"
        out.append(Problem("$.fallback.capacity_backoff.max_s", top, why))
    return out


def _budget_problems(data: dict[str, Any]) -> list[Problem]:
    """Spend and a total cost cap are counted with each AZ's prices: an AZ without a price
    table would cost nothing, and never count against them."""
    budgets = _obj(data.get("budgets"))
    out: list[Problem] = []
    timezone = budgets.get("timezone")
    if isinstance(timezone, str) and _zone(timezone) is None:
        why = "unknown time zone: use an IANA name such as Europe/Paris or UTC"
        out.append(Problem("$.budgets.timezone", timezone, why))
    needs = [f"budgets.spend.{k}" for k in ("day", "month") if k in _obj(budgets.get("spend"))]
    needs += ["budgets.caps.hourly_cost"] * ("hourly_cost" in _obj(budgets.get("caps")))
    if not needs:
        return out
    for i, az in enumerate(_objs(data.get("public_azs"))):
        if not az.get("prices"):
            out.append(Problem(f"$.public_azs[{i}].prices", None, f"required: {needs[0]} is set"))
    return out


# --- warnings: valid, but probably not what the operator meant ---------------------------------


def _cost_capped(data: dict[str, Any], name: str, az: dict[str, Any]) -> bool:
    """Whether some hourly cost cap applies to this AZ: its own, or a schedule window's."""
    windows = _objs(_obj(data.get("schedule")).get("windows"))
    caps = [_obj(az.get("caps")), *(_obj(_obj(w.get("caps")).get(name)) for w in windows)]
    return any("hourly_cost" in c for c in caps)


def _warnings(data: dict[str, Any]) -> list[Problem]:
    return _unpriced_warnings(data) + _spend_warnings(data) + _deprecated_warnings(data)


def _deprecated_warnings(data: dict[str, Any]) -> list[Problem]:
    fallback = _obj(data.get("fallback"))
    if DEPRECATED_BACKOFF not in fallback:
        return []
    value = fallback[DEPRECATED_BACKOFF]
    why = "deprecated: read as capacity_backoff.initial_s (doubling after each consecutive "
    why += f"failure up to max_s = {max(value, Backoff.max_s):g}); write "
    why += f'"capacity_backoff": {{"initial_s": {value:g}, "max_s": ...}} instead'
    return [Problem(f"$.fallback.{DEPRECATED_BACKOFF}", value, why)]


def _spend_warnings(data: dict[str, Any]) -> list[Problem]:
    """A spend budget needs the receiver's count: a filter without it bursts nothing, which a
    file cannot show, so say it where the budget is set."""
    spend = _obj(_obj(data.get("budgets")).get("spend"))
    if "day" not in spend and "month" not in spend:
        return []
    why = "the scheduler's filter reads the spend so far from the receiver: set [azfed_filter] "
    why += "receiver_url in nova.conf, or nothing bursts"
    return [Problem("$.budgets.spend", {k: spend[k] for k in ("day", "month") if k in spend}, why)]


def _unpriced_warnings(data: dict[str, Any]) -> list[Problem]:
    """An allowed flavor without a price in an AZ with a cost cap never bursts there (the cap
    cannot be checked without its price): allowed, but rarely meant. Only flavors the allow
    list names literally can be checked; a pattern matches names no file lists."""
    flavors = _obj(data.get("flavors"))
    allow, deny = flavors.get("allow", []), flavors.get("deny", [])
    out: list[Problem] = []
    for i, az in enumerate(_objs(data.get("public_azs"))):
        if not _cost_capped(data, az["name"], az):
            continue
        for j, flavor in enumerate(allow):
            if any(c in flavor for c in "*?[") or flavor in az.get("prices", {}):
                continue
            if any(fnmatchcase(flavor, d) for d in deny):
                continue
            why = f"allowed flavor ($.flavors.allow[{j}]) has no price: with a cost cap "
            why += f"(hourly_cost) it never bursts to {az['name']}"
            out.append(Problem(f"$.public_azs[{i}].prices.{flavor}", None, why))
    return out


def _thresholds(raw: Mapping[str, Any]) -> Thresholds:
    return Thresholds(**{k: v for k, v in raw.items() if k in METRICS})


def _caps(raw: Mapping[str, Any]) -> dict[str, Any]:
    """An object's keys without its `$comment` (caps, prices)."""
    return {k: v for k, v in raw.items() if k != "$comment"}


def _public_az(raw: Mapping[str, Any]) -> PublicAz:
    return PublicAz(
        name=raw["name"],
        provider=raw["provider"],
        priority=raw.get("priority", 100),
        caps=Caps(**_caps(raw.get("caps", {}))),
        prices=_caps(raw.get("prices", {})),
    )


def _seconds(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 3600 + int(minutes) * 60


def _window(base: Policy, data: dict[str, Any], raw: Mapping[str, Any]) -> Window:
    caps = raw.get("caps", {})
    azs = tuple(
        replace(az, caps=replace(az.caps, **_caps(caps[az.name]))) if az.name in caps else az
        for az in base.public_azs
    )
    policy = replace(
        base,
        burst=_thresholds({**data["burst"], **raw.get("burst", {})}),
        return_=_thresholds({**data["return"], **raw.get("return", {})}),
        public_azs=azs,
    )
    days = frozenset(DAYS.index(d) for d in raw.get("days", DAYS))
    return Window(raw["name"], days, _seconds(raw["from"]), _seconds(raw["to"]), policy)


def _schedule(base: Policy, data: dict[str, Any]) -> Schedule | None:
    raw = data.get("schedule")
    if raw is None:
        return None
    windows = tuple(_window(base, data, w) for w in raw["windows"])
    return Schedule(raw["timezone"], ZoneInfo(raw["timezone"]), windows)


def _build(data: dict[str, Any], source: str) -> Policy:
    base = _build_base(data, source)
    return replace(base, schedule=_schedule(base, data))


def _build_base(data: dict[str, Any], source: str) -> Policy:
    azs = sorted((_public_az(a) for a in data["public_azs"]), key=lambda a: (a.priority, a.name))
    cooldown, flavors = data.get("cooldown", {}), data.get("flavors", {})
    fallback, projects = data.get("fallback", {}), data.get("projects", {})
    return Policy(
        local_az=data["local_az"],
        public_azs=tuple(azs),
        burst=_thresholds(data["burst"]),
        return_=_thresholds(data["return"]),
        return_after_s=cooldown.get("return_after_s", 0.0),
        burst_after_s=cooldown.get("burst_after_s", 0.0),
        allow=tuple(flavors.get("allow", ["*"])),
        deny=tuple(flavors.get("deny", [])),
        projects_allow=tuple(projects.get("allow", ["*"])),
        projects_deny=tuple(projects.get("deny", [])),
        explicit_az=data.get("explicit_az", "honour"),
        capacity_backoff=_backoff(fallback),
        when_public_unavailable=fallback.get("when_public_unavailable", "local"),
        source=source,
        budgets=_budgets(data.get("budgets", {})),
    )


def _backoff(fallback: Mapping[str, Any]) -> Backoff:
    raw = fallback.get("capacity_backoff")
    if raw is not None:
        return Backoff(raw.get("initial_s", Backoff.initial_s), raw.get("max_s", Backoff.max_s))
    if DEPRECATED_BACKOFF in fallback:  # the flat back-off of old files: now the initial one
        initial = fallback[DEPRECATED_BACKOFF]
        return Backoff(initial, max(initial, Backoff.max_s))
    return Backoff()


def _budgets(raw: Mapping[str, Any]) -> Budgets:
    spend, timezone = raw.get("spend", {}), raw.get("timezone", "UTC")
    return Budgets(
        caps=Caps(**_caps(raw.get("caps", {}))),
        day=spend.get("day"),
        month=spend.get("month"),
        warn_at_pct=spend.get("warn_at_pct", 80.0),
        timezone=timezone,
        zone=ZoneInfo(timezone),
    )


def policy_problems(data: object) -> list[Problem]:
    """Every problem of a parsed policy document, in one list: the document's own (NaN,
    duplicate keys), the schema's, and the semantic ones of the parts typed well enough to
    judge. A path already refused for its value is not refused again by the schema."""
    problems = _document_problems(data)
    refused = {p.key for p in problems}
    problems += [p for p in _schema_problems(data) if p.key not in refused]
    if isinstance(data, dict):
        problems += _semantic_problems(data)
    return problems


def parse_policy(data: object, source: str = "<memory>") -> Policy:
    """Validate an already parsed policy document; raise PolicyError listing every problem."""
    problems = policy_problems(data)
    if problems:
        raise PolicyError(source, problems)
    assert isinstance(data, dict)  # the schema says so: "type": "object"
    return replace(_build(data, source), warnings=tuple(_warnings(data)))


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy.json file."""
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise PolicyError(str(p), [Problem("<file>", str(p), str(err))]) from None
    try:
        data = json.loads(text, object_pairs_hook=_object)
    except json.JSONDecodeError as err:
        where = f"line {err.lineno} column {err.colno}"
        raise PolicyError(
            str(p), [Problem("<file>", where, f"not valid JSON: {err.msg}")]
        ) from None
    return parse_policy(data, str(p))
