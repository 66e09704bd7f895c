"""`azfed quota` against the bed's real Nova and Keystone, in a project made for the test."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azfed.cli import main
from azfed.nova.quota import QuotaChange, plan
from click.testing import CliRunner

from testbed.openstack import AUTH, OpenStackBed


def test_the_plan_adds_the_allowance_and_keeps_unlimited_quotas_unlimited() -> None:
    got = plan({"instances": 10, "cores": -1, "ram": 51200}, {"instances": 5, "ram_mb": 1024})
    assert got == [
        QuotaChange("instances", 10, 15),
        QuotaChange("cores", -1, -1),
        QuotaChange("ram_mb", 51200, 52224),
    ]


@pytest.fixture
def project(openstack_bed: OpenStackBed) -> Iterator[Any]:
    conn = openstack_bed.connect()
    proj = conn.identity.create_project(name=f"azfed-q-{uuid.uuid4().hex[:8]}", domain_id="default")
    conn.compute.update_quota_set(proj.id, instances=10, cores=20, ram=51200)
    yield proj
    conn.identity.delete_project(proj)
    conn.close()


def os_env() -> dict[str, str]:
    return {
        "OS_AUTH_URL": AUTH["auth_url"],
        "OS_USERNAME": AUTH["username"],
        "OS_PASSWORD": AUTH["password"],
        "OS_PROJECT_NAME": AUTH["project_name"],
        "OS_USER_DOMAIN_NAME": "Default",
        "OS_PROJECT_DOMAIN_NAME": "Default",
        "OS_REGION_NAME": AUTH["region_name"],
    }


def test_azfed_quota_raises_the_project_quotas_in_nova_and_shows_before_and_after(
    project: Any, openstack_bed: OpenStackBed
) -> None:
    runner = CliRunner()
    args = ["quota", project.name, "--instances", "5", "--cores", "8", "--ram-mb", "4096"]

    result = runner.invoke(main, [*args, "--json"], env=os_env())

    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["quotas"] == [
        {"resource": "instances", "before": 10, "after": 15},
        {"resource": "cores", "before": 20, "after": 28},
        {"resource": "ram_mb", "before": 51200, "after": 55296},
    ]
    conn = openstack_bed.connect()
    try:
        qs = conn.compute.get_quota_set(project.id)
    finally:
        conn.close()
    assert (qs.instances, qs.cores, qs.ram) == (15, 28, 55296)

    shown = runner.invoke(main, ["quota", project.name], env=os_env())
    assert shown.exit_code == 0, shown.output
    assert "instances  15      15" in shown.output


def test_azfed_quota_names_a_project_that_does_not_exist(openstack_bed: OpenStackBed) -> None:
    result = CliRunner().invoke(main, ["quota", "no-such-project-xyz"], env=os_env())
    assert result.exit_code == 1
    assert "no-such-project-xyz" in result.output
