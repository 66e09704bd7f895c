"""azfed's Horizon plugin against a real receiver, rendered in Horizon's own environment (the
test bed's Horizon virtualenv, its Django and settings; nothing of the bed is started): the
Public cloud tab shows the instance's status checks, the Federation panel lists and charts the
decisions the receiver keeps; and with the receiver down or hanging, each part of the panel
and the tab says so in its place while the page itself still renders (Horizon goes on).

tests/receiver/horizon_pages.py does the rendering and prints it; this module judges it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from testbed.openstack import SOURCE, installed
from tests.receiver.conftest import AGENT, NOW, ReceiverFactory, example, restamp

ROOT = Path(__file__).resolve().parents[2]
UUID = "6f1c7a52-3b1e-4c2a-9d1e-0a5b8e2f4c11"  # report-full's running instance
DOWN = "The azfed receiver cannot answer: "
RENDER_TIMEOUT_S = 120


async def render(receiver_url: str) -> dict[str, Any]:
    """What horizon_pages.py rendered, per receiver (up, closed, silent)."""
    hz_venv = (await asyncio.to_thread(installed))["HZ_VENV"]
    proc = await asyncio.create_subprocess_exec(
        str(hz_venv / "bin" / "python"), "-m", "tests.receiver.horizon_pages", receiver_url, UUID,
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": os.environ.get("HOME", "/root"),
            "PYTHONPATH": f"{ROOT}:{SOURCE}",
            "PYTHONWARNINGS": "ignore",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), RENDER_TIMEOUT_S)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()[-3000:]
    pages: dict[str, Any] = json.loads(out.decode().splitlines()[-1])
    return pages


def decision(at: float, uuid: str, local_pct: float, az: str | None) -> dict[str, Any]:
    return {
        "at": at,
        "instance_uuid": uuid,
        "flavor": "m1.small",
        "az": az,
        "burst": az == "aws-az",
        "rule": "burst_threshold" if az == "aws-az" else "below_threshold",
        "reason": "r",
        "load": {"local": {"memory_used_pct": local_pct}, "public": {}},
    }


@pytest.fixture
async def pages(make_receiver: ReceiverFactory, tmp_path: Path) -> dict[str, Any]:
    """The pages for a receiver that holds the agent's report of UUID (status checks
    impaired) and three decisions of the last hour, the oldest kept from before the filter
    restarted (its state file now holds the two since)."""
    state = tmp_path / "filter-state.json"
    # the panel asks for the last day by Horizon's clock: the decisions are of now
    now = time.time()
    first = decision(now - 3000, "d0", 55.0, "nova")
    state.write_text(json.dumps({"recent": [first]}))
    receiver = await make_receiver(policy_state_file=str(state))
    assert (await receiver.client.get("/v1/decisions")).status == 200  # kept
    since = [decision(now - 2000, "d1", 85.0, "aws-az"), decision(now - 1000, "d2", 60.0, None)]
    state.write_text(json.dumps({"recent": since}))  # the filter restarted
    report = restamp(example(), NOW)
    [inst] = [i for i in report["instances"] if i["instance_uuid"] == UUID]
    inst["status_checks"] = "impaired"
    status, answer, _ = await receiver.post(report)
    assert status == 200, answer
    return await render(str(receiver.client.make_url("")).rstrip("/"))


def test_the_tab_shows_the_remote_instance_and_its_status_checks(pages: dict[str, Any]) -> None:
    """From GET /v1/instances/{id}: the remote id and the checks the agent reported; the usage
    part says in its place that this receiver has no Gnocchi to read it from."""
    tab = pages["up"]["tab"]
    [remote_id] = [i["remote_id"] for i in example()["instances"] if i["instance_uuid"] == UUID]
    assert f'id="azfed-remote-id">{remote_id}<' in tab
    assert 'id="azfed-status-checks" data-status="impaired"' in tab
    assert "impaired (instance or system check failed)" in tab
    assert 'id="azfed-error"' not in tab
    assert "The usage cannot be read:" in tab


def test_the_panel_lists_and_charts_the_kept_decisions(pages: dict[str, Any]) -> None:
    """Every decision of the last day, the one from before the filter's restart too: newest
    first in the table, one dot each on the chart (filled for the burst), and the agent."""
    panel = pages["up"]["panel"]
    assert re.findall(r'<tr data-instance="([^"]+)"', panel) == ["d2", "d1", "d0"]
    assert re.findall(r'<circle [^>]*data-burst="(\d)"', panel) == ["0", "1", "0"]
    assert 'id="azfed-chart-span"' in panel
    assert f'data-agent="{AGENT}"' in panel
    # this receiver has no policy: the explain part says so, the others still show
    assert panel.count(DOWN) == 1
    assert "set [receiver] policy_file" in panel


@pytest.mark.parametrize(
    ("receiver", "why"),
    [("closed", "Connection refused"), ("silent", "timed out")],
)
def test_a_receiver_down_or_hanging_is_said_in_each_part_and_the_page_renders(
    pages: dict[str, Any], receiver: str, why: str
) -> None:
    """The plugin's client turns a refused connection or its own timeout into the message the
    panel shows; the panel renders with that message in each of its three parts (explain,
    decisions, agents) and its flavor form, and the tab with it in place of the report."""
    found = pages[receiver]
    assert found["client"].startswith("the receiver at http://127.0.0.1:")
    assert "does not answer" in found["client"]
    assert why in found["client"]
    panel, tab = found["panel"], found["tab"]
    assert panel.count(DOWN) == 3
    assert 'id="azfed-flavor-form"' in panel
    assert "<tr data-instance=" not in panel
    assert 'id="azfed-error"' in tab
    assert DOWN in tab
    assert "azfed-status-checks" not in tab
