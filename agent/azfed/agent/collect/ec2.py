"""EC2 collector: every federated instance by tag, its state, status checks and usage.

The fewest calls AWS allows per cycle: ceil(N/1000) DescribeInstances pages (MaxResults=1000,
filtered on the tag key), ceil(N*M/500) GetMetricData calls (500 queries is the API's cap, and
moto does not enforce it, so we do), and ceil(N_running/1000) DescribeInstanceStatus pages when
status checks are on. Metric queries start as soon as a page of instances arrives, and are cut
into full 500-query calls across pages, so a slow describe does not delay them all.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import structlog
from azfed.agent.collect.gate import ApiGate
from azfed.agent.collect.sample import Instance, Observation, Sample
from azfed.agent.health import AgentMetrics
from azfed.aws import THROTTLE_CODES
from azfed.clouds import UUID_TAG
from azfed.config import AwsSection, AzfedConfig, CollectSection
from azfed.wire import METERS, STATES, Meter, State, StatusChecks, is_uuid

log = structlog.get_logger(__name__)

DESCRIBE_PAGE = 1000  # DescribeInstances / DescribeInstanceStatus MaxResults cap
MAX_QUERIES = 500  # GetMetricData: at most 500 MetricDataQuery per call


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """Where one Ceilometer meter is read in CloudWatch (its unit and type: `wire.METERS`)."""

    namespace: str
    metric: str
    stat: str
    scale: float = 1.0


# Disk meters read the EBS metrics: on Nitro instances (every current family) the Disk* metrics
# cover instance-store volumes only. Memory comes from the CloudWatch agent's mem_used (bytes)
# when it publishes it. Byte and op counts are Sums over each period, which the collector adds
# up into the running totals Ceilometer's cumulative meters expect.
#
# A period is read only once it is complete (it ended `publication_delay_s` ago), so each value
# is CloudWatch's own statistic over the whole period, sent once: an open period's Average is
# the mean of the points so far and its Sum a part of the total, and a running total built from
# parts cannot be corrected later without breaking Gnocchi's rates.
METRICS: dict[Meter, MetricSpec] = {
    "cpu_util": MetricSpec("AWS/EC2", "CPUUtilization", "Average"),
    "network.incoming.bytes": MetricSpec("AWS/EC2", "NetworkIn", "Sum"),
    "network.outgoing.bytes": MetricSpec("AWS/EC2", "NetworkOut", "Sum"),
    "disk.read.bytes": MetricSpec("AWS/EC2", "EBSReadBytes", "Sum"),
    "disk.write.bytes": MetricSpec("AWS/EC2", "EBSWriteBytes", "Sum"),
    "disk.read.requests": MetricSpec("AWS/EC2", "EBSReadOps", "Sum"),
    "disk.write.requests": MetricSpec("AWS/EC2", "EBSWriteOps", "Sum"),
    "memory.usage": MetricSpec("CWAgent", "mem_used", "Average", 1 / 1048576),
}


def floor_time(now: dt.datetime, period_s: int) -> dt.datetime:
    epoch = int(now.timestamp()) // period_s * period_s
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc)


def fast_timestamp(value: str) -> dt.datetime:
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
        self._watermark: dict[tuple[str, str], dt.datetime] = {}
        self._totals: dict[tuple[str, str], float] = {}
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
        each series. Saved by the agent only after the cycle's reports are in the spool."""
        series = {
            f"{u}|{m}": [ts.timestamp(), self._totals.get((u, m))]
            for (u, m), ts in self._watermark.items()
        }
        return {"version": 1, "series": series}

    def restore(self, state: dict[str, Any]) -> None:
        for key, (ts, total) in state.get("series", {}).items():
            uuid, _, meter = key.partition("|")
            self._watermark[(uuid, meter)] = dt.datetime.fromtimestamp(ts, dt.timezone.utc)
            if total is not None:
                self._totals[(uuid, meter)] = float(total)

    # --- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        import aioboto3
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        config = AioConfig(
            **self.aws.client().botocore_kwargs(),
            max_pool_connections=self.cfg.concurrency * 2,
            # botocore re-checks every request against the API model on the client; ours are
            # built by this module, AWS checks them anyway, and at 10k instances the check
            # was an eighth of the cycle's CPU (bench/bench_agent.py)
            parameter_validation=False,
        )
        core = get_session()
        # botocore parses every timestamp through dateutil: at 10k instances x 4 meters that
        # was half the cycle's CPU. AWS sends ISO 8601, which fromisoformat reads far faster.
        core.get_component("response_parser_factory").set_parser_defaults(
            timestamp_parser=fast_timestamp
        )
        session = aioboto3.Session(botocore_session=core, region_name=self.aws.region)
        kwargs: dict[str, Any] = {"config": config}
        if self.aws.endpoint_url is not None:
            kwargs["endpoint_url"] = str(self.aws.endpoint_url).rstrip("/")
        self._ec2 = await self._stack.enter_async_context(session.client("ec2", **kwargs))
        self._cw = await self._stack.enter_async_context(session.client("cloudwatch", **kwargs))
        for client, api in ((self._ec2, "ec2"), (self._cw, "cloudwatch")):
            self._instrument(client, api)

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
        # a failed cycle's samples are thrown away, so what it marked as emitted must be too
        saved = dict(self._watermark), dict(self._totals)
        try:
            return await self._collect()
        except BaseException:
            self._watermark, self._totals = saved
            raise

    async def _collect(self) -> Observation:
        now = self._clock()
        obs = Observation()
        pending: list[tuple[str, str, Meter]] = []  # (nova uuid, instance id, meter)
        # one task per 500-query chunk (80 at 10k x 4 meters); the metrics gate bounds how many
        # are in flight, so the task count is not the fan-out
        async with asyncio.TaskGroup() as tg:
            status_task = tg.create_task(self._statuses()) if self.cfg.status_checks else None
            async for page in self._describe(now):
                obs.instances += page
                pending += [
                    (i.instance_uuid, i.remote_id, m) for i in page for m in self.cfg.meters
                ]
                while len(pending) >= MAX_QUERIES:
                    chunk, pending = pending[:MAX_QUERIES], pending[MAX_QUERIES:]
                    tg.create_task(self._metric_chunk(chunk, now, obs.samples))
            if pending:
                tg.create_task(self._metric_chunk(pending, now, obs.samples))
        if status_task is not None:
            self._apply_statuses(obs, status_task.result())
        seen = {i.instance_uuid for i in obs.instances}
        # forget series of instances that are gone, so the map does not grow without bound
        self._watermark = {k: v for k, v in self._watermark.items() if k[0] in seen}
        self._totals = {k: v for k, v in self._totals.items() if k[0] in seen}
        self.metrics.instances.labels(self.name).set(len(obs.instances))
        return obs

    async def _describe(self, now: dt.datetime) -> AsyncIterator[list[Instance]]:
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
            yield self._page_instances(resp, now)
            token = resp.get("NextToken")
            if not token:
                return

    def _page_instances(self, resp: dict[str, Any], now: dt.datetime) -> list[Instance]:
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
                out.append(instance_from(raw, uuid, now))
        return out

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

    @staticmethod
    def _apply_statuses(obs: Observation, statuses: dict[str, StatusChecks]) -> None:
        import dataclasses

        obs.instances = [
            dataclasses.replace(i, status_checks=statuses.get(i.remote_id, "unknown"))
            if i.state == "running"
            else i
            for i in obs.instances
        ]

    # --- metrics ---------------------------------------------------------------------------

    def _window(self, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
        """The newest complete period and `lookback_periods` before it, aligned on the period
        (EndTime is exclusive): a period still open, or closed less than the publication delay
        ago, is not read, so it is emitted only in a later cycle, whole."""
        period = self.cfg.metrics_period_s
        end = floor_time(now - dt.timedelta(seconds=self.cfg.publication_delay_s), period)
        return end - dt.timedelta(seconds=period * (self.cfg.lookback_periods + 1)), end

    def _queries(self, chunk: list[tuple[str, str, Meter]]) -> list[dict[str, Any]]:
        out = []
        for k, (_uuid, remote_id, meter) in enumerate(chunk):
            spec = METRICS[meter]
            metric = {
                "Namespace": spec.namespace,
                "MetricName": spec.metric,
                "Dimensions": [{"Name": "InstanceId", "Value": remote_id}],
            }
            stat = {"Metric": metric, "Period": self.cfg.metrics_period_s, "Stat": spec.stat}
            out.append({"Id": f"q{k}", "MetricStat": stat, "ReturnData": True})
        return out

    async def _metric_chunk(
        self, chunk: list[tuple[str, str, Meter]], now: dt.datetime, into: list[Sample]
    ) -> None:
        """One GetMetricData call (more only if AWS pages the datapoints) for <= 500 queries."""
        if len(chunk) > MAX_QUERIES:  # the API refuses more; never send it
            raise ValueError(f"GetMetricData takes at most {MAX_QUERIES} queries, got {len(chunk)}")
        start, end = self._window(now)
        kw: dict[str, Any] = {
            "MetricDataQueries": self._queries(chunk),
            "StartTime": start,
            "EndTime": end,
            "ScanBy": "TimestampAscending",
        }
        while True:
            async with self.metrics_gate.admit():
                resp = await self._cw.get_metric_data(**kw)
            for result in resp.get("MetricDataResults", []):
                into += self._samples(chunk[int(result["Id"][1:])], result)
            if not resp.get("NextToken"):
                return
            kw["NextToken"] = resp["NextToken"]

    def _samples(self, query: tuple[str, str, Meter], result: dict[str, Any]) -> list[Sample]:
        uuid, _, meter = query
        spec = METRICS[meter]
        unit, kind = METERS[meter]
        key = (uuid, meter)
        mark = self._watermark.get(key)
        out = []
        for ts, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
            if mark is not None and ts <= mark:
                continue
            volume = value * spec.scale
            if kind == "cumulative":
                # a counter that starts at 0 when the agent starts, like Ceilometer's after a
                # reboot: Gnocchi's rate aggregates treat the drop as a reset
                volume = self._totals[key] = self._totals.get(key, 0.0) + volume
            out.append(Sample(uuid, meter, unit, kind, volume, ts))
        if out:
            self._watermark[key] = max(s.timestamp for s in out)
        return out
