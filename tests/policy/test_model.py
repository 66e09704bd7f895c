"""policy.json validation: the schema, the semantic checks, and the shipped example."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from azfed.errors import PolicyError
from azfed.policy import load_policy, parse_policy

from testbed.policies import policy_doc

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "packaging" / "examples" / "policy.json"


def problems(doc: Any) -> list[tuple[str, object, str]]:
    with pytest.raises(PolicyError) as info:
        parse_policy(doc, "t")
    return [(p.key, p.value, p.reason) for p in info.value.problems]


def test_the_shipped_example_policy_is_valid_and_orders_public_azs_by_priority() -> None:
    policy = load_policy(EXAMPLE)
    assert policy.local_az == "local-az"
    assert [a.name for a in policy.public_azs] == ["aws-az", "public-os-az"]


def test_the_minimal_policy_gets_documented_defaults() -> None:
    doc = {k: policy_doc()[k] for k in ("version", "local_az", "public_azs", "burst", "return")}
    policy = parse_policy(doc)
    assert (policy.explicit_az, policy.when_public_unavailable) == ("honour", "local")
    assert (policy.allow, policy.deny, policy.return_after_s) == (("*",), (), 0.0)


@pytest.mark.parametrize(
    ("change", "path", "value", "rule"),
    [
        ({"burst": {"memory_used_pct": 180}}, "$.burst.memory_used_pct", 180, "maximum"),
        ({"burst": {}}, "$.burst", {}, "anyOf"),
        ({"explicit_az": "always"}, "$.explicit_az", "always", "enum"),
        ({"local_az": ""}, "$.local_az", "", "pattern"),
        ({"version": 2}, "$.version", 2, "const"),
        ({"cooldown": {"return_after_s": -1}}, "$.cooldown.return_after_s", -1, "minimum"),
        ({"flavors": {"deny": ["a", "a"]}}, "$.flavors.deny", ["a", "a"], "uniqueItems"),
        ({"extra": 1}, "$", None, "additionalProperties"),
    ],
)
def test_a_schema_error_names_the_json_path_the_value_and_the_rule(
    change: dict[str, Any], path: str, value: object, rule: str
) -> None:
    # other problems may follow from the same change (a return key left without its burst key)
    [(_, got, reason)] = [p for p in problems(policy_doc(**change)) if p[0] == path]
    assert reason.startswith(rule + ":")
    if value is not None:
        assert got == value


def test_a_wrong_provider_in_a_public_az_is_named_by_its_index() -> None:
    doc = policy_doc()
    doc["public_azs"][1]["provider"] = "gcp"
    assert problems(doc) == [
        ("$.public_azs[1].provider", "gcp", "enum: 'gcp' is not one of ['ec2', 'openstack']")
    ]


def test_every_error_is_listed_not_only_the_first() -> None:
    doc = policy_doc(version=3, explicit_az="x")
    del doc["burst"]
    keys = {k for k, _, _ in problems(doc)}
    assert keys == {"$", "$.version", "$.explicit_az"}


@pytest.mark.parametrize(
    ("burst", "ret", "reason"),
    [
        ({"instances": 5}, {"instances": 5}, "must be below burst.instances = 5 (hysteresis)"),
        ({"instances": 5}, {"instances": 7}, "must be below burst.instances = 5 (hysteresis)"),
        ({"instances": 5}, {"memory_used_pct": 5}, "no burst threshold to return from"),
    ],
)
def test_return_thresholds_must_sit_below_burst_thresholds(
    burst: dict[str, int], ret: dict[str, int], reason: str
) -> None:
    found = problems(policy_doc(burst=burst, **{"return": ret}))
    assert any(r == reason for _, _, r in found), found


def test_a_burst_threshold_without_a_return_threshold_is_refused() -> None:
    found = problems(policy_doc(burst={"instances": 5, "vcpus_used_pct": 50}))
    assert (
        "$.return.vcpus_used_pct",
        None,
        "required: burst.vcpus_used_pct is set (hysteresis)",
    ) in found


def test_public_az_names_are_unique_and_differ_from_the_local_az() -> None:
    doc = policy_doc()
    doc["public_azs"][1]["name"] = "aws"
    doc["public_azs"].append({"name": "local", "provider": "ec2"})
    found = {(k, r) for k, _, r in problems(doc)}
    assert ("$.public_azs[1].name", "public AZ names must be unique") in found
    assert ("$.public_azs[2].name", "is also the local_az") in found


def test_a_cost_cap_without_prices_is_refused() -> None:
    doc = policy_doc()
    del doc["public_azs"][0]["prices"]
    assert problems(doc) == [
        ("$.public_azs[0].prices", None, "required when caps.hourly_cost is set")
    ]


def test_a_file_that_is_not_json_is_refused_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "p.json"
    bad.write_text('{"version": 1,\n "local_az": }')
    with pytest.raises(PolicyError) as info:
        load_policy(bad)
    [p] = info.value.problems
    assert (p.key, p.value) == ("<file>", "line 2 column 14")
    assert p.reason.startswith("not valid JSON")


def test_a_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="No such file"):
        load_policy(tmp_path / "absent.json")


def test_comments_are_accepted_in_every_object() -> None:
    doc = json.loads(EXAMPLE.read_text())
    assert "$comment" in doc["burst"]
    parse_policy(doc)
