"""The IAM policies: lint-clean (parliament), and exactly the actions the code calls.

The agent's policy covers the agent's modules (collectors, pusher) and the boot-time secret
fetch; the driver's policy covers every other AWS call in `agent/` (the proxy compute host's
driver and whatever else runs on the controller). Both directions are checked: every call the
code makes is allowed, and the policy allows nothing the code does not call. The set of calls is
derived from the source at test time (tests/packaging/awscalls.py), so a new call shows up here.
"""

from __future__ import annotations

import json
import warnings
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
from azfed.clouds import UUID_TAG

from tests.packaging.awscalls import calls_in, calls_in_source, string_constants
from tests.packaging.conftest import ROOT

with warnings.catch_warnings():
    # parliament reads its config.yaml at import without closing it (ResourceWarning)
    warnings.simplefilter("ignore", ResourceWarning)
    from parliament import analyze_policy_string

IAM = ROOT / "packaging" / "iam"
AGENT_SIDE = ("azfed/agent/", "azfed/bootstrap_secret.py")
# what the agent needs beyond its own calls: SSM decrypts a SecureString with the KMS key,
# on the role's behalf, when the parameter uses a customer-managed key
AGENT_IMPLIED = {"kms:Decrypt"}
PLACEHOLDERS = {
    "REGION": "eu-west-1",
    "ACCOUNT_ID": "123456789012",
    "KMS_KEY_ID": "1234abcd-12ab-34cd-56ef-1234567890ab",
    "VPC_ID": "vpc-0123456789abcdef0",
}


def policy_text(name: str) -> str:
    text = (IAM / name).read_text()
    for placeholder, value in PLACEHOLDERS.items():
        text = text.replace(placeholder, value)
    return text


def statements(name: str) -> list[dict[str, Any]]:
    stmts: list[dict[str, Any]] = json.loads(policy_text(name))["Statement"]
    return stmts


def as_list(v: str | list[str]) -> list[str]:
    return [v] if isinstance(v, str) else v


def allowed_actions(name: str) -> set[str]:
    return {a for s in statements(name) if s["Effect"] == "Allow" for a in as_list(s["Action"])}


def source_files() -> tuple[list[Path], list[Path]]:
    """(agent side, driver side) Python files under agent/."""
    agent, driver = [], []
    for path in sorted((ROOT / "agent" / "azfed").rglob("*.py")):
        rel = path.relative_to(ROOT / "agent").as_posix()
        (agent if rel.startswith(AGENT_SIDE) else driver).append(path)
    return agent, driver


def driver_implied(driver_files: list[Path]) -> set[str]:
    """Permissions a call needs beyond its own action, from the parameters the code passes."""
    consts = string_constants(driver_files)
    implied = set()
    if "TagSpecifications" in consts:
        implied.add("ec2:CreateTags")  # tag-on-create is authorised as CreateTags
    if "IamInstanceProfile" in consts:
        implied.add("iam:PassRole")
    return implied


def compare(policy: str, files: list[Path], implied: set[str]) -> None:
    allowed = allowed_actions(policy)
    calls = calls_in(files)
    not_allowed = {" or ".join(sorted(c)): where for c, where in calls.items() if not c & allowed}
    assert not not_allowed, f"{policy} does not allow calls the code makes: {not_allowed}"
    called = {a for c in calls for a in c} | implied
    unused = allowed - called
    assert not unused, f"{policy} allows actions no code calls (remove them): {sorted(unused)}"


def test_agent_policy_allows_exactly_the_calls_the_agent_makes() -> None:
    agent_files, _ = source_files()
    compare("agent-policy.json", agent_files, AGENT_IMPLIED)


def test_driver_policy_allows_exactly_the_calls_the_driver_side_makes() -> None:
    _, driver_files = source_files()
    compare("driver-policy.json", driver_files, driver_implied(driver_files))


def test_agent_policy_only_reads() -> None:
    writes = {
        a
        for a in allowed_actions("agent-policy.json") - AGENT_IMPLIED
        if not a.split(":")[1].startswith(("Describe", "Get", "List"))
    }
    assert not writes


def test_driver_policy_scopes_instances_to_the_azfed_tag_the_code_sets() -> None:
    text = policy_text("driver-policy.json")
    assert f"aws:RequestTag/{UUID_TAG}" in text
    assert f"aws:ResourceTag/{UUID_TAG}" in text


def test_every_placeholder_in_the_policies_is_documented() -> None:
    install = (ROOT / "docs" / "install.md").read_text()
    for placeholder in PLACEHOLDERS:
        assert placeholder in install


# actions whose resource types the policies split over several statements, on purpose
SPLIT_ACTIONS = frozenset({"ec2:RunInstances", "ec2:CreateImage"})


def _covered_by_split_statements(finding: Any, policy: str) -> bool:
    """Parliament's known false positive (its issue #3, AWS's own documented example).

    It wants every resource type of ec2:RunInstances (and ec2:CreateImage) in each statement,
    while AWS's pattern splits them so that the tag and IMDSv2 conditions apply to the resource
    types they are about (the instance snapshotted must carry azfed's tag; the image made
    must be given it). Accept the finding only if the action's statements together cover
    every format.
    """
    if finding.issue != "RESOURCE_MISMATCH":
        return False
    for needed in finding.detail:
        if needed["action"] not in SPLIT_ACTIONS:
            return False
        resources = [
            r
            for s in statements(policy)
            if needed["action"] in as_list(s["Action"])
            for r in as_list(s["Resource"])
        ]
        if not any(fnmatchcase(r, needed["required_format"]) for r in resources):
            return False
    return True


@pytest.mark.parametrize("policy", ["agent-policy.json", "driver-policy.json"])
def test_policy_passes_parliament_with_no_findings(policy: str) -> None:
    result = analyze_policy_string(policy_text(policy), include_community_auditors=True)
    findings = [
        (f.issue, f.detail, f.location)
        for f in result.findings
        if not _covered_by_split_statements(f, policy)
    ]
    assert findings == []


def test_parliament_would_flag_a_wildcard_policy() -> None:
    """The linter above does report problems: an over-broad policy is not let through."""
    bad = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:Run*",'
    bad += ' "Resource": "arn:aws:s3:::bucket"}]}'
    assert analyze_policy_string(bad, include_community_auditors=True).findings


def test_scanner_sees_method_calls_dispatched_names_and_waiters() -> None:
    """The source scan finds all three shapes the code uses to reach AWS."""
    source = """
async def f(ec2, cw, helper):
    await ec2.describe_instance_status(InstanceIds=[])
    await helper._call("terminate_instances", "i-1")
    await ec2.get_waiter("instance_stopped").wait()
    cw.get_paginator("get_metric_data")
    print("describe_instances is not a call when it is only part of a message")
"""
    found = {a for c in calls_in_source(source) for a in c}
    assert found == {
        "ec2:DescribeInstanceStatus",
        "ec2:TerminateInstances",
        "ec2:DescribeInstances",  # the instance_stopped waiter polls DescribeInstances
        "cloudwatch:GetMetricData",
    }
