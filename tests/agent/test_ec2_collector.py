"""The EC2 collector against moto's server over HTTP, with seeded CloudWatch data."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from azfed import wire
from azfed.agent.collect.ec2 import DESCRIBED, MAX_QUERIES, METRICS, Ec2Collector, ec2_facts
from azfed.agent.health import AgentMetrics
from structlog.testing import capture_logs

from testbed.aws import MotoServer
from tests.agent.aws_metrics import DOCUMENTED
from tests.agent.helpers import agent_config, launch, newest_complete, seed, volumes

# What each Ceilometer meter is expected to be read from, in AWS's own metric names: per
# instance (network: CloudWatch has no per-ENI metric), and per EBS volume (disks: AWS/EBS by
# VolumeId, one instance_disk per volume as Ceilometer has one per disk).
PER_INSTANCE = {
    "cpu": "CPUUtilization",
    "network.incoming.bytes": "NetworkIn",
    "network.outgoing.bytes": "NetworkOut",
    "network.incoming.packets": "NetworkPacketsIn",
    "network.outgoing.packets": "NetworkPacketsOut",
}
PER_VOLUME = {
    "disk.device.read.bytes": "VolumeReadBytes",
    "disk.device.write.bytes": "VolumeWriteBytes",
    "disk.device.read.requests": "VolumeReadOps",
    "disk.device.write.requests": "VolumeWriteOps",
}
READS = {**PER_INSTANCE, **PER_VOLUME}
METERS9 = list(READS)
VCPUS, MEMORY_MIB = 2, 8192  # an m5.large, launch()'s type


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


async def seed_all(
    aws: MotoServer, ec2: Any, ids: list[str], meters: list[str], points: int
) -> None:
    """Seed the instance metrics by InstanceId and the volume metrics by VolumeId."""
    inst = [PER_INSTANCE[m] for m in meters if m in PER_INSTANCE]
    vol = [PER_VOLUME[m] for m in meters if m in PER_VOLUME]
    if inst:
        seed(aws, ids, inst, points=points, period_s=300)
    if vol:
        vols = [v for pairs in (await volumes(ec2, ids)).values() for _, v in pairs]
        seed(aws, vols, vol, points=points, period_s=300, dimension="VolumeId")


@pytest.mark.parametrize(("n", "meters"), [(120, METERS9), (40, ["cpu"])])
async def test_one_cycle_makes_exactly_the_minimum_number_of_api_calls(
    aws: MotoServer, ec2: Any, tmp_path: Path, n: int, meters: list[str]
) -> None:
    """N instances x M queries each (one per instance meter, one per disk meter and volume:
    moto gives each instance one) cost ceil(N/1000) describes + ceil(N*M/500) GetMetricData,
    plus one DescribeInstanceTypes for the one new type (moto has no CpuOptions, so vCPUs come
    from the type), counted by moto's own request log; every instance and datapoint comes
    back. (120 x 9 = 1080 queries must be cut into three calls; moto itself would take all in
    one. Several describe pages need > 1000 reservations, too slow for moto: bench/ covers
    10k.)"""
    ids = await launch(ec2, n)
    await seed_all(aws, ec2, list(ids), meters, points=2)
    before = aws.stats()["hits"]
    obs, _ = await collect_once(aws, tmp_path, meters)
    hits = aws.stats()["hits"]
    actions = ("DescribeInstances", "GetMetricData", "DescribeInstanceStatus",
               "DescribeInstanceTypes")  # fmt: skip
    calls = {a: hits.get(a, 0) - before.get(a, 0) for a in actions}
    assert calls == {
        "DescribeInstances": math.ceil(n / 1000),
        "GetMetricData": math.ceil(n * len(meters) / MAX_QUERIES),
        "DescribeInstanceStatus": 0,
        "DescribeInstanceTypes": 1,
    }
    assert {i.remote_id: i.instance_uuid for i in obs.instances} == ids
    assert len(obs.samples) == n * len(meters) * 2


async def test_samples_carry_ceilometer_names_units_resources_and_the_nova_uuid(
    aws: MotoServer, ec2: Any, tmp_path: Path
) -> None:
    """CloudWatch metrics become Ceilometer meters of the instance's Nova UUID: CPU time in
    ns (1% of 2 vCPUs over 300 s), network on the primary ENI, disks per EBS volume under
    the device name; vcpus, memory (the type's MiB) and power.state from the describe."""
    ids = await launch(ec2, 2)
    await seed_all(aws, ec2, list(ids), METERS9, points=1)
    obs, _ = await collect_once(aws, tmp_path, [*METERS9, *DESCRIBED])
    by_meter = {(s.instance_uuid, s.meter): s for s in obs.samples}
    iid, uuid = next(iter(ids.items()))
    raw = (await ec2.describe_instances(InstanceIds=[iid]))["Reservations"][0]["Instances"][0]
    eni = raw["NetworkInterfaces"][0]["NetworkInterfaceId"]
    assert by_meter[(uuid, "cpu")].volume == 1 / 100 * VCPUS * 300 * 1e9
    assert by_meter[(uuid, "network.incoming.bytes")].device == eni
    assert by_meter[(uuid, "disk.device.read.requests")].device == "sda1"
    assert by_meter[(uuid, "disk.device.read.requests")].resource_id == f"{uuid}-sda1"
    assert (by_meter[(uuid, "vcpus")].volume, by_meter[(uuid, "memory")].volume) == (
        VCPUS,
        MEMORY_MIB,
    )
    assert by_meter[(uuid, "power.state")].volume == wire.POWER_STATES["running"]
    for s in obs.samples:
        assert (s.unit, s.type) == wire.METERS[s.meter][:2]
    inst = next(i for i in obs.instances if i.instance_uuid == uuid)
    assert inst.state == "running"
    assert inst.private_ips
    assert inst.instance_type == "m5.large"


def test_vcpus_come_from_the_cpu_options_when_the_describe_has_them() -> None:
    """AWS's DescribeInstances gives CpuOptions (moto does not): cores x threads per core."""
    raw = {"InstanceId": "i-1", "CpuOptions": {"CoreCount": 4, "ThreadsPerCore": 2},
           "InstanceType": "m5.2xlarge", "NetworkInterfaces": [
               {"NetworkInterfaceId": "eni-b", "Attachment": {"DeviceIndex": 1}},
               {"NetworkInterfaceId": "eni-a", "Attachment": {"DeviceIndex": 0}}]}  # fmt: skip
    facts = ec2_facts(raw)
    assert (facts.vcpus, facts.eni) == (8, "eni-a")


async def test_vcpus_and_memory_are_not_reported_for_a_stopped_instance(
    aws: MotoServer, ec2: Any, tmp_path: Path
) -> None:
    """As Ceilometer reads no instance stats of a shut-off domain; power.state says 5."""
    ids = await launch(ec2, 1)
    [iid] = ids
    await ec2.stop_instances(InstanceIds=[iid])
    obs, _ = await collect_once(aws, tmp_path, list(DESCRIBED))
    assert [(s.meter, s.volume) for s in obs.samples] == [("power.state", 5)]


async def test_a_terminated_instance_has_no_described_meters(
    aws: MotoServer, ec2: Any, tmp_path: Path
) -> None:
    """EC2 lists a terminated instance for about an hour; Ceilometer polls no domain that is
    gone, so neither does the collector (its state still reaches Nova)."""
    [iid] = await launch(ec2, 1)
    await ec2.terminate_instances(InstanceIds=[iid])
    obs, _ = await collect_once(aws, tmp_path, list(DESCRIBED))
    assert [i.state for i in obs.instances] == ["terminated"]
    assert obs.samples == []


async def test_a_second_cycle_does_not_repeat_datapoints_already_emitted(
    aws: MotoServer, ec2: Any, tmp_path: Path
) -> None:
    """The look-back window re-reads old periods, but each datapoint is emitted once."""
    ids = await launch(ec2, 3)
    seed(aws, list(ids), ["CPUUtilization"], points=2, period_s=300)
    cfg = agent_config(aws, tmp_path, meters=["cpu"])
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
    obs, _ = await collect_once(aws, tmp_path, ["cpu"], status=True)
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
    obs, _ = await collect_once(aws, tmp_path, ["cpu"])
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
    obs, col = await collect_once(aws, tmp_path, ["cpu", "network.outgoing.bytes"])
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
    """CWAgent's mem_used (bytes) becomes Ceilometer's memory.usage (MiB); an instance whose
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
        (ids[with_agent], "memory.usage", "MiB", 512.0)
    ]
    assert without in {i.remote_id for i in obs.instances}


@pytest.mark.parametrize(
    ("configured", "found"),
    [(["InstanceId"], False), (["InstanceId", "ImageId", "InstanceType"], True)],
)
async def test_memory_is_queried_under_the_dimensions_the_cloudwatch_agent_publishes(
    aws: MotoServer, ec2: Any, tmp_path: Path, configured: list[str], found: bool
) -> None:
    """The CloudWatch agent's usual append_dimensions publish mem_used under ImageId,
    InstanceId and InstanceType together, which a query by InstanceId alone never matches;
    `[collect] cwagent_dimensions` names the set, filled from the describe."""
    [iid] = await launch(ec2, 1)
    dims = {"InstanceId": iid, "ImageId": "ami-760aaa0f", "InstanceType": "m5.large"}
    namespace, unit = DOCUMENTED["mem_used"]
    aws.seed_metrics(
        [{"name": "mem_used", "dims": dims, "ts": newest_complete(300) + 1,
          "value": 256 * 1048576.0, "unit": unit}],
        namespace=namespace,
    )  # fmt: skip
    obs, _ = await collect_once(aws, tmp_path, ["memory.usage"], cwagent_dimensions=configured)
    assert [s.volume for s in obs.samples] == ([256.0] if found else [])


async def test_a_failed_cycle_does_not_mark_its_datapoints_as_sent(
    aws: MotoServer, ec2: Any, tmp_path: Path
) -> None:
    """When one GetMetricData call fails for good, the cycle fails, and the next cycle still
    emits every datapoint, including those the failed cycle had already read."""
    ids = await launch(ec2, 80)
    await seed_all(aws, ec2, list(ids), METERS9, points=1)  # 720 queries: 2 calls
    cfg = agent_config(aws, tmp_path, meters=METERS9)
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
    assert len(again.samples) == 80 * 9


def test_a_checkpoint_of_an_agent_before_contract_2_is_not_restored(
    aws: MotoServer, tmp_path: Path
) -> None:
    """Its series (cpu_util, instance-wide network and disk totals) are not the ones this
    version writes: the new series start afresh rather than continue someone else's total."""
    cfg = agent_config(aws, tmp_path, meters=["network.incoming.bytes"])
    assert cfg.aws is not None
    col = Ec2Collector(cfg.aws, cfg.collect, AgentMetrics())
    old = {"version": 1, "series": {"6f1c7a52-3b1e-4c2a-9d1e-0a5b8e2f4c11|cpu_util": [1.0, None]}}
    col.restore(old)
    assert col.checkpoint() == {"version": 2, "series": {}}


async def test_an_iam_policy_without_describe_instance_types_loses_memory_only(
    aws: MotoServer, ec2: Any, tmp_path: Path
) -> None:
    """An agent upgraded before its IAM policy: DescribeInstanceTypes is refused, the cycle
    still reports the instance and its other meters, says what to allow, and does not ask
    again."""
    [iid] = await launch(ec2, 1)
    before = aws.stats()["hits"].get("DescribeInstanceTypes", 0)
    aws.fault("DescribeInstanceTypes", "UnauthorizedOperation", status=403, times=1)
    cfg = agent_config(aws, tmp_path, meters=["memory", "power.state"])
    assert cfg.aws is not None
    col = Ec2Collector(cfg.aws, cfg.collect, AgentMetrics())
    await col.open()
    try:
        with capture_logs() as logs:
            first = await col.collect()
        second = await col.collect()
    finally:
        await col.close()
    assert [i.remote_id for i in first.instances] == [iid]
    assert [s.meter for s in first.samples] == [s.meter for s in second.samples] == ["power.state"]
    [warning] = [e for e in logs if e["event"] == "instance_types.failed"]
    assert "ec2:DescribeInstanceTypes" in warning["hint"]
    assert aws.stats()["injected"] == {"DescribeInstanceTypes": 1}
    assert aws.stats()["hits"]["DescribeInstanceTypes"] - before == 1  # not asked again
