"""EC2 collector: every federated instance by tag, its state, status checks and usage.

The fewest calls AWS allows per cycle: ceil(N/1000) DescribeInstances pages (MaxResults=1000,
filtered on the tag key), ceil(N*M/500) GetMetricData calls (500 queries is the API's cap, and
moto does not enforce it, so we do), and ceil(N_running/1000) DescribeInstanceStatus pages when
status checks are on. Metric queries start as soon as a page of instances arrives, and are cut
into full 500-query calls across pages, so a slow describe does not delay them all.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from azfed.agent.collect import botomodels
from azfed.agent.collect.awsfast import (
    EncodedQueries,
    FastParserFactory,
    encode_metric_queries,
    register_fast_paths,
)
from azfed.agent.collect.gate import ApiGate
from azfed.agent.collect.sample import Emit, Instance, Observation, Sample, sample, whole_cycle
from azfed.agent.health import AgentMetrics
from azfed.aws import THROTTLE_CODES
from azfed.clouds import UUID_TAG
from azfed.config import AwsSection, AzfedConfig, CollectSection
from azfed.wire import METERS, POWER_STATES, STATES, Meter, State, StatusChecks, is_uuid

log = structlog.get_logger(__name__)

DESCRIBE_PAGE = 1000  # DescribeInstances / DescribeInstanceStatus MaxResults cap
MAX_QUERIES = 500  # GetMetricData: at most 500 MetricDataQuery per call


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """Where one Ceilometer meter is read in CloudWatch (its unit and type: `wire.METERS`).
    `per` is what the metric is published per: the instance, or each EBS volume."""

    namespace: str
    metric: str
    stat: str
    scale: float = 1.0
    per: Literal["instance", "volume"] = "instance"
    # CPUUtilization is a percentage of all vCPUs over the period: CPU time is that share of
    # vCPUs x period (Ceilometer's cpu is the guest's CPU time, cumulative, in ns)
    cpu_time: bool = False

    def volume(self, value: float, vcpus: int | None, period_s: int) -> float:
        if self.cpu_time:
            return value / 100.0 * (vcpus or 0) * period_s * 1e9
        return value * self.scale


# Disk meters read AWS/EBS per VolumeId, one instance_disk per volume as Ceilometer has one per
# disk (the AWS/EC2 EBS* metrics are the sum over the instance's volumes; Disk* cover instance
# store only). Network meters: CloudWatch publishes NetworkIn/Out and packets per instance,
# never per ENI, so they go on the instance's primary ENI (device index 0): exact for the one
# ENI burst VMs get, the instance's total when there are more. Memory comes from the CloudWatch
# agent's mem_used (bytes) when it publishes it. Byte, packet and op counts are Sums over each
# period, which the collector adds up into the running totals Ceilometer's cumulative meters
# expect; so is CPU time.
#
# A period is read only once it is complete (it ended `publication_delay_s` ago), so each value
# is CloudWatch's own statistic over the whole period, sent once: an open period's Average is
# the mean of the points so far and its Sum a part of the total, and a running total built from
# parts cannot be corrected later without breaking Gnocchi's rates.
METRICS: dict[Meter, MetricSpec] = {
    "cpu": MetricSpec("AWS/EC2", "CPUUtilization", "Average", cpu_time=True),
    "memory.usage": MetricSpec("CWAgent", "mem_used", "Average", 1 / 1048576),
    "network.incoming.bytes": MetricSpec("AWS/EC2", "NetworkIn", "Sum"),
    "network.outgoing.bytes": MetricSpec("AWS/EC2", "NetworkOut", "Sum"),
    "network.incoming.packets": MetricSpec("AWS/EC2", "NetworkPacketsIn", "Sum"),
    "network.outgoing.packets": MetricSpec("AWS/EC2", "NetworkPacketsOut", "Sum"),
    "disk.device.read.bytes": MetricSpec("AWS/EBS", "VolumeReadBytes", "Sum", per="volume"),
    "disk.device.write.bytes": MetricSpec("AWS/EBS", "VolumeWriteBytes", "Sum", per="volume"),
    "disk.device.read.requests": MetricSpec("AWS/EBS", "VolumeReadOps", "Sum", per="volume"),
    "disk.device.write.requests": MetricSpec("AWS/EBS", "VolumeWriteOps", "Sum", per="volume"),
}
# Meters read from DescribeInstances (and DescribeInstanceTypes), not CloudWatch: one sample
# per instance and cycle, at the time it was observed.
DESCRIBED: frozenset[Meter] = frozenset({"vcpus", "memory", "power.state"})
TYPES_PAGE = 100  # DescribeInstanceTypes: at most 100 InstanceTypes per call


@dataclass(frozen=True, slots=True)
class Ec2Facts:
    """What the meters need of one instance beyond the wire's record."""

    vcpus: int | None  # CpuOptions: cores x threads per core (None: from the instance type)
    instance_type: str | None
    image_id: str | None
    asg: str | None
    eni: str | None  # the primary network interface
    volumes: tuple[tuple[str, str], ...]  # (device, volume id) of each EBS volume


