"""A stricter `policy check` (issue 15, item 6): what JSON lets through and a policy must not
(NaN, infinities, a key given twice), thresholds that name no metric, schema and semantic
problems in one run, `$comment` in every object, and warnings that do not fail the check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from azfed.errors import PolicyError
from azfed.policy import load_policy, parse_policy
from azfed.policy.model import schema

from testbed.policies import policy_doc

from .test_cli import run


def problems_of_file(tmp_path: Path, text: str) -> list[tuple[str, object, str]]:
    path = tmp_path / "p.json"
    path.write_text(text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    return [(p.key, p.value, p.reason) for p in info.value.problems]


def with_text(old: str, new: str) -> str:
    text = json.dumps(policy_doc())
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    ("old", "new", "path", "value"),
    [
        ('"memory_used_pct": 80', '"memory_used_pct": NaN', "$.burst.memory_used_pct", "NaN"),
        ('"instances": 10,', '"instances": Infinity,', "$.public_azs[0].caps.instances", "+inf"),
        ('"small": 0.1', '"small": -Infinity', "$.public_azs[0].prices.small", "-inf"),
        ('"return_after_s": 300', '"return_after_s": 1e999', "$.cooldown.return_after_s", "+inf"),
        ('"local_az": "local"', '"local_az": NaN', "$.local_az", "NaN"),
    ],
)
def test_nan_and_infinity_are_refused_once_naming_the_path_and_the_value(
    tmp_path: Path, old: str, new: str, path: str, value: str
) -> None:
    found = problems_of_file(tmp_path, with_text(old, new))
    # once: not again by the schema (a type or a maximum) at the same path
    assert [(k, v) for k, v, _ in found if k == path] == [(path, value)]
    assert next(r for k, _, r in found if k == path).startswith("not a finite number")


def test_nan_is_refused_in_an_already_parsed_document_too() -> None:
    doc = policy_doc(burst={"memory_used_pct": float("nan"), "instances": 10})
    with pytest.raises(PolicyError) as info:
        parse_policy(doc)
    assert [(p.key, p.value) for p in info.value.problems] == [("$.burst.memory_used_pct", "NaN")]


@pytest.mark.parametrize(
    ("old", "new", "path", "values"),
    [
        ('"burst": {', '"burst": {"instances": 3, ', "$.burst.instances", [3, 10]),
        ('"version": 1', '"version": 1, "version": 1', "$.version", [1, 1]),
        ('"name": "os"', '"name": "os", "name": "os2"', "$.public_azs[1].name", ["os", "os2"]),
        (
            '"return": {',
            '"return": {"memory_used_pct": 10}, "return": {',
            "$.return",
            [{"memory_used_pct": 10}, {"memory_used_pct": 60, "instances": 6}],
        ),
    ],
)
def test_a_key_given_twice_is_refused_naming_its_path_and_both_values(
    tmp_path: Path, old: str, new: str, path: str, values: list[Any]
) -> None:
    found = problems_of_file(tmp_path, with_text(old, new))
    assert (path, values, "duplicate key: JSON keeps only the last; keep one") in found


@pytest.mark.parametrize(
    "thresholds",
    [{}, {"$comment": "nothing yet"}],
)
@pytest.mark.parametrize("where", ["burst", "return"])
def test_thresholds_must_name_at_least_one_metric(thresholds: dict[str, Any], where: str) -> None:
    doc = policy_doc(**{where: thresholds})
    with pytest.raises(PolicyError) as info:
        parse_policy(doc)
    reasons = {p.key: p.reason for p in info.value.problems}
    assert reasons[f"$.{where}"] == (
        "anyOf: names none of memory_used_pct, vcpus_used_pct, instances: set at least one"
    )


def test_a_schedule_window_with_an_empty_burst_is_refused() -> None:
    window = {"name": "w", "from": "08:00", "to": "18:00", "burst": {"$comment": "todo"}}
    doc = policy_doc(schedule={"timezone": "UTC", "windows": [window]})
    with pytest.raises(PolicyError) as info:
        parse_policy(doc)
    assert "$.schedule.windows[0].burst" in {p.key for p in info.value.problems}


def test_schema_and_semantic_problems_are_listed_together() -> None:
    doc = policy_doc(version=2, **{"return": {"memory_used_pct": 90, "instances": 6}})
    doc["public_azs"][1]["name"] = "aws"
    with pytest.raises(PolicyError) as info:
        parse_policy(doc)
    assert [(p.key, p.value) for p in info.value.problems] == [
        ("$.version", 2),  # schema
        ("$.return.memory_used_pct", 90),  # semantic: hysteresis
        ("$.public_azs[0].name", "aws"),  # semantic: unique names
        ("$.public_azs[1].name", "aws"),
    ]


@pytest.mark.parametrize(
    "doc",
    [
        policy_doc(burst={"memory_used_pct": "80", "instances": 10}),
        policy_doc(burst=[1, 2], version="x"),
        policy_doc(public_azs={"name": "aws"}),
        policy_doc(public_azs=["aws", {"name": 3, "caps": "none"}]),
        policy_doc(schedule={"timezone": 7, "windows": [3, {"from": 1, "caps": []}]}),
        policy_doc(schedule={"windows": [{"caps": {"aws": "x", "nope": 1}}]}),
        policy_doc(flavors={"allow": "small"}),
        [],
        "policy",
    ],
)
def test_an_ill_typed_document_gets_its_problems_listed_never_a_crash(doc: Any) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(doc)
    assert info.value.problems


def test_a_well_typed_part_is_still_judged_beside_an_ill_typed_one() -> None:
    doc = policy_doc(burst={"memory_used_pct": "80", "instances": 10})
    doc["return"]["instances"] = 12
    with pytest.raises(PolicyError) as info:
        parse_policy(doc)
    assert {p.key for p in info.value.problems} == {
        "$.burst.memory_used_pct",  # schema: a string
        "$.return.instances",  # semantic: 12 is not below 10
    }


def _objects(node: Any, path: str = "#") -> list[str]:
    """The schema's object schemas, by where they are."""
    out: list[str] = []
    if isinstance(node, dict):
        if node.get("type") == "object":
            out.append(path)
        for key, child in node.items():
            out += _objects(child, f"{path}/{key}")
    elif isinstance(node, list):
        for i, child in enumerate(node):
            out += _objects(child, f"{path}/{i}")
    return out


