"""Burst VMs in the local dashboard, seen in a real browser (issue 14): the bed's Horizon (served
by gunicorn, its static files collected at install) with azfed's plugin (agent/azfed/dashboard),
Debian's headless Chromium driven by Selenium, and the federation of the other e2e tests
(azfed's driver and filter in the real Nova, moto as the AWS VPC, the receiver and the agent).
Each test keeps a screenshot in its tmp_path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from testbed.browser import chromium, dashboard_url, login
from testbed.demo import AGENT_ID
from tests.e2e.federation import Federation, eventually

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def servers(federation: Federation, mirrored_network: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A local and a burst VM, each in the AZ asked for, the burst one on the Neutron network
    that mirrors the VPC subnet; deleted afterwards, so the local load the other e2e modules
    start from is the bed's own."""
    on_vpc = [{"uuid": mirrored_network["network_id"]}]
    booted = {
        "local-az": federation.boot("dash-local", availability_zone="local-az"),
        "aws-az": federation.boot("dash-burst", availability_zone="aws-az", networks=on_vpc),
    }
    yield booted
    gone = [federation.servers.pop(name) for name in ("dash-local", "dash-burst")]
    for server in gone:  # both deletes in flight at once
        federation.conn.compute.delete_server(server)
    for server in gone:
        federation.conn.compute.wait_for_delete(server, wait=120)


@pytest.fixture(scope="module")
def session() -> Iterator[Any]:
    """One browser logged in for the module (a Chromium start and a login cost seconds)."""
    with chromium(1400, 1900) as driver:  # tall: a screenshot shows a whole panel
        login(driver, dashboard_url())
        yield driver


@pytest.fixture
def browser(session: Any, tmp_path: Path) -> Iterator[Any]:
    """The logged-in browser; the last page a test leaves is kept as a screenshot in its
    tmp_path."""
    try:
        yield session
    finally:
        session.save_screenshot(str(tmp_path / "screenshot.png"))


def instance_rows(driver: Any) -> dict[str, str]:
    """The Project > Compute > Instances table's rows: the text of each, by server id."""
    from selenium.webdriver.common.by import By

    driver.get(f"{dashboard_url()}/project/instances/")
    rows = driver.find_elements(By.CSS_SELECTOR, "table#instances tbody tr[data-object-id]")
    return {r.get_attribute("data-object-id"): r.text for r in rows}


def test_the_instances_page_lists_the_burst_vm_in_aws_az_beside_the_local_one(
    browser: Any, servers: dict[str, Any], federation: Federation
) -> None:
    """Both VMs are listed, each in its AZ and Active; the burst VM's row shows the address
    Neutron gave its port, which is its EC2 instance's private address."""
    rows = instance_rows(browser)
    for az, server in servers.items():
        assert server.id in rows, f"{server.name} not on the Instances page: {sorted(rows)}"
        assert server.name in rows[server.id]
        assert az in rows[server.id], rows[server.id]
        assert "Active" in rows[server.id]
    burst = servers["aws-az"]
    [instance] = federation.ec2_instances_for(burst.id)
    [port] = federation.conn.network.ports(device_id=burst.id)
    assert port.fixed_ips[0]["ip_address"] == instance["PrivateIpAddress"]
    assert instance["PrivateIpAddress"] in rows[burst.id], rows[burst.id]


