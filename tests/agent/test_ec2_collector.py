"""The EC2 collector against moto's server over HTTP, with seeded CloudWatch data."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from azfed.agent.collect.ec2 import MAX_QUERIES, METRICS, Ec2Collector
from azfed.agent.health import AgentMetrics

from testbed.aws import MotoServer
from tests.agent.aws_metrics import DOCUMENTED
from tests.agent.helpers import agent_config, launch, newest_complete, seed

# What each Ceilometer meter is expected to be read from, in AWS's own metric names (disks:
# the EBS metrics, since on Nitro instances Disk* counts instance-store volumes only).
READS = {
    "cpu_util": "CPUUtilization",
    "network.incoming.bytes": "NetworkIn",
    "network.outgoing.bytes": "NetworkOut",
    "disk.read.bytes": "EBSReadBytes",
    "disk.write.bytes": "EBSWriteBytes",
    "disk.read.requests": "EBSReadOps",
    "disk.write.requests": "EBSWriteOps",
}
METERS7 = list(READS)


def test_every_cloudwatch_metric_the_collector_reads_is_one_aws_documents() -> None:
    """A metric name CloudWatch does not publish would make a meter silently empty."""
    assert {m: (s.namespace, s.metric) for m, s in METRICS.items()} == {
        **{m: (DOCUMENTED[name][0], name) for m, name in READS.items()},
        "memory.usage": ("CWAgent", "mem_used"),
    }


async def collect_once(aws: MotoServer, tmp: Path, meters: list[str], **kw: Any) -> Any:
    cfg = agent_config(aws, tmp, meters=meters, **kw)
    assert cfg.aws is not None
    col = Ec2Collector(cfg.aws, cfg.collect, AgentMetrics())
    await col.open()
    try:
        return await col.collect(), col
    finally:
        await col.close()


@pytest.mark.parametrize(("n", "meters"), [(120, METERS7), (40, ["cpu_util"])])
async def test_one_cycle_makes_exactly_the_minimum_number_of_api_calls(
    aws: MotoServer, ec2: Any, tmp_path: Path, n: int, meters: list[str]
) -> None:
    """N instances x M meters cost ceil(N/1000) describes + ceil(N*M/500) GetMetricData,
    counted by moto's own request log, and every instance and datapoint comes back.
    (120 x 7 = 840 queries must be cut into two calls; moto itself would take all 840 in one.
    Several describe pages need > 1000 reservations, too slow for moto: bench/ covers 10k.)"""
    ids = await launch(ec2, n)
    seed(aws, list(ids), [READS[m] for m in meters], points=2, period_s=300)
    before = aws.stats()["hits"]
    obs, _ = await collect_once(aws, tmp_path, meters)
    hits = aws.stats()["hits"]
    actions = ("DescribeInstances", "GetMetricData", "DescribeInstanceStatus")
    calls = {a: hits.get(a, 0) - before.get(a, 0) for a in actions}
    assert calls == {
        "DescribeInstances": math.ceil(n / 1000),
        "GetMetricData": math.ceil(n * len(meters) / MAX_QUERIES),
        "DescribeInstanceStatus": 0,
    }
    assert {i.remote_id: i.instance_uuid for i in obs.instances} == ids
    assert len(obs.samples) == n * len(meters) * 2


async def test_samples_carry_ceilometer_names_units_and_the_nova_uuid(
    aws: MotoServer, ec2: Any, tmp_path: Path
) -> None:
    """CloudWatch metrics are renamed to Ceilometer meters, keyed by the instance's Nova UUID."""
    ids = await launch(ec2, 2)
    seed(aws, list(ids), list(READS.values()), points=1, period_s=300)
    obs, _ = await collect_once(aws, tmp_path, METERS7)
    by_meter = {(s.resource_id, s.meter): s for s in obs.samples}
    uuid = next(iter(ids.values()))
    assert by_meter[(uuid, "cpu_util")].unit == "%"
    assert by_meter[(uuid, "network.incoming.bytes")].unit == "B"
    assert by_meter[(uuid, "disk.read.requests")].unit == "request"
    assert by_meter[(uuid, "cpu_util")].volume == 1.0
    inst = next(i for i in obs.instances if i.instance_uuid == uuid)
    assert inst.state == "running"
    assert inst.private_ips
    assert inst.instance_type == "m5.large"


async def test_a_second_cycle_does_not_repeat_datapoints_already_emitted(
    aws: MotoServer, ec2: Any, tmp_path: Path
) -> None:
    """The look-back window re-reads old periods, but each datapoint is emitted once."""
    ids = await launch(ec2, 3)
    seed(aws, list(ids), ["CPUUtilization"], points=2, period_s=300)
    cfg = agent_config(aws, tmp_path, meters=["cpu_util"])
    assert cfg.aws is not None
    col = Ec2Collector(cfg.aws, cfg.collect, AgentMetrics())
    await col.open()
    try:
        first = await col.collect()
        second = await col.collect()
    finally:
        await col.close()
    assert len(first.samples) == 6
    assert second.samples == []
    assert len(second.instances) == 3