def test_every_object_of_the_schema_accepts_a_comment_as_the_docs_say() -> None:
    def at(path: str) -> dict[str, Any]:
        node: Any = schema()
        for part in path.split("/")[1:]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        return dict(node)

    objects = _objects(schema())
    assert len(objects) >= 10
    missing = [
        p for p in objects if at(p).get("properties", {}).get("$comment") != {"type": "string"}
    ]
    assert missing == []


def test_a_comment_in_prices_is_not_a_flavor() -> None:
    doc = policy_doc()
    doc["public_azs"][0]["prices"]["$comment"] = "USD per hour, on-demand"
    policy = parse_policy(doc)
    assert "$comment" not in policy.public_azs[0].prices
    assert policy.public_azs[0].max_price == 0.4


def test_an_allowed_flavor_without_a_price_where_a_cost_cap_is_set_is_a_warning() -> None:
    doc = policy_doc(flavors={"allow": ["small", "big", "medium", "m1.*"], "deny": ["*.gpu"]})
    policy = parse_policy(doc)
    # aws has a cost cap and no price for medium; os has no cost cap; m1.* is a pattern
    assert [(w.key, w.value) for w in policy.warnings] == [("$.public_azs[0].prices.medium", None)]
    assert "flavors.allow[2]" in policy.warnings[0].reason
    assert "never bursts to aws" in policy.warnings[0].reason


def test_a_denied_flavor_without_a_price_is_no_warning() -> None:
    doc = policy_doc(flavors={"allow": ["small", "medium"], "deny": ["medium"]})
    assert parse_policy(doc).warnings == ()


def test_a_cost_cap_set_by_a_schedule_window_warns_too() -> None:
    doc = policy_doc(flavors={"allow": ["small", "medium"]})
    window = {"name": "day", "from": "08:00", "to": "18:00", "caps": {"os": {"hourly_cost": 1}}}
    doc["schedule"] = {"timezone": "UTC", "windows": [window]}
    keys = [w.key for w in parse_policy(doc).warnings]
    assert keys == ["$.public_azs[0].prices.medium", "$.public_azs[1].prices.medium"]


def test_check_shows_warnings_and_still_passes(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(policy_doc(flavors={"allow": ["small", "medium"]})))
    code, out, _ = run("policy", "check", str(path))
    assert code == 0
    assert "valid" in out
    assert "warning: $.public_azs[0].prices.medium = None: " in out
    code, out, _ = run("policy", "check", "--json", str(path))
    assert code == 0
    doc = json.loads(out)
    assert doc["valid"] is True
    assert doc["warnings"][0]["key"] == "$.public_azs[0].prices.medium"


def test_the_annotated_example_uses_every_key_of_the_schema_and_comments_it() -> None:
    """The example is the operator's reference: every top-level key, every budget and
    schedule key, each section annotated."""
    example = Path(__file__).resolve().parents[2] / "packaging" / "examples" / "policy.json"
    doc = json.loads(example.read_text())
    assert set(doc) == set(schema()["properties"])
    budgets = schema()["$defs"]["budgets"]["properties"]
    assert set(doc["budgets"]) == set(budgets)
    assert set(doc["budgets"]["spend"]) == set(budgets["spend"]["properties"]) - {"$comment"}
    assert {k for k in doc if isinstance(doc[k], dict) and "$comment" not in doc[k]} == set()
    load_policy(example)


def test_a_spend_budget_warns_that_the_filter_needs_the_receiver() -> None:
    policy = parse_policy(policy_doc(budgets={"spend": {"month": 900, "warn_at_pct": 70}}))
    [(key, value, reason)] = [(w.key, w.value, w.reason) for w in policy.warnings]
    assert (key, value) == ("$.budgets.spend", {"month": 900})
    assert "receiver_url" in reason
    assert parse_policy(policy_doc(budgets={"caps": {"instances": 3}})).warnings == ()