def row_action(driver: Any, server_id: str, action: str, *, confirm: bool) -> None:
    """Run a row's action from its menu; a danger action (Shut Off) is confirmed in the
    dialog Horizon opens first, the others (Start) are sent at once."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 30)
    row = driver.find_element(By.CSS_SELECTOR, f"tr[data-object-id='{server_id}']")
    row.find_element(By.CSS_SELECTOR, ".dropdown-toggle").click()
    button = row.find_element(By.CSS_SELECTOR, f"[id$='__action_{action}']")
    wait.until(ec.element_to_be_clickable(button)).click()
    if confirm:
        dialog = (By.CSS_SELECTOR, ".modal-footer .btn-danger, .modal-footer .btn-primary")
        wait.until(ec.element_to_be_clickable(dialog)).click()
    wait.until(ec.staleness_of(row))  # the table is drawn again once Horizon has sent it


def test_stop_and_start_a_burst_vm_from_its_row_and_ec2_follows(
    browser: Any, servers: dict[str, Any], federation: Federation
) -> None:
    burst = servers["aws-az"]

    def nova_reaches(status: str) -> None:
        # a fresh copy: wait_for_server returns at once when the object it is given already
        # says `status`, and the fixture's copy says ACTIVE from the boot
        fresh = federation.conn.compute.get_server(burst.id)
        federation.conn.compute.wait_for_server(fresh, status=status, wait=120, interval=0.5)

    def ec2_state(want: str) -> str | None:
        [instance] = federation.ec2_instances_for(burst.id)
        state: str = instance["State"]["Name"]
        return state if state == want else None

    instance_rows(browser)
    row_action(browser, burst.id, "stop", confirm=True)
    eventually(lambda: ec2_state("stopped"), "the EC2 instance stopped", timeout=120)
    nova_reaches("SHUTOFF")
    assert "Shutoff" in instance_rows(browser)[burst.id]

    row_action(browser, burst.id, "start", confirm=False)
    eventually(lambda: ec2_state("running"), "the EC2 instance running again", timeout=120)
    nova_reaches("ACTIVE")
    assert "Active" in instance_rows(browser)[burst.id]


def explain(federation: Federation, flavor: str) -> dict[str, Any]:
    """`azfed policy explain --json` for the demo's policy and filter state, as an operator runs
    it beside the dashboard."""
    home = federation.demo.home
    out = subprocess.run(
        [str(Path(sys.executable).parent / "azfed"), "policy", "explain", "--json",
         "--policy", str(home / "policy.json"), "--state-file", str(home / "filter-state.json"),
         "--flavor", flavor],
        capture_output=True, text=True, check=True, timeout=120,
        env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(home / "clouds.yaml"), "OS_CLOUD": "local"},
    )  # fmt: skip
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def panel(driver: Any, flavor: str) -> dict[str, Any]:
    driver.get(f"{dashboard_url()}/admin/federation/?flavor={flavor}")
    ids = ("azfed-mode-value", "azfed-next-az", "azfed-next-rule")
    shown: dict[str, Any] = {i: driver.find_element(By.ID, i).text for i in ids}
    row = driver.find_element(By.CSS_SELECTOR, "#azfed-local tr[data-metric='memory_used_pct']")
    shown["memory_used_pct"] = float(row.find_element(By.CSS_SELECTOR, ".azfed-value").text)
    shown["public_azs"] = [
        td.text for td in driver.find_elements(By.CSS_SELECTOR, "#azfed-public td.azfed-az")
    ]
    return shown


def test_the_federation_panel_shows_what_azfed_policy_explain_says(
    browser: Any, servers: dict[str, Any], federation: Federation
) -> None:
    """The same moment through both: the mode, where the next m1.small boot goes and by which
    rule, and the local memory use the rule compared."""
    shown = panel(browser, "m1.small")
    doc = explain(federation, "m1.small")
    assert shown == {
        "azfed-mode-value": doc["mode"],
        "azfed-next-az": doc["next_boot"]["az"] or "refused",
        "azfed-next-rule": doc["next_boot"]["rule"],
        "memory_used_pct": round(doc["local"]["memory_used_pct"], 2),
        "public_azs": [f"{az['az']} ({az['provider']})" for az in doc["public"]],
    }


def test_the_federation_panel_lists_the_filters_decisions_and_the_agents(
    browser: Any, servers: dict[str, Any], federation: Federation
) -> None:
    """The recent decisions as the filter recorded them (its state file), newest first, a dot
    per decision of the last day on the chart, and the demo's agent with its last report."""
    browser.get(f"{dashboard_url()}/admin/federation/?flavor=m1.small")
    state = json.loads((federation.demo.home / "filter-state.json").read_text())
    want = [
        (d["instance_uuid"], d["az"] or "refused", d["rule"]) for d in reversed(state["recent"])
    ][:20]
    rows = browser.find_elements(By.CSS_SELECTOR, "#azfed-decisions tr[data-instance]")
    shown = [
        (
            r.get_attribute("data-instance"),
            r.find_element(By.CSS_SELECTOR, ".azfed-decision-az").text,
            r.find_element(By.CSS_SELECTOR, ".azfed-decision-rule").text,
        )
        for r in rows
    ]
    assert shown == want
    assert (servers["aws-az"].id, "aws-az", "explicit_az_honoured") in shown
    # the chart has every decision of the last day (the table only the newest 20)
    day = [d for d in state["recent"] if d["at"] >= time.time() - 86400]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#azfed-chart circle")) == len(day)

    def agents_listed() -> list[str] | None:
        # the agent's first report may still be on its way when the module starts
        browser.get(f"{dashboard_url()}/admin/federation/?flavor=m1.small")
        agents = browser.find_elements(By.CSS_SELECTOR, "#azfed-agents tr[data-agent]")
        return [a.get_attribute("data-agent") for a in agents] or None

    assert eventually(agents_listed, "the agent listed on the panel", 90) == [AGENT_ID]


