"""Who may burst: projects allowed and denied in policy.json, and the `azfed:burst` scheduler
hint (never | allowed | prefer) as the filter reads it from Nova's RequestSpec. Properties: a
denied project and the hint never never burst, and prefer never passes a cap."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from azfed.errors import PolicyError
from azfed.policy import Flavor, History, Load, PublicUsage, Request, decide, parse_policy
from azfed.policy.decide import BURST_HINTS, HINT
from azfed.policy.engine import PolicyEngine, request_from_spec
from azfed.policy.simulate import TraceError, read_trace, run
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from testbed.policies import Host, local, make_policy, policy_doc

PROJECTS = {"projects": {"allow": ["p-*"], "deny": ["p-lab"]}}
FLAVORS = [Flavor("small", 1, 512), Flavor("big", 4, 4096)]


# --- policy.json --------------------------------------------------------------------------------


def test_projects_default_to_every_project_allowed() -> None:
    policy = make_policy()
    assert (policy.projects_allow, policy.projects_deny) == (("*",), ())
    assert policy.project_may_burst("anything")[0]


@pytest.mark.parametrize(
    ("projects", "key", "reason"),
    [
        ({"allow": "p-*"}, "$.projects.allow", "type:"),
        ({"deny": [""]}, "$.projects.deny[0]", "minLength:"),
        ({"deny": ["a", "a"]}, "$.projects.deny", "uniqueItems:"),
        ({"only": ["a"]}, "$.projects", "additionalProperties:"),
    ],
)
def test_a_bad_projects_entry_is_refused_naming_the_key(
    projects: dict[str, Any], key: str, reason: str
) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(policy_doc(projects=projects))
    [problem] = info.value.problems
    assert problem.key == key
    assert problem.reason.startswith(reason)


# --- reading Nova's RequestSpec -------------------------------------------------------------------


@dataclass
class NovaFlavor:
    name: str = "small"
    vcpus: int = 1
    memory_mb: int = 512


@dataclass
class Spec:
    """The parts of nova.objects.RequestSpec the filter reads; hints stored as Nova stores
    them (a list per hint) and returned as its get_scheduler_hint returns them."""

    flavor: NovaFlavor = field(default_factory=NovaFlavor)
    availability_zone: str | None = None
    instance_uuid: str = "u1"
    project_id: str = "p-1"
    scheduler_hints: dict[str, list[str]] = field(default_factory=dict)

    def get_scheduler_hint(self, name: str, default: object = None) -> object:
        value = self.scheduler_hints.get(name, default)
        return value[0] if isinstance(value, list) and len(value) == 1 else value


@pytest.mark.parametrize(
    ("hints", "expected"),
    [
        ({}, "allowed"),
        ({HINT: ["never"]}, "never"),
        ({HINT: ["prefer"]}, "prefer"),
        ({HINT: ["never", "prefer"]}, "['never', 'prefer']"),
        ({"other": ["x"]}, "allowed"),
    ],
)
def test_the_request_carries_the_project_and_the_hint_from_the_request_spec(
    hints: dict[str, list[str]], expected: str
) -> None:
    request = request_from_spec(Spec(scheduler_hints=hints, availability_zone=""))
    assert request == Request(Flavor("small", 1, 512), None, "u1", "p-1", expected)


def test_two_values_for_the_hint_are_refused_not_guessed() -> None:
    request = request_from_spec(Spec(scheduler_hints={HINT: ["never", "prefer"]}))
    d = decide(request, Load(local(10.0)), make_policy(), History(), 0.0)
    assert (d.az, d.rule) == (None, "burst_hint_invalid")


def test_the_filter_keeps_local_hosts_for_a_never_hint_and_logs_project_and_hint(
    tmp_path: Path,
) -> None:
    doc = policy_doc(burst={"memory_used_pct": 1}, **{"return": {"memory_used_pct": 0}})
    (tmp_path / "p.json").write_text(json.dumps(doc))
    engine = PolicyEngine(tmp_path / "p.json")
    engine.current()
    hosts = [Host("l1", "local"), Host("p1", "aws")]
    with capture_logs() as logs:
        kept, _ = engine.filter(hosts, request_from_spec(Spec(scheduler_hints={HINT: ["never"]})))
        bursting, _ = engine.filter(hosts, request_from_spec(Spec()))
    assert ([h.host for h in kept], [h.host for h in bursting]) == (["l1"], ["p1"])
    assert [(e["rule"], e["project_id"], e["burst_hint"]) for e in logs] == [
        ("burst_hint_never", "p-1", "never"),
        ("burst_threshold_exceeded", "p-1", "allowed"),
    ]


# --- properties ----------------------------------------------------------------------------------

requests = st.lists(
    st.tuples(
        st.sampled_from(FLAVORS),
        st.sampled_from([None, None, None, "aws", "os", "local"]),
        st.floats(0, 100),
        st.sampled_from(["p-1", "p-2", "p-lab", "q-1"]),
        st.sampled_from(BURST_HINTS),
    ),
    min_size=1,
    max_size=80,
)


def _add(usage: PublicUsage, flavor: Flavor, price: float) -> PublicUsage:
    return replace(
        usage,
        instances=usage.instances + 1,
        vcpus=usage.vcpus + flavor.vcpus,
        ram_mb=usage.ram_mb + flavor.ram_mb,
        hourly_cost=usage.hourly_cost + price,
    )


@settings(max_examples=200, deadline=None)
@given(reqs=requests, explicit=st.sampled_from(["honour", "apply-policy"]))
def test_denied_projects_and_never_hints_never_burst_and_prefer_never_passes_a_cap(
    reqs: list[tuple[Flavor, str | None, float, str, str]], explicit: str
) -> None:
    policy = make_policy(explicit_az=explicit, flavors={"allow": ["*"]}, **PROJECTS)
    usage = {az.name: PublicUsage(az.name) for az in policy.public_azs}
    history, now = History(), 0.0
    for flavor, asked, mem, project, hint in reqs:
        now += 7.0
        request = Request(flavor, asked, "", project, hint)
        d = decide(request, Load(local(mem, 1), usage), policy, history, now)
        history = history.after(d, now)
        if d.az not in usage:
            continue
        assert project not in ("p-lab", "q-1"), d
        assert hint != "never", d
        az = policy.public(d.az)
        assert az is not None
        price = az.price(flavor.name)
        usage[d.az] = _add(usage[d.az], flavor, az.max_price if price is None else price)
        caps = az.caps
        u = usage[d.az]
        assert caps.instances is None or u.instances <= caps.instances
        assert caps.vcpus is None or u.vcpus <= caps.vcpus
        assert caps.ram_mb is None or u.ram_mb <= caps.ram_mb
        assert caps.hourly_cost is None or u.hourly_cost <= caps.hourly_cost + 1e-9


@settings(max_examples=200, deadline=None)
@given(mem=st.floats(0, 100), mode=st.sampled_from(["local", "burst"]), since=st.floats(0, 2000))
def test_prefer_never_changes_the_mode_the_load_gives(mem: float, mode: str, since: float) -> None:
    history = History(mode=mode, mode_since=since)  # type: ignore[arg-type]
    load, policy = Load(local(mem, 1)), make_policy()
    plain = decide(Request(FLAVORS[0]), load, policy, history, 2000.0)
    preferring = decide(Request(FLAVORS[0], burst_hint="prefer"), load, policy, history, 2000.0)
    assert preferring.mode == plain.mode


def test_the_simulator_replays_projects_and_hints_from_the_trace(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text(
        "t,memory_used_pct,instances,flavor,project_id,burst_hint\n"
        "0,10,1,small,p-1,prefer\n"
        "60,90,1,small,p-lab,\n"
        "120,90,1,small,p-1,never\n"
        "180,90,1,small,p-1,\n"
    )
    result = run(make_policy(**PROJECTS), read_trace(trace))
    assert [(d.rule, d.az) for d in result.decisions] == [
        ("burst_hint_prefer", "aws"),
        ("project_denied", "local"),
        ("burst_hint_never", "local"),
        ("burst_threshold_exceeded", "aws"),
    ]
    trace.write_text("t,memory_used_pct,instances,burst_hint\n0,10,1,always\n")
    with pytest.raises(TraceError) as info:
        read_trace(trace)
    [p] = info.value.problems
    assert (p.key, p.value, p.reason) == (
        "line 2: burst_hint",
        "always",
        "not one of never, allowed, prefer",
    )
