"""Batcher -> spool -> pusher against the REAL receiver, with faults injected in front of it.

The receiver's own answers (400 for a report that breaks the contract, 401 for a signature,
409 for a key still in flight, 413 for a body too large) come from its code, not a script;
only what a network or a load balancer would add (5xx, 429, delays, dropped connections) is
injected by tests/agent/faults.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid as uuidlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from azfed import wire
from azfed.agent.collect.sample import Instance, Observation, Sample, rfc3339
from azfed.agent.health import AgentMetrics
from azfed.agent.push.batcher import Batcher
from azfed.agent.push.pusher import Pusher, split_report
from azfed.agent.push.spool import Spool
from azfed.config import parse_config

from tests.agent.live_receiver import SECRET, LiveReceiver, serve_receiver

# Recent, on the minute: the live receiver reads the real clock and refuses timestamps past
# its horizons ([receiver] max_age_s back, max_future_s ahead).
T0 = dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0) - dt.timedelta(hours=2)
AGENT = "agent-test"


def observation(n_instances: int, n_points: int, start: int = 0) -> Observation:
    """n instances with n_points memory.usage samples each, timestamps from `start` minutes."""
    obs = Observation()
    for k in range(n_instances):
        u = str(uuidlib.UUID(int=k + 1))
        obs.instances.append(Instance(u, "ec2", f"i-{k:08x}", "running", T0))
        obs.samples += [
            Sample(
                u, "memory.usage", "MiB", "gauge", float(p), T0 + dt.timedelta(minutes=start + p)
            )
            for p in range(n_points)
        ]
    return obs


def sent(obs: Observation) -> list[tuple[str, str, str]]:
    """The samples of `obs` as the receiver writes them."""
    return [(s.resource_id, s.meter, rfc3339(s.timestamp)) for s in obs.samples]


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
        self.batcher = Batcher(cfg.push, AGENT, self.spool, self.metrics)
        self.pusher = Pusher(
            cfg.push, AGENT, SECRET, self.spool, metrics=self.metrics,
            wakeup=self.batcher.spooled,
        )  # fmt: skip

    def value(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    async def send(self, obs: Observation) -> None:
        await self.batcher.add(obs)
        await self.batcher.flush()

    async def until_drained(self) -> None:
        self.pusher.drained.clear()
        self.batcher.spooled.set()
        await asyncio.wait_for(self.pusher.drained.wait(), timeout=30)


@pytest.fixture
async def receiver(tmp_path: Path) -> AsyncIterator[LiveReceiver]:
    async with serve_receiver(tmp_path, {AGENT: SECRET}) as rcv:
        yield rcv


@pytest.fixture
async def run_pipeline(tmp_path: Path, receiver: LiveReceiver) -> AsyncIterator[Any]:
    """Start a pipeline (push settings as given) with its pusher running, stopped at the end."""
    (tmp_path / "secret").write_bytes(SECRET)
    async with asyncio.TaskGroup() as tg:
        tasks: list[asyncio.Task[None]] = []

        def start(**push: Any) -> Pipeline:
            p = Pipeline(tmp_path, receiver.url, **{"batch_max_samples": 50, **push})
            tasks.append(tg.create_task(p.pusher.run()))
            return p

        yield start
        for task in tasks:
            task.cancel()


async def test_reports_are_self_contained_signed_and_cut_at_the_sample_limit(
    run_pipeline: Any, receiver: LiveReceiver
) -> None:
    """120 samples with a 50-sample limit make 3 reports; the receiver takes each (its
    signature, schema and self-containment checks) and writes all 120 samples once."""
    pipe = run_pipeline()
    await pipe.send(observation(12, 10))
    await pipe.until_drained()
    assert [len(b.samples) for b in receiver.sink.batches] == [50, 50, 20]
    assert sorted(receiver.samples()) == sorted(sent(observation(12, 10)))
    assert receiver.faults.statuses() == [200, 200, 200]
    assert await receiver.metric("azfed_receiver_reports_total", outcome="accepted") == 3
    assert pipe.value("azfed_agent_samples_total", stage="pushed") == 120


async def test_a_receiver_outage_loses_nothing_duplicates_nothing_and_keeps_order(
    run_pipeline: Any, receiver: LiveReceiver
) -> None:
    """Several cycles while the receiver answers 503: reports wait in the spool, then all
    arrive once, in sequence order."""
    pipe = run_pipeline()
    down = receiver.faults.answer(503, times=None, retry_after="0")
    for cycle in range(4):
        await pipe.send(observation(3, 5, start=cycle * 5))
    await receiver.faults.until(lambda: receiver.faults.statuses().count(503) >= 3, "three 503s")
    assert len(pipe.spool) == 4
    assert pipe.pusher.reachable is False
    assert receiver.sink.batches == []
    receiver.faults.remove(down)
    await pipe.until_drained()
    assert receiver.seqs() == [0, 1, 2, 3]
    assert receiver.samples() == [
        s for cycle in range(4) for s in sent(observation(3, 5, start=cycle * 5))
    ]
    assert [a["last_seq"] for a in await receiver.store.agents()] == [3]


async def test_a_report_the_receiver_refuses_with_400_is_dropped_counted_and_not_retried(
    run_pipeline: Any, receiver: LiveReceiver
) -> None:
    """A spooled report that breaks the contract (here a meter the contract does not know,
    as an older agent's spool could hold) gets the receiver's 400 once; its samples count as
    dropped, and the next report goes on."""
    pipe = run_pipeline()
    obs = observation(1, 5)
    bad = {
        "version": 1, "agent_id": AGENT, "seq": pipe.spool.allocate_seq(),
        "sent_at": rfc3339(T0), "instances": [i.as_wire() for i in obs.instances],
        "samples": [{**s.as_wire(), "meter": "cpu.no_such_meter"} for s in obs.samples],
    }  # fmt: skip
    pipe.spool.put(bad["seq"], wire.dumps(bad), samples=5, gzip=False)
    await pipe.send(observation(1, 5, start=5))
    await pipe.until_drained()
    assert receiver.faults.statuses() == [400, 200]
    assert await receiver.metric("azfed_receiver_rejects_total", reason="bad_schema") == 1
    assert pipe.value("azfed_agent_samples_dropped_total", reason="rejected") == 5
    assert receiver.seqs() == [1]


async def test_5xx_a_dropped_connection_and_a_slow_answer_are_retried_and_written_once(
    run_pipeline: Any, receiver: LiveReceiver
) -> None:
    """A 500, a 503, a connection dropped before the receiver saw the request and one dropped
    after it wrote the report (the answer lost): all retried with the same key; the receiver
    writes the report once and answers the last retry as a duplicate."""
    pipe = run_pipeline()
    faults = receiver.faults
    faults.answer(500)
    faults.answer(503)
    faults.drop("before")
    faults.drop("after")
    await pipe.send(observation(2, 3))
    await pipe.until_drained()
    assert faults.statuses() == [500, 503, None, None, 200]
    assert len(set(faults.keys())) == 1
    assert receiver.seqs() == [0]
    assert await receiver.metric("azfed_receiver_reports_total", outcome="accepted") == 1
    assert await receiver.metric("azfed_receiver_reports_total", outcome="duplicate") == 1
    assert pipe.value("azfed_agent_samples_total", stage="pushed") == 6


async def test_an_answer_slower_than_the_push_timeout_is_retried_and_written_once(
    run_pipeline: Any, receiver: LiveReceiver
) -> None:
    """The receiver is still writing when the agent gives up waiting: the retry meets the
    receiver's own 409 (key in flight) until the write finishes, then gets the stored answer;
    the sink sees the report once."""
    pipe = run_pipeline(timeout_s=0.3)
    receiver.sink.gate = asyncio.Event()  # the backend hangs
    await pipe.send(observation(2, 3))
    await receiver.faults.until(lambda: 409 in receiver.faults.statuses(), "the receiver's 409")
    receiver.sink.gate.set()
    await pipe.until_drained()
    in_flight = receiver.faults.statuses().count(409)
    assert await receiver.metric("azfed_receiver_rejects_total", reason="in_flight") == in_flight
    assert receiver.faults.statuses()[-1] == 200
    assert len(set(receiver.faults.keys())) == 1
    assert receiver.seqs() == [0]
    assert await receiver.metric("azfed_receiver_reports_total", outcome="duplicate") == 1
    assert pipe.value("azfed_agent_samples_total", stage="pushed") == 6


async def test_429_waits_what_retry_after_says_then_the_report_arrives(
    run_pipeline: Any, receiver: LiveReceiver
) -> None:
    """Throttled with Retry-After: 1, the agent waits that second (not its short backoff)
    before sending the same report again."""
    pipe = run_pipeline(max_backoff_s=10.0)
    receiver.faults.answer(429, retry_after="1")
    await pipe.send(observation(2, 3))
    await pipe.until_drained()
    throttled, accepted = receiver.faults.seen
    assert (throttled.status, accepted.status) == (429, 200)
    assert throttled.key == accepted.key
    assert accepted.at - throttled.at >= 1.0
    assert receiver.seqs() == [0]


async def test_a_refused_signature_keeps_the_report_spooled(
    run_pipeline: Any, receiver: LiveReceiver
) -> None:
    """401 is not a reason to lose data: the report stays until the secret is fixed."""
    pipe = run_pipeline()
    receiver.set_secret(AGENT, b"rotated-on-the-receiver")
    await pipe.send(observation(1, 2))
    await receiver.faults.until(lambda: len(receiver.faults.seen) >= 3, "three attempts")
    refused = receiver.faults.statuses()
    assert set(refused) == {401}
    assert len(pipe.spool) == 1
    assert receiver.sink.batches == []
    receiver.set_secret(AGENT, SECRET)
    await pipe.until_drained()
    assert receiver.seqs() == [0]
    refused_in_all = receiver.faults.statuses().count(401)
    assert await receiver.metric("azfed_receiver_rejects_total", reason="bad_signature") == (
        refused_in_all
    )


async def test_a_report_too_large_for_the_receiver_is_split_and_all_of_it_arrives(
    tmp_path: Path,
) -> None:
    """The receiver's own 413 halves the report until it takes the pieces; no sample is lost."""
    async with serve_receiver(tmp_path / "small", {AGENT: SECRET}, max_body_bytes=2048) as rcv:
        (tmp_path / "secret").write_bytes(SECRET)
        pipe = Pipeline(tmp_path, rcv.url, batch_max_samples=50, gzip=False)
        task = asyncio.create_task(pipe.pusher.run())
        try:
            await pipe.send(observation(40, 1))  # about 10 kB of JSON
            await pipe.until_drained()
        finally:
            task.cancel()
        assert 413 in rcv.faults.statuses()
        assert sorted(rcv.samples()) == sorted(sent(observation(40, 1)))
        too_large = rcv.faults.statuses().count(413)
        assert await rcv.metric("azfed_receiver_rejects_total", reason="too_large") == too_large
        assert pipe.value("azfed_agent_samples_dropped_total", reason="too_large") == 0


@pytest.mark.parametrize("name", ["report-full", "report-v1-full"])
def test_a_report_too_large_splits_into_valid_halves_in_either_contract_version(
    name: str,
) -> None:
    """An upgraded agent may still hold version 1 reports in its spool: split on a 413, each
    half keeps its instances' samples (resource_id in version 1, instance_uuid in 2) and stays
    valid under its own version."""
    report = json.loads((Path(__file__).parents[1] / "data" / "wire" / f"{name}.json").read_text())
    halves = split_report(report)
    assert halves is not None
    for half in halves:
        wire.validate_report(half)
    assert sum(len(h["samples"]) for h in halves) == len(report["samples"])
    assert [len(h["instances"]) for h in halves] == [1, 1]
