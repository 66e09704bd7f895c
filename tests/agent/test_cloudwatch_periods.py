"""CloudWatch periods against moto's server: each is emitted once, when complete, with the
statistic CloudWatch gives for the whole period (Average for percentages, Sum for counters).

Datapoints go in through PutMetricData and come back through GetMetricData, both over HTTP.
moto (5.2, moto/cloudwatch/models.py `get_metric_data`) steps periods from StartTime and
computes each period's statistic over every datum in [start, start + Period), as CloudWatch
does; the collector aligns StartTime on the period. The collector's clock is set by the test:
the periods sit an hour in the past, where moto keeps them whatever the real time is.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from azfed.agent.collect.ec2 import Ec2Collector
from azfed.agent.health import AgentMetrics

from testbed.aws import MotoServer
from tests.agent.aws_metrics import DOCUMENTED
from tests.agent.helpers import agent_config, launch

DELAY = 120  # the publication delay these tests configure
VCPUS = 2  # an m5.large's (launch()'s type), from DescribeInstanceTypes: moto has no CpuOptions


def cpu_ns(percent: float, period: int) -> float:
    """CPU time, ns, of an average utilisation over one period of all the instance's vCPUs."""
    return percent / 100 * VCPUS * period * 1e9


# an hour ago, on a 5-minute (so also a 1-minute) boundary: the period the tests fill
T0 = dt.datetime.fromtimestamp(
    (int(dt.datetime.now(dt.timezone.utc).timestamp()) - 3600) // 300 * 300, dt.timezone.utc
)


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def at(self, seconds: float) -> Clock:
        """Set to `seconds` after T0."""
        self.now = T0 + dt.timedelta(seconds=seconds)
        return self


async def put(cw: Any, iid: str, metric: str, points: list[tuple[float, float]]) -> None:
    """PutMetricData of (seconds after T0, value) points, in AWS's namespace and unit."""
    namespace, unit = DOCUMENTED[metric]
    data = [
        {"MetricName": metric, "Dimensions": [{"Name": "InstanceId", "Value": iid}],
         "Timestamp": T0 + dt.timedelta(seconds=s), "Value": v, "Unit": unit}
        for s, v in points
    ]  # fmt: skip
    await cw.put_metric_data(Namespace=namespace, MetricData=data)


def collector(aws: MotoServer, tmp: Path, meters: list[str], period: int, clock: Clock) -> Any:
    cfg = agent_config(aws, tmp, meters=meters, metrics_period_s=period, publication_delay_s=DELAY)
    assert cfg.aws is not None
    return Ec2Collector(cfg.aws, cfg.collect, AgentMetrics(), clock=clock)


def values(obs: Any) -> list[tuple[str, float, dt.datetime]]:
    return sorted((s.meter, s.volume, s.timestamp) for s in obs.samples)


@pytest.mark.parametrize("period", [300, 60], ids=["basic", "detailed"])
async def test_a_period_with_several_points_gives_cloudwatchs_average_and_sum(
    aws: MotoServer, ec2: Any, cloudwatch: Any, tmp_path: Path, period: int
) -> None:
    """CPU points 50/60/70 in one period arrive as their Average, 60% (as CPU time: 60% of 2
    vCPUs over the period); NetworkIn 3 x 1000 as its Sum, 3000 (the running total's first
    step), for basic and detailed monitoring."""
    [iid] = await launch(ec2, 1)
    spread = [period * f for f in (0.1, 0.5, 0.9)]
    await put(cloudwatch, iid, "CPUUtilization", list(zip(spread, [50.0, 60.0, 70.0], strict=True)))
    await put(cloudwatch, iid, "NetworkIn", [(s, 1000.0) for s in spread])
    clock = Clock(T0).at(period + DELAY)
    col = collector(aws, tmp_path, ["cpu", "network.incoming.bytes"], period, clock)
    await col.open()
    try:
        obs = await col.collect()
    finally:
        await col.close()
    assert values(obs) == [
        ("cpu", cpu_ns(60.0, period), T0),
        ("network.incoming.bytes", 3000.0, T0),
    ]


@pytest.mark.parametrize("period", [300, 60], ids=["basic", "detailed"])
async def test_an_open_period_is_emitted_only_once_complete_and_then_never_again(
    aws: MotoServer, ec2: Any, cloudwatch: Any, tmp_path: Path, period: int
) -> None:
    """While the period is open, and until the publication delay has passed, nothing of it is
    sent, even as its points arrive; then its whole Average once; later cycles re-read it
    (look-back) without sending it again."""
    [iid] = await launch(ec2, 1)
    clock = Clock(T0)
    col = collector(aws, tmp_path, ["cpu"], period, clock)
    await col.open()
    try:
        await put(cloudwatch, iid, "CPUUtilization", [(1, 50.0)])
        clock.at(period / 2)
        open_ = await col.collect()
        await put(cloudwatch, iid, "CPUUtilization", [(period - 1, 70.0)])
        clock.at(period + DELAY - 1)  # ended, but CloudWatch may still be publishing
        delayed = await col.collect()
        clock.at(period + DELAY)
        complete = await col.collect()
        clock.at(2 * period + DELAY)
        again = await col.collect()
    finally:
        await col.close()
    assert open_.samples == []
    assert delayed.samples == []
    assert values(complete) == [("cpu", cpu_ns(60.0, period), T0)]
    assert again.samples == []


async def test_no_period_is_emitted_twice_across_a_restart_and_totals_carry_on(
    aws: MotoServer, ec2: Any, cloudwatch: Any, tmp_path: Path
) -> None:
    """A new collector restored from the old one's checkpoint sends only the periods completed
    since, and its byte and CPU time counters continue from the old running totals (to Gnocchi
    a restart of the agent is no counter reset)."""
    [iid] = await launch(ec2, 1)
    await put(cloudwatch, iid, "CPUUtilization", [(10, 50.0), (310, 100.0), (610, 25.0)])
    await put(cloudwatch, iid, "NetworkIn", [(10, 1000.0), (200, 1000.0)])  # period 0
    await put(cloudwatch, iid, "NetworkIn", [(310, 500.0)])  # period 1
    await put(cloudwatch, iid, "NetworkIn", [(610, 250.0), (890, 250.0)])  # period 2
    clock = Clock(T0).at(300 + DELAY)
    first = collector(aws, tmp_path, ["network.incoming.bytes", "cpu"], 300, clock)
    await first.open()
    try:
        before = await first.collect()
    finally:
        await first.close()
    checkpoint = first.checkpoint()

    clock.at(900 + DELAY)
    second = collector(aws, tmp_path, ["network.incoming.bytes", "cpu"], 300, clock)
    second.restore(checkpoint)
    await second.open()
    try:
        after = await second.collect()
    finally:
        await second.close()
    step = dt.timedelta(seconds=300)
    assert values(before) == [("cpu", cpu_ns(50, 300), T0), ("network.incoming.bytes", 2000.0, T0)]
    assert values(after) == [
        ("cpu", cpu_ns(150, 300), T0 + step),
        ("cpu", cpu_ns(175, 300), T0 + 2 * step),
        ("network.incoming.bytes", 2500.0, T0 + step),
        ("network.incoming.bytes", 3000.0, T0 + 2 * step),
    ]
