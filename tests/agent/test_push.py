"""Batcher -> spool -> pusher against a double of our own receiver protocol."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid as uuidlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from azfed.agent.collect.sample import Instance, Observation, Sample
from azfed.agent.health import AgentMetrics
from azfed.agent.push.batcher import Batcher
from azfed.agent.push.pusher import Pusher
from azfed.agent.push.spool import Spool
from azfed.config import parse_config

from tests.agent.receiver_double import SECRET, Double, serve

T0 = dt.datetime(2026, 11, 24, 2, 0, tzinfo=dt.timezone.utc)


def observation(n_instances: int, n_points: int, start: int = 0) -> Observation:
    """n instances with n_points cpu_util samples each, timestamps from `start` minutes."""
    obs = Observation()
    for k in range(n_instances):
        u = str(uuidlib.UUID(int=k + 1))
        obs.instances.append(Instance(u, "ec2", f"i-{k:08x}", "running", T0))
        obs.samples += [
            Sample(u, "cpu_util", "%", "gauge", float(p), T0 + dt.timedelta(minutes=start + p))
            for p in range(n_points)
        ]
    return obs


class Pipeline:
    def __init__(self, tmp: Path, url: str, **push: Any) -> None:
        cfg = parse_config(
            {
                "push": {"url": url, "secret_file": str(tmp / "secret"), "max_backoff_s": 0.05,
                         **push},
                "spool": {"path": str(tmp / "spool")},
            }
        )  # fmt: skip
        assert cfg.push is not None
        assert cfg.spool is not None
        self.metrics = AgentMetrics()
        self.spool = Spool(cfg.spool, self.metrics)
        self.spool.open()
        self.batcher = Batcher(cfg.push, "agent-test", self.spool, self.metrics)
        self.pusher = Pusher(
            cfg.push, "agent-test", SECRET, self.spool, metrics=self.metrics,
            wakeup=self.batcher.spooled,
        )  # fmt: skip

    def value(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    async def until_drained(self) -> None:
        self.pusher.drained.clear()
        self.batcher.spooled.set()
        await asyncio.wait_for(self.pusher.drained.wait(), timeout=30)


@pytest.fixture
async def double() -> AsyncIterator[tuple[Double, str]]:
    d = Double()
    runner, url = await serve(d)
    yield d, url
    await runner.cleanup()


@pytest.fixture
async def pipe(tmp_path: Path, double: tuple[Double, str]) -> AsyncIterator[Pipeline]:
    (tmp_path / "secret").write_bytes(SECRET)
    p = Pipeline(tmp_path, double[1], batch_max_samples=50)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(p.pusher.run())
        yield p
        task.cancel()


async def test_reports_are_self_contained_signed_and_cut_at_the_sample_limit(
    pipe: Pipeline, double: tuple[Double, str]
) -> None:
    """120 samples with a 50-sample limit make 3 reports; each names its own instances and
    passes the receiver's signature and schema checks."""
    d, _ = double
    await pipe.batcher.add(observation(12, 10))
    await pipe.batcher.flush()
    await pipe.until_drained()
    assert [len(d.accepted[k]["samples"]) for k in d.order] == [50, 50, 20]
    for key in d.order:
        rep = d.accepted[key]
        assert {s["resource_id"] for s in rep["samples"]} <= {
            i["instance_uuid"] for i in rep["instances"]
        }
    assert pipe.value("azfed_agent_samples_total", stage="pushed") == 120


async def test_a_receiver_outage_loses_nothing_duplicates_nothing_and_keeps_order(
    pipe: Pipeline, double: tuple[Double, str]
) -> None:
    """Several cycles while the receiver answers 503: reports wait in the spool, then all
    arrive once, in sequence order."""
    d, _ = double
    d.down = True
    for cycle in range(4):
        await pipe.batcher.add(observation(3, 5, start=cycle * 5))
        await pipe.batcher.flush()
    while len([r for r in d.requests if r[1] == 503]) < 3:
        d.got.clear()
        await d.got.wait()
    assert len(pipe.spool) == 4
    assert pipe.pusher.reachable is False
    d.down = False
    await pipe.until_drained()
    assert d.seqs() == [0, 1, 2, 3]
    assert len(d.samples()) == len(set(d.samples())) == 4 * 15


async def test_a_400_is_dropped_and_counted_and_the_next_report_goes_on(
    pipe: Pipeline, double: tuple[Double, str]
) -> None:
    """The receiver will never take a 400: it is not retried, its samples count as dropped."""
    d, _ = double
    d.script = [400]
    await pipe.batcher.add(observation(1, 5))
    await pipe.batcher.flush()
    await pipe.batcher.add(observation(1, 5, start=5))
    await pipe.batcher.flush()
    await pipe.until_drained()
    assert [status for _, status in d.requests] == [400, 200]
    assert pipe.value("azfed_agent_samples_dropped_total", reason="rejected") == 5


async def test_429_and_409_are_retried_until_accepted(
    pipe: Pipeline, double: tuple[Double, str]
) -> None:
    """Throttled (with Retry-After) and in-flight answers are retried; the report arrives once."""
    d, _ = double
    d.script = [429, 409, 502]
    await pipe.batcher.add(observation(2, 3))
    await pipe.batcher.flush()
    await pipe.until_drained()
    assert [s for _, s in d.requests] == [429, 409, 502, 200]
    assert len({k for k, _ in d.requests}) == 1
    assert d.seqs() == [0]


async def test_a_refused_signature_keeps_the_report_spooled(
    pipe: Pipeline, double: tuple[Double, str]
) -> None:
    """401 is not a reason to lose data: the report stays until the secret is fixed."""
    d, _ = double
    d.secret = b"rotated-on-the-receiver"
    await pipe.batcher.add(observation(1, 2))
    await pipe.batcher.flush()
    while len(d.requests) < 3:
        d.got.clear()
        await d.got.wait()
    assert {s for _, s in d.requests} == {401}
    assert len(pipe.spool) == 1
    d.secret = SECRET
    await pipe.until_drained()
    assert d.seqs() == [0]


async def test_a_report_too_large_for_the_receiver_is_split_and_all_of_it_arrives(
    pipe: Pipeline, double: tuple[Double, str]
) -> None:
    """413 halves the report until the receiver takes the pieces; no sample is lost."""
    d, _ = double
    d.max_body = 400  # gzip'd bytes: a few instances a report; 40 are well over
    await pipe.batcher.add(observation(40, 1))
    await pipe.batcher.flush()
    await pipe.until_drained()
    assert any(status == 413 for _, status in d.requests)
    assert sorted(d.samples()) == sorted(
        (s.resource_id, s.meter, s.timestamp.isoformat().replace("+00:00", "Z"))
        for s in observation(40, 1).samples
    )