@dataclass(frozen=True, slots=True)
class TypeFacts:
    """DescribeInstanceTypes' answer for one type, kept for the agent's life."""

    vcpus: int | None
    memory_mib: int | None


@dataclass(frozen=True, slots=True)
class Series:
    """One CloudWatch query: a meter of an instance, or of one of its devices."""

    instance_uuid: str
    meter: Meter
    device: str | None
    dimensions: tuple[tuple[str, str], ...]
    vcpus: int | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return self.instance_uuid, self.meter, self.device or ""


def device_name(name: str) -> str:
    """`/dev/xvda` -> `xvda`, as libvirt names Ceilometer's disks (`vda`)."""
    return name.rsplit("/", 1)[-1]


def ec2_facts(raw: dict[str, Any]) -> Ec2Facts:
    cpu = raw.get("CpuOptions") or {}
    vcpus = cpu["CoreCount"] * cpu["ThreadsPerCore"] if cpu.get("CoreCount") else None
    enis = sorted(
        raw.get("NetworkInterfaces", []),
        key=lambda e: e.get("Attachment", {}).get("DeviceIndex", 99),
    )
    volumes = tuple(
        (device_name(b["DeviceName"]), b["Ebs"]["VolumeId"])
        for b in raw.get("BlockDeviceMappings", [])
        if b.get("DeviceName") and b.get("Ebs", {}).get("VolumeId")
    )
    tags = {t["Key"]: t["Value"] for t in raw.get("Tags", [])}
    return Ec2Facts(
        vcpus=vcpus,
        instance_type=raw.get("InstanceType"),
        image_id=raw.get("ImageId"),
        asg=tags.get("aws:autoscaling:groupName"),
        eni=enis[0]["NetworkInterfaceId"] if enis else None,
        volumes=volumes,
    )


def floor_time(now: dt.datetime, period_s: int) -> dt.datetime:
    epoch = int(now.timestamp()) // period_s * period_s
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc)


# A cycle's datapoints share a few period starts (a handful of distinct stamps for 80,000
# datapoints at 10k instances): one datetime each instead of one per datapoint. Bounded, as
# launch times are mostly distinct.
_STAMPS_KEPT = 4096
_stamps: dict[str, dt.datetime] = {}


def fast_timestamp(value: str) -> dt.datetime:
    """An AWS timestamp as an aware datetime (the same object for the same text)."""
    ts = _stamps.get(value)
    if ts is None:
        if len(_stamps) >= _STAMPS_KEPT:
            _stamps.clear()
        ts = _stamps[value] = parse_timestamp(value)
    return ts