async def test_status_checks_are_joined_onto_running_instances(
    aws: MotoServer, ec2: Any, tmp_path: Path
) -> None:
    """DescribeInstanceStatus answers are folded into each running instance's record."""
    ids = await launch(ec2, 3)
    stopped = next(iter(ids))
    await ec2.stop_instances(InstanceIds=[stopped])
    before = aws.stats()["hits"].get("DescribeInstanceStatus", 0)
    obs, _ = await collect_once(aws, tmp_path, ["cpu_util"], status=True)
    # ceil(running / 1000) pages: one here
    assert aws.stats()["hits"]["DescribeInstanceStatus"] - before == 1
    states = {i.remote_id: (i.state, i.status_checks) for i in obs.instances}
    assert states[stopped] == ("stopped", None)
    assert {v for k, v in states.items() if k != stopped} == {("running", "ok")}


async def test_untagged_instances_and_bad_tags_are_not_reported(
    aws: MotoServer, ec2: Any, tmp_path: Path
) -> None:
    """Only instances whose azfed tag holds a Nova UUID are federated ones."""
    ids = await launch(ec2, 1)
    await ec2.run_instances(ImageId="ami-760aaa0f", MinCount=1, MaxCount=1)
    bad = (await ec2.run_instances(ImageId="ami-760aaa0f", MinCount=1, MaxCount=1))["Instances"][0]
    await ec2.create_tags(
        Resources=[bad["InstanceId"]], Tags=[{"Key": "azfed:instance-uuid", "Value": "not-a-uuid"}]
    )
    obs, _ = await collect_once(aws, tmp_path, ["cpu_util"])
    assert sorted(i.remote_id for i in obs.instances) == list(ids)


async def test_throttling_slows_the_cycle_but_loses_nothing(
    aws: MotoServer, ec2: Any, tmp_path: Path
) -> None:
    """Injected RequestLimitExceeded / Throttling answers are retried and counted; every
    instance and sample still arrives."""
    ids = await launch(ec2, 100)
    seed(aws, list(ids), ["CPUUtilization", "NetworkOut"], points=1, period_s=300)
    aws.fault("DescribeInstances", "RequestLimitExceeded", status=503, times=2)
    aws.fault("GetMetricData", "Throttling", status=400, times=2)
    obs, col = await collect_once(aws, tmp_path, ["cpu_util", "network.outgoing.bytes"])
    assert len(obs.instances) == 100
    assert len(obs.samples) == 200
    value = col.metrics.registry.get_sample_value
    name = "azfed_agent_api_throttles_total"
    assert value(name, {"api": "ec2", "action": "DescribeInstances"}) == 2
    assert value(name, {"api": "cloudwatch", "action": "GetMetricData"}) == 2
    assert aws.stats()["injected"] == {"DescribeInstances": 2, "GetMetricData": 2}


async def test_memory_comes_from_the_cloudwatch_agent_in_megabytes(
    aws: MotoServer, ec2: Any, tmp_path: Path
) -> None:
    """CWAgent's mem_used (bytes) becomes Ceilometer's memory.usage (MB); an instance whose
    CloudWatch agent publishes nothing simply has no memory sample."""
    ids = await launch(ec2, 2)
    with_agent, without = list(ids)
    now = newest_complete(300)
    namespace, unit = DOCUMENTED["mem_used"]
    aws.seed_metrics(
        [{"name": "mem_used", "dims": {"InstanceId": with_agent}, "ts": now + 1,
          "value": 512 * 1048576.0, "unit": unit}],
        namespace=namespace,
    )  # fmt: skip
    obs, _ = await collect_once(aws, tmp_path, ["memory.usage"])
    assert [(s.resource_id, s.meter, s.unit, s.volume) for s in obs.samples] == [
        (ids[with_agent], "memory.usage", "MB", 512.0)
    ]
    assert without in {i.remote_id for i in obs.instances}


async def test_a_failed_cycle_does_not_mark_its_datapoints_as_sent(
    aws: MotoServer, ec2: Any, tmp_path: Path
) -> None:
    """When one GetMetricData call fails for good, the cycle fails, and the next cycle still
    emits every datapoint, including those the failed cycle had already read."""
    ids = await launch(ec2, 80)
    seed(aws, list(ids), list(READS.values()), points=1, period_s=300)  # 560 queries: 2 calls
    cfg = agent_config(aws, tmp_path, meters=METERS7)
    assert cfg.aws is not None
    col = Ec2Collector(cfg.aws, cfg.collect.model_copy(update={"concurrency": 1}), AgentMetrics())
    await col.open()
    try:
        # the first call goes through (a latency-only rule), the second fails for good
        aws.fault("GetMetricData", delay_s=0.01, times=1)
        aws.fault("GetMetricData", "InvalidParameterValue", status=400, times=1)
        # an ExceptionGroup (3.11+; ruff targets 3.10, hence the base class)
        with pytest.raises(Exception, match="TaskGroup"):
            await col.collect()
        assert aws.stats()["injected"] == {"GetMetricData": 1}
        again = await col.collect()
    finally:
        await col.close()
    assert len(again.samples) == 80 * 7
