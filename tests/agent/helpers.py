"""Helpers shared by the agent tests: federated instances in moto and seeded CloudWatch data."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid as uuidlib
from typing import Any

from azfed.config import AzfedConfig, CollectSection, parse_config

from testbed.aws import MotoServer
from tests.agent.aws_metrics import DOCUMENTED

TAG = "azfed:instance-uuid"
# the collector reads a period once it ended this long ago (its default)
DELAY_S: int = CollectSection.model_fields["publication_delay_s"].default


def newest_complete(period_s: int, delay_s: int = DELAY_S) -> int:
    """The start (epoch s) of the newest period the collector reads now."""
    return (int(time.time()) - delay_s) // period_s * period_s - period_s


async def launch(ec2: Any, n: int, *, per_reservation: int = 100) -> dict[str, str]:
    """Start n tagged instances (each its own reservation when per_reservation == 1);
    answer {instance id: Nova uuid}."""
    out: dict[str, str] = {}
    sem = asyncio.Semaphore(8)

    async def one(count: int) -> None:
        async with sem:
            resp = await ec2.run_instances(
                ImageId="ami-760aaa0f", InstanceType="m5.large", MinCount=count, MaxCount=count
            )
            ids = [i["InstanceId"] for i in resp["Instances"]]
            uuids = [str(uuidlib.uuid4()) for _ in ids]
            for iid, u in zip(ids, uuids, strict=True):
                await ec2.create_tags(Resources=[iid], Tags=[{"Key": TAG, "Value": u}])
                out[iid] = u

    sizes = [min(per_reservation, n - k) for k in range(0, n, per_reservation)]
    async with asyncio.TaskGroup() as tg:
        for size in sizes:
            tg.create_task(one(size))
    return dict(sorted(out.items()))


def seed(
    moto: MotoServer,
    ids: list[str],
    metrics: list[str],
    points: int,
    period_s: int,
    dimension: str = "InstanceId",
) -> dt.datetime:
    """`points` datapoints per instance (or volume: `dimension` VolumeId) and CloudWatch
    metric (AWS's own names, see aws_metrics.py), one per period, ending at the newest period
    the collector takes as complete; values 1, 2, ... from the newest back."""
    now = dt.datetime.now(dt.timezone.utc)
    base = newest_complete(period_s)
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    for name in metrics:
        namespace, unit = DOCUMENTED[name]
        by_namespace.setdefault(namespace, []).extend(
            {"name": name, "dims": {dimension: iid}, "ts": base - k * period_s + 1,
             "value": float(k + 1), "unit": unit}
            for iid in ids
            for k in range(points)
        )  # fmt: skip
    for namespace, data in by_namespace.items():
        moto.seed_metrics(data, namespace=namespace)
    return now


def agent_config(
    moto: MotoServer, tmp: Any, *, meters: list[str], status: bool = False, **collect: Any
) -> AzfedConfig:
    secret = tmp / "secret"
    secret.write_text("s3cret-for-tests-0123456789abcdef")
    return parse_config(
        {
            "agent": {"id": "agent-test", "provider": "ec2"},
            "aws": {"region": "us-east-1", "endpoint_url": moto.endpoint, "max_attempts": 8},
            "collect": {
                "meters": meters,
                "status_checks": status,
                "interval_s": 1.0,
                "jitter_s": 0.0,
                **collect,
            },
            "push": {"url": "http://127.0.0.1:9/v1/reports", "secret_file": str(secret)},
            "spool": {"path": str(tmp / "spool")},
            "health": {"port": 0},
        }
    )


async def volumes(ec2: Any, ids: list[str]) -> dict[str, list[tuple[str, str]]]:
    """{instance id: [(device, EBS volume id)]}, as DescribeInstances gives them."""
    resp = await ec2.describe_instances(InstanceIds=ids)
    return {
        i["InstanceId"]: [
            (b["DeviceName"].rsplit("/", 1)[-1], b["Ebs"]["VolumeId"])
            for b in i.get("BlockDeviceMappings", [])
        ]
        for r in resp["Reservations"]
        for i in r["Instances"]
    }