def parse_timestamp(value: str) -> dt.datetime:
    """An AWS timestamp as an aware datetime; botocore's own parser for anything unusual."""
    try:
        ts = dt.datetime.fromisoformat(value)
    except ValueError:
        from botocore.utils import parse_timestamp

        parsed: dt.datetime = parse_timestamp(value)
        return parsed
    return ts if ts.tzinfo else ts.replace(tzinfo=dt.timezone.utc)


def ec2_state(name: object) -> State:
    """EC2's instance state name is already one of the wire's states; anything new is unknown."""
    return next((s for s in STATES if s == name), "unknown")


def combine_status(status: dict[str, Any]) -> StatusChecks:
    """Instance and system checks folded into one answer: the worse of the two."""
    both = {
        status.get("InstanceStatus", {}).get("Status"),
        status.get("SystemStatus", {}).get("Status"),
    }
    if "impaired" in both:
        return "impaired"
    if both == {"ok"}:
        return "ok"
    if "initializing" in both:
        return "initializing"
    return "unknown"


def with_status(inst: Instance, statuses: dict[str, StatusChecks] | None) -> Instance:
    """A running instance's record with its status checks (`unknown` if AWS gave none)."""
    if statuses is None or inst.state != "running":
        return inst
    return dataclasses.replace(inst, status_checks=statuses.get(inst.remote_id, "unknown"))


def instance_from(raw: dict[str, Any], uuid: str, now: dt.datetime) -> Instance:
    """Map one DescribeInstances item onto the wire's instance record."""
    private = [raw["PrivateIpAddress"]] if raw.get("PrivateIpAddress") else []
    for eni in raw.get("NetworkInterfaces", []):
        private += [a["PrivateIpAddress"] for a in eni.get("PrivateIpAddresses", [])]
    return Instance(
        instance_uuid=uuid.lower(),
        provider="ec2",
        remote_id=raw["InstanceId"],
        state=ec2_state(raw.get("State", {}).get("Name")),
        observed_at=now,
        private_ips=tuple(dict.fromkeys(private)),
        public_ips=(raw["PublicIpAddress"],) if raw.get("PublicIpAddress") else (),
        instance_type=raw.get("InstanceType"),
        az=raw.get("Placement", {}).get("AvailabilityZone"),
        launched_at=raw.get("LaunchTime"),
    )


@dataclass(slots=True)
class Waiting:
    """An instance of this cycle, its samples so far, and how many of its CloudWatch queries
    are still unanswered."""

    instance: Instance
    samples: list[Sample]
    series: int


class InOrder:
    """Hands a cycle's instances on in the order DescribeInstances listed them, each with all
    of its samples once the last of its queries is answered: a cycle goes out page by page
    (the batcher packs exactly the reports it would have packed of the cycle held whole), and
    only the instances waiting for an answer are held."""

    def __init__(self, emit: Emit, statuses: asyncio.Task[dict[str, StatusChecks]] | None):
        self._emit = emit
        self._statuses = statuses
        self._queue: collections.deque[Waiting] = collections.deque()
        self.instances = 0

    def expect(self, inst: Instance, samples: list[Sample], series: int) -> Waiting:
        waiting = Waiting(inst, samples, series)
        self._queue.append(waiting)
        self.instances += 1
        return waiting

    async def release(self) -> None:
        """Emit the complete instances at the head of the line (none if the first waits)."""
        if not self._queue or self._queue[0].series:
            return
        # status checks are part of the instance's record: wait for them (a few calls)
        statuses = await self._statuses if self._statuses is not None else None
        part = Observation()
        while self._queue and not self._queue[0].series:
            done = self._queue.popleft()
            part.instances.append(with_status(done.instance, statuses))
            part.samples += done.samples
        if part.instances:  # another release took them while this one waited
            await self._emit(part)