def test_the_public_cloud_tab_shows_the_ec2_instance(
    browser: Any, servers: dict[str, Any], federation: Federation
) -> None:
    """On the burst VM's page, the Public cloud tab shows what the agent reported: its EC2
    instance id and state; a local VM's says no agent reports it."""
    burst = servers["aws-az"]
    [instance] = federation.ec2_instances_for(burst.id)
    tab = "?tab=instance_details__azfed_public_cloud"

    def remote_id() -> str | None:
        browser.get(f"{dashboard_url()}/project/instances/{burst.id}/{tab}")
        found = browser.find_elements(By.ID, "azfed-remote-id")
        return found[0].get_attribute("textContent") if found else None

    assert (
        eventually(remote_id, "the agent's report in the tab", timeout=90)
        == (instance["InstanceId"])
    )

    def state_in_tab() -> str | None:
        # the report the receiver holds may predate the last stop and start (the previous
        # test's): it shows EC2's state once the agent's next cycle has reported it
        browser.get(f"{dashboard_url()}/project/instances/{burst.id}/{tab}")
        state = browser.find_element(By.ID, "azfed-remote-state").get_attribute("textContent")
        return state if state == instance["State"]["Name"] else None

    eventually(state_in_tab, f"the remote state {instance['State']['Name']} in the tab", 90)

    # its latest usage: CloudWatch's datapoints, through the agent and the receiver, as the
    # newest `cpu` value Gnocchi holds
    federation.demo.seed_usage({burst.id: instance})

    def newest_cpu() -> float | None:
        rows = federation.cpu_measures(burst.id)
        finest = min((r[1] for r in rows), default=None)
        return float([r for r in rows if r[1] == finest][-1][2]) if rows else None

    def cpu_in_tab() -> float | None:
        browser.get(f"{dashboard_url()}/project/instances/{burst.id}/{tab}")
        rows = browser.find_elements(By.CSS_SELECTOR, "#azfed-usage tr[data-meter='cpu']")
        shown = float(rows[0].get_attribute("data-value")) if rows else None
        return shown if shown is not None and shown == newest_cpu() else None

    eventually(cpu_in_tab, "the newest cpu value in the tab, as Gnocchi has it", timeout=120)
    browser.get(f"{dashboard_url()}/project/instances/{servers['local-az'].id}/{tab}")
    assert browser.find_elements(By.ID, "azfed-no-report")
