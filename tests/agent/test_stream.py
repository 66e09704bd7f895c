"""A cycle handed on page by page (`Collector.stream`): the spool gets exactly the reports of
the same cycle held whole, instances go on in the order listed and only once complete, and the
parts of a cycle that fails midway are not lost."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
import uuid as uuidlib
from pathlib import Path
from typing import Any

from azfed.agent.app import Scheduler
from azfed.agent.collect.ec2 import InOrder
from azfed.agent.collect.sample import Emit, Instance, Observation, sample, whole_cycle
from azfed.agent.health import AgentMetrics
from azfed.agent.push.batcher import Batcher
from azfed.agent.push.spool import Spool, unframe
from azfed.config import CollectSection, parse_config

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)


def cycle(n_instances: int) -> list[Observation]:
    """One cycle in parts of 125 instances (a 500-query chunk of four meters), each instance
    with eight samples: two periods of four meters on its vNIC, as the EC2 collector reads."""
    parts = []
    for first in range(0, n_instances, 125):
        part = Observation()
        for k in range(first, min(n_instances, first + 125)):
            u = str(uuidlib.UUID(int=k + 1))
            part.instances.append(Instance(u, "ec2", f"i-{k:017x}", "running", T0))
            part.samples += [
                sample(u, meter, float(k * p), T0 - dt.timedelta(minutes=5 * p), "eni-1")
                for p in (1, 2)
                for meter in ("network.incoming.bytes", "network.outgoing.bytes",
                              "network.incoming.packets", "network.outgoing.packets")
            ]  # fmt: skip
        parts.append(part)
    return parts


def batcher(tmp: Path) -> Batcher:
    cfg = parse_config({
        "push": {"url": "http://127.0.0.1:9/", "secret_file": str(tmp / "secret")},
        "spool": {"path": str(tmp / "spool")},
    })  # fmt: skip
    assert cfg.push is not None
    assert cfg.spool is not None
    metrics = AgentMetrics()
    spool = Spool(cfg.spool, metrics)
    spool.open()
    return Batcher(cfg.push, "agent-test", spool, metrics)


def spooled(b: Batcher) -> list[dict[str, Any]]:
    """Each spooled report's instances and samples, in send order (sent_at and the spool's
    random epoch left out: they differ between any two spools)."""
    out = []
    for path in sorted(b.spool.dir.glob("*.rep")):
        meta, body = unframe(path.read_bytes())
        report = json.loads(gzip.decompress(body) if meta["gzip"] else body)
        out.append({"instances": report["instances"], "samples": report["samples"]})
    return out


async def test_a_cycle_spooled_part_by_part_is_the_reports_of_the_cycle_held_whole(
    tmp_path: Path,
) -> None:
    """1,200 instances in ten parts, added one by one as the collector hands them on, make
    the same reports, sample for sample and in the same order, as the whole cycle added at
    once; and several reports are written before the last part arrives (none is held)."""
    parts = cycle(1200)
    whole = batcher(tmp_path / "whole")
    await whole.add(await whole_cycle(lambda emit: _emit_all(parts, emit)))
    await whole.flush()
    paged = batcher(tmp_path / "paged")
    for part in parts[:-1]:
        await paged.add(part)
    before_last = len(paged.spool)
    await paged.add(parts[-1])
    await paged.flush()
    assert before_last >= 2
    assert len(spooled(whole)) >= 3
    assert spooled(paged) == spooled(whole)
    assert sum(len(r["samples"]) for r in spooled(paged)) == 1200 * 8


async def _emit_all(parts: list[Observation], emit: Emit) -> None:
    for part in parts:
        await emit(part)


async def test_instances_go_on_in_the_order_listed_once_all_their_queries_are_answered() -> None:
    """Answers arrive out of order: an instance goes on only when its last query is answered
    and every instance listed before it has gone, each once, with all of its samples; an
    instance with nothing to ask goes as soon as those before it have."""
    parts: list[Observation] = []

    async def emit(part: Observation) -> None:
        parts.append(part)

    ready = InOrder(emit, None)
    insts = [
        Instance(str(uuidlib.UUID(int=k + 1)), "ec2", f"i-{k}", "running", T0) for k in range(4)
    ]
    first = ready.expect(insts[0], [], 2)
    second = ready.expect(insts[1], [], 1)
    ready.expect(insts[2], [], 0)
    fourth = ready.expect(insts[3], [], 1)

    second.samples.append(sample(insts[1].instance_uuid, "memory.usage", 1.0, T0))
    second.series -= 1
    await ready.release()
    assert parts == []  # the first still waits for two answers
    first.series -= 1
    first.samples.append(sample(insts[0].instance_uuid, "memory.usage", 2.0, T0))
    await ready.release()
    assert parts == []
    first.series -= 1
    await ready.release()
    assert [[i.remote_id for i in p.instances] for p in parts] == [["i-0", "i-1", "i-2"]]
    assert [s.volume for s in parts[0].samples] == [2.0, 1.0]
    fourth.series -= 1
    await ready.release()
    await ready.release()  # nothing left: no empty part
    assert [[i.remote_id for i in p.instances] for p in parts] == [["i-0", "i-1", "i-2"], ["i-3"]]


class FailsMidway:
    """A collector (our own Protocol) whose cycle hands on one part, then fails."""

    name = "midway"

    def __init__(self, part: Observation) -> None:
        self.part = part

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def checkpoint(self) -> dict[str, Any]:
        return {"emitted": True}

    def restore(self, state: dict[str, Any]) -> None: ...

    async def collect(self) -> Observation:
        return await whole_cycle(self.stream)

    async def stream(self, emit: Emit) -> None:
        await emit(self.part)
        raise RuntimeError("the cloud went away mid-cycle")


async def test_the_parts_of_a_cycle_that_fails_midway_reach_the_spool_and_no_checkpoint(
    tmp_path: Path,
) -> None:
    """A cycle that fails after handing on a part is counted failed and saves no checkpoint
    (the next cycle reads the whole window again); the part it handed on is not lost: the
    batcher's next flush spools every one of its samples."""
    part = cycle(125)[0]
    b = batcher(tmp_path)
    s = Scheduler(FailsMidway(part), CollectSection(), b, b.metrics)
    await s._cycle(1)
    assert s.state.last_ok is False
    assert not s.checkpoint_path.exists()
    await asyncio.wait_for(b.flush(), 10)
    samples = [x for r in spooled(b) for x in r["samples"]]
    assert len(samples) == len(part.samples)
    assert {x["instance_uuid"] for x in samples} == {i.instance_uuid for i in part.instances}