class Ec2Collector:
    """Collects every instance tagged `azfed.clouds.UUID_TAG` and its CloudWatch meters."""

    name = "ec2"

    def __init__(
        self,
        aws: AwsSection,
        collect: CollectSection,
        metrics: AgentMetrics,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
    ) -> None:
        self.aws = aws
        self._clock = clock
        self.cfg = collect
        self.metrics = metrics
        self.describe_gate = ApiGate(
            "ec2", rate_per_s=collect.describe_rate_per_s, burst=collect.describe_burst,
            concurrency=collect.concurrency,
        )  # fmt: skip
        self.metrics_gate = ApiGate(
            "cloudwatch", rate_per_s=collect.metrics_rate_per_s, burst=collect.metrics_burst,
            concurrency=collect.concurrency,
        )  # fmt: skip
        # newest period already emitted per (instance, meter): later cycles re-read
        # `lookback_periods` complete periods (for missed cycles) but emit each period once
        # series key: (instance uuid, meter, device or "")
        self._watermark: dict[tuple[str, str, str], dt.datetime] = {}
        self._totals: dict[tuple[str, str, str], float] = {}
        self._types: dict[str, TypeFacts] = {}
        self._stack = AsyncExitStack()
        self._ec2: Any = None
        self._cw: Any = None

    @classmethod
    def from_config(cls, cfg: AzfedConfig, metrics: AgentMetrics) -> Ec2Collector:
        cfg.require("aws")
        assert cfg.aws is not None
        return cls(cfg.aws, cfg.collect, metrics)

    def checkpoint(self) -> dict[str, Any]:
        """What must survive a restart: the newest datapoint emitted and the running total of
        each series, so a cumulative counter goes on from where it was (a restart is not a
        reset to Gnocchi). Saved by the agent only after the cycle's reports are in the spool."""
        series = {
            "|".join(key): [ts.timestamp(), self._totals.get(key)]
            for key, ts in self._watermark.items()
        }
        return {"version": 2, "series": series}

    def restore(self, state: dict[str, Any]) -> None:
        # A version 1 checkpoint (agents before contract 2) holds series of meters and
        # resources this version no longer writes: its new series start afresh.
        if state.get("version") != 2:
            return
        for text, (ts, total) in state.get("series", {}).items():
            uuid, meter, device = text.split("|", 2)
            key = (uuid, meter, device)
            self._watermark[key] = dt.datetime.fromtimestamp(ts, dt.timezone.utc)
            if total is not None:
                self._totals[key] = float(total)

    # --- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        import aioboto3
        from aiobotocore.config import AioConfig
        from aiobotocore.parsers import AioResponseParserFactory
        from aiobotocore.session import get_session
        from azfed.agent.collect import awstls

        config = AioConfig(
            **self.aws.client().botocore_kwargs(),
            max_pool_connections=self.cfg.concurrency * 2,
            # botocore re-checks every request against the API model on the client; ours are
            # built by this module, AWS checks them anyway, and at 10k instances the check
            # was an eighth of the cycle's CPU (bench/bench_agent.py)
            parameter_validation=False,
            # one TLS context for both clients, made here rather than in the first cycle
            http_session_cls=awstls.SharedTlsSession,
        )
        core = get_session()
        awstls.warm(core.get_config_variable("ca_bundle") or True)
        # botocore's EC2 model cut to the calls made here (botomodels): searched before
        # botocore's own data, it saves the 12.5 MiB the whole model held
        paths = [str(botomodels.DATA_DIR), core.get_config_variable("data_path")]
        core.set_config_variable("data_path", os.pathsep.join(p for p in paths if p))
        # botocore's XML parse was 40% of a 10k-instance cycle's CPU: 2xx answers are parsed
        # by a parser compiled from the same model (errors still by botocore's, see awsfast)
        parsers = FastParserFactory(AioResponseParserFactory())
        # botocore parses every timestamp through dateutil: at 10k instances x 4 meters that
        # was half the cycle's CPU. AWS sends ISO 8601, which fromisoformat reads far faster.
        parsers.set_parser_defaults(timestamp_parser=fast_timestamp)
        core.register_component("response_parser_factory", parsers)
        session = aioboto3.Session(botocore_session=core, region_name=self.aws.region)
        kwargs: dict[str, Any] = {"config": config}
        if self.aws.endpoint_url is not None:
            kwargs["endpoint_url"] = str(self.aws.endpoint_url).rstrip("/")
        self._ec2 = await self._stack.enter_async_context(session.client("ec2", **kwargs))
        self._cw = await self._stack.enter_async_context(session.client("cloudwatch", **kwargs))
        for client, api in ((self._ec2, "ec2"), (self._cw, "cloudwatch")):
            self._instrument(client, api)
            register_fast_paths(client)

    async def close(self) -> None:
        await self._stack.aclose()

    def _instrument(self, client: Any, api: str) -> None:
        """Count every HTTP attempt, every throttle, and every call that failed for good."""

        def on_send(event_name: str, **_: Any) -> None:
            # before-send fires once per HTTP attempt, so retries are counted too
            self.metrics.api_calls.labels(api, event_name.rsplit(".", 1)[-1]).inc()

        def on_retry(response: Any, operation: Any, **_: Any) -> None:
            parsed = response[1] if response else None
            code = (parsed or {}).get("Error", {}).get("Code")
            if code in THROTTLE_CODES:
                self.metrics.throttles.labels(api, operation.name).inc()

        def on_answer(http_response: Any, model: Any, **_: Any) -> None:
            # after-call fires once per API call, after botocore's retries: an error status
            # here is the error the collector gets
            if http_response.status_code >= 300:
                self.metrics.api_errors.labels(api, model.name).inc()

        def on_no_answer(event_name: str, **_: Any) -> None:
            # after-call-error: no answer at all (refused, timed out) once the retries ran out
            self.metrics.api_errors.labels(api, event_name.rsplit(".", 1)[-1]).inc()

        client.meta.events.register("before-send.*.*", on_send)
        client.meta.events.register_first("needs-retry.*.*", on_retry)
        client.meta.events.register("after-call.*.*", on_answer)
        client.meta.events.register("after-call-error.*.*", on_no_answer)

    # --- one cycle --------------------------------------------------------------------------

    async def collect(self) -> Observation:
        return await whole_cycle(self.stream)

    async def stream(self, emit: Emit) -> None:
        # a failed cycle is read again whole by the next one, so what it marked as emitted is
        # forgotten (its parts already emitted are sent twice, with the same values)
        saved = dict(self._watermark), dict(self._totals)
        try:
            await self._stream(emit)
        except BaseException:
            self._watermark, self._totals = saved
            raise

    async def _stream(self, emit: Emit) -> None:
        now = self._clock()
        seen: set[str] = set()
        pending: list[tuple[Series, Waiting]] = []
        # one task per 500-query chunk (80 at 10k x 4 meters), at most `concurrency` under way
        # (read, or handed on to the batcher): when the spool or CloudWatch is slower than
        # DescribeInstances, the next pages wait rather than pile the cycle up in memory
        room = asyncio.Semaphore(self.cfg.concurrency)
        async with asyncio.TaskGroup() as tg:
            status_task = tg.create_task(self._statuses()) if self.cfg.status_checks else None
            ready = InOrder(emit, status_task)
            async for page in self._describe(now):
                await self._learn_types(page)
                for inst, facts in page:
                    seen.add(inst.instance_uuid)
                    series = self._series(inst, facts)
                    waiting = ready.expect(inst, self._described(inst, facts), len(series))
                    pending += [(s, waiting) for s in series]
                while len(pending) >= MAX_QUERIES:
                    chunk, pending = pending[:MAX_QUERIES], pending[MAX_QUERIES:]
                    await room.acquire()
                    tg.create_task(self._metric_chunk(chunk, now, ready, room))
                await ready.release()  # instances with no metric to wait for
            if pending:
                await room.acquire()
                tg.create_task(self._metric_chunk(pending, now, ready, room))
        await ready.release()
        # forget series of instances that are gone, so the map does not grow without bound;
        # rebuilt only then (a copy of 40,000 series at 10k instances)
        if any(k[0] not in seen for keys in (self._watermark, self._totals) for k in keys):
            self._watermark = {k: v for k, v in self._watermark.items() if k[0] in seen}
            self._totals = {k: v for k, v in self._totals.items() if k[0] in seen}
        self.metrics.instances.labels(self.name).set(ready.instances)

    async def _describe(self, now: dt.datetime) -> AsyncIterator[list[tuple[Instance, Ec2Facts]]]:
        """Pages of federated instances; NextToken by hand so every page waits its turn."""
        filters = [{"Name": "tag-key", "Values": [UUID_TAG]}]
        if self.aws.vpc_id:
            filters.append({"Name": "vpc-id", "Values": [self.aws.vpc_id]})
        token: str | None = None
        while True:
            kw: dict[str, Any] = {"Filters": filters, "MaxResults": DESCRIBE_PAGE}
            if token:
                kw["NextToken"] = token
            async with self.describe_gate.admit():
                resp = await self._ec2.describe_instances(**kw)
            token = resp.get("NextToken")
            page = self._page_instances(resp, now)
            del resp  # not held (a 1,000-instance answer) while the next one is read
            yield page
            if not token:
                return

    def _page_instances(
        self, resp: dict[str, Any], now: dt.datetime
    ) -> list[tuple[Instance, Ec2Facts]]:
        out = []
        for reservation in resp.get("Reservations", []):
            for raw in reservation.get("Instances", []):
                tags = {t["Key"]: t["Value"] for t in raw.get("Tags", [])}
                uuid = tags.get(UUID_TAG, "")
                if not is_uuid(uuid):
                    log.warning(
                        "instance.skipped", why="its tag is not a Nova instance UUID",
                        remote_id=raw.get("InstanceId"), key=UUID_TAG, value=uuid,
                    )  # fmt: skip
                    continue
                out.append((instance_from(raw, uuid, now), ec2_facts(raw)))
        return out

    # --- instance types (vCPUs and memory) ---------------------------------------------------

    def _needs_types(self, facts: Ec2Facts) -> bool:
        meters = set(self.cfg.meters)
        if "memory" in meters:
            return True
        return facts.vcpus is None and bool(meters & {"cpu", "vcpus"})

    async def _learn_types(self, page: list[tuple[Instance, Ec2Facts]]) -> None:
        """DescribeInstanceTypes for the types not met before: at most one call per 100 new
        types in the agent's life (a type's vCPUs and memory never change)."""
        new = sorted({
            f.instance_type for _, f in page
            if f.instance_type and f.instance_type not in self._types and self._needs_types(f)
        })  # fmt: skip
        from botocore.exceptions import ClientError

        for k in range(0, len(new), TYPES_PAGE):
            names = new[k : k + TYPES_PAGE]
            try:
                async with self.describe_gate.admit():
                    resp = await self._ec2.describe_instance_types(InstanceTypes=names)
            except ClientError as err:
                # an IAM policy from before this call was needed: memory (and vCPUs without
                # CpuOptions) go missing, the instances' state and other meters do not
                code = err.response.get("Error", {}).get("Code")
                if code in THROTTLE_CODES:
                    continue  # botocore's retries ran out: asked again next cycle
                log.warning(
                    "instance_types.failed", code=code, types=names,
                    then="memory is not reported for them until the agent restarts",
                    hint="allow ec2:DescribeInstanceTypes (packaging/iam/agent-policy.json)",
                )  # fmt: skip
                resp = {}
            for t in resp.get("InstanceTypes", []):
                vcpus = t.get("VCpuInfo", {}).get("DefaultVCpus")
                self._types[t["InstanceType"]] = TypeFacts(
                    vcpus, t.get("MemoryInfo", {}).get("SizeInMiB")
                )
            for name in names:  # a type AWS does not describe: never asked again
                self._types.setdefault(name, TypeFacts(None, None))

    def _vcpus(self, facts: Ec2Facts) -> int | None:
        if facts.vcpus is not None:
            return facts.vcpus
        return self._types.get(facts.instance_type or "", TypeFacts(None, None)).vcpus

    def _described(self, inst: Instance, facts: Ec2Facts) -> list[Sample]:
        """power.state until the instance is gone; vcpus and memory while it runs (Ceilometer
        reads no instance stats of a shut-off domain, and none of one that no longer exists:
        EC2 lists a terminated instance for about an hour)."""
        meters, at = set(self.cfg.meters), inst.observed_at
        out: list[Sample] = []
        if inst.state == "terminated":
            return out
        if "power.state" in meters:
            out.append(sample(inst.instance_uuid, "power.state", POWER_STATES[inst.state], at))
        if inst.state != "running":
            return out
        vcpus = self._vcpus(facts)
        if "vcpus" in meters and vcpus is not None:
            out.append(sample(inst.instance_uuid, "vcpus", vcpus, at))
        memory = self._types.get(facts.instance_type or "", TypeFacts(None, None)).memory_mib
        if "memory" in meters and memory is not None:
            out.append(sample(inst.instance_uuid, "memory", memory, at))
        return out

    # --- what to ask CloudWatch ----------------------------------------------------------------

    def _series(self, inst: Instance, facts: Ec2Facts) -> list[Series]:
        out: list[Series] = []
        for meter in self.cfg.meters:
            spec = METRICS.get(meter)
            if spec is None:
                continue
            out += self._meter_series(inst, facts, meter, spec)
        return out

    def _meter_series(
        self, inst: Instance, facts: Ec2Facts, meter: Meter, spec: MetricSpec
    ) -> list[Series]:
        uuid, by_id = inst.instance_uuid, (("InstanceId", inst.remote_id),)
        if spec.per == "volume":
            return [Series(uuid, meter, dev, (("VolumeId", vol),)) for dev, vol in facts.volumes]
        if METERS[meter].resource_type == "instance_network_interface":
            return [Series(uuid, meter, facts.eni, by_id)] if facts.eni else []
        if meter == "memory.usage":
            return [Series(uuid, meter, None, self._cwagent_dimensions(inst, facts))]
        if spec.cpu_time:
            vcpus = self._vcpus(facts)
            if vcpus is None:
                why = "the instance's vCPUs are unknown (no CpuOptions, no type)"
                log.warning("meter.skipped", meter=meter, remote_id=inst.remote_id, why=why)
                return []
            return [Series(uuid, meter, None, by_id, vcpus)]
        return [Series(uuid, meter, None, by_id)]

    def _cwagent_dimensions(self, inst: Instance, facts: Ec2Facts) -> tuple[tuple[str, str], ...]:
        """The dimensions the CloudWatch agent publishes mem_used under (its config's
        append_dimensions, as `[collect] cwagent_dimensions` says); a dimension the instance
        has no value for (no Auto Scaling group) is one the agent leaves out too."""
        values = {
            "InstanceId": inst.remote_id,
            "ImageId": facts.image_id,
            "InstanceType": facts.instance_type,
            "AutoScalingGroupName": facts.asg,
        }
        return tuple(
            (name, value)
            for name in self.cfg.cwagent_dimensions
            if (value := values[name]) is not None
        )

    async def _statuses(self) -> dict[str, StatusChecks]:
        """Status checks of running instances (the API cannot filter on tags; we join by id)."""
        out: dict[str, StatusChecks] = {}
        token: str | None = None
        while True:
            kw: dict[str, Any] = {"MaxResults": DESCRIBE_PAGE}
            if token:
                kw["NextToken"] = token
            async with self.describe_gate.admit():
                resp = await self._ec2.describe_instance_status(**kw)
            for st in resp.get("InstanceStatuses", []):
                out[st["InstanceId"]] = combine_status(st)
            token = resp.get("NextToken")
            if not token:
                return out

    # --- metrics ---------------------------------------------------------------------------

    def _window(self, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
        """The newest complete period and `lookback_periods` before it, aligned on the period
        (EndTime is exclusive): a period still open, or closed less than the publication delay
        ago, is not read, so it is emitted only in a later cycle, whole."""
        period = self.cfg.metrics_period_s
        end = floor_time(now - dt.timedelta(seconds=self.cfg.publication_delay_s), period)
        return end - dt.timedelta(seconds=period * (self.cfg.lookback_periods + 1)), end

    def _queries(self, chunk: list[Series]) -> EncodedQueries:
        period = self.cfg.metrics_period_s
        return encode_metric_queries([
            (f"q{k}", spec.namespace, spec.metric, series.dimensions, period, spec.stat)
            for k, series in enumerate(chunk)
            for spec in (METRICS[series.meter],)
        ])  # fmt: skip

    async def _metric_chunk(
        self,
        chunk: list[tuple[Series, Waiting]],
        now: dt.datetime,
        ready: InOrder,
        room: asyncio.Semaphore,
    ) -> None:
        """Read one chunk of queries, then hand on the instances it completes; `room` is
        the chunk's place among those under way, given back once it is done."""
        try:
            await self._read_chunk(chunk, now)
            for _, waiting in chunk:
                waiting.series -= 1
            await ready.release()
        finally:
            room.release()

    async def _read_chunk(self, chunk: list[tuple[Series, Waiting]], now: dt.datetime) -> None:
        """One GetMetricData call (more only if AWS pages the datapoints) for <= 500 queries,
        each answer's samples put with its instance."""
        if len(chunk) > MAX_QUERIES:  # the API refuses more; never send it
            raise ValueError(f"GetMetricData takes at most {MAX_QUERIES} queries, got {len(chunk)}")
        start, end = self._window(now)
        kw: dict[str, Any] = {
            "MetricDataQueries": self._queries([series for series, _ in chunk]),
            "StartTime": start,
            "EndTime": end,
            "ScanBy": "TimestampAscending",
        }
        while True:
            async with self.metrics_gate.admit():
                resp = await self._cw.get_metric_data(**kw)
            for result in resp.get("MetricDataResults", []):
                series, waiting = chunk[int(result["Id"][1:])]
                waiting.samples += self._samples(series, result)
            if not resp.get("NextToken"):
                return
            kw["NextToken"] = resp["NextToken"]

    def _samples(self, series: Series, result: dict[str, Any]) -> list[Sample]:
        spec, fact, key = METRICS[series.meter], METERS[series.meter], series.key
        mark = self._watermark.get(key)
        period = self.cfg.metrics_period_s
        out = []
        # ScanBy asks for ascending order; sorting again keeps a cumulative counter growing
        # with time from any server that ignores it (a few datapoints per series)
        points = sorted(zip(result.get("Timestamps", []), result.get("Values", []), strict=False))
        for ts, value in points:
            if mark is not None and ts <= mark:
                continue
            volume = spec.volume(value, series.vcpus, period)
            if fact.type == "cumulative":
                # a counter that starts at 0 when the agent first sees the series, like
                # Ceilometer's after a reboot: Gnocchi's rate aggregates treat the drop as a
                # reset; the checkpoint carries it across agent restarts
                volume = self._totals[key] = self._totals.get(key, 0.0) + volume
            out.append(
                Sample(series.instance_uuid, series.meter, fact.unit, fact.type, volume, ts,
                       series.device)
            )  # fmt: skip
        if out:
            self._watermark[key] = max(s.timestamp for s in out)
        return out
