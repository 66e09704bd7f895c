"""The spool epoch (issue 16): an agent that lost its spool starts again at seq 0 and is
accepted, and a key the receiver holds for another body (422 key_conflict) is renumbered
under a new epoch once instead of being retried forever. Against the REAL receiver."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import shutil
import uuid as uuidlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from azfed import wire
from azfed.agent.collect.sample import Instance, Observation, Sample

from tests.agent.live_receiver import SECRET, LiveReceiver, serve_receiver
from tests.agent.test_push import AGENT, Pipeline

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(minutes=30)


def observation(n_points: int, start: int = 0) -> Observation:
    """One instance with `n_points` memory.usage samples, a minute apart from `start` minutes."""
    u = str(uuidlib.UUID(int=7))
    obs = Observation(instances=[Instance(u, "ec2", "i-0000007", "running", NOW)])
    obs.samples = [
        Sample(u, "memory.usage", "MiB", "gauge", float(p), NOW + dt.timedelta(minutes=start + p))
        for p in range(n_points)
    ]
    return obs


@pytest.fixture
async def receiver(tmp_path: Path) -> AsyncIterator[LiveReceiver]:
    async with serve_receiver(tmp_path, {AGENT: SECRET}) as rcv:
        yield rcv


async def _deliver(pipe: Pipeline, obs: Observation) -> None:
    task = asyncio.create_task(pipe.pusher.run())
    try:
        await pipe.send(obs)
        await pipe.until_drained()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_agent_that_lost_its_spool_starts_again_at_seq_0_and_is_accepted(
    tmp_path: Path, receiver: LiveReceiver
) -> None:
    """A new spool has a new epoch: its seq 0 is a new key, not a conflict with the old one."""
    first = Pipeline(tmp_path / "old", receiver.url)
    await _deliver(first, observation(3))
    lost = Pipeline(tmp_path / "new", receiver.url)  # the disk is gone: a fresh spool
    assert lost.spool.epoch != first.spool.epoch
    await _deliver(lost, observation(3, start=3))
    assert receiver.faults.statuses() == [200, 200]
    assert receiver.seqs() == [0, 0]
    keys = receiver.faults.keys()
    assert keys == [f"{AGENT}:{first.spool.epoch}:0", f"{AGENT}:{lost.spool.epoch}:0"]
    assert [b.report["epoch"] for b in receiver.sink.batches] == [
        first.spool.epoch,
        lost.spool.epoch,
    ]


async def test_a_key_conflict_renumbers_the_report_under_a_new_epoch_once(
    tmp_path: Path, receiver: LiveReceiver
) -> None:
    """A spool restored from a backup reuses (epoch, seq) for new data: the receiver answers
    422 key_conflict, the pusher starts a new epoch, renumbers the report, and it is written;
    nothing is retried under the used key."""
    pipe = Pipeline(tmp_path, receiver.url)
    backup = tmp_path / "state-backup.json"
    shutil.copy(pipe.spool.dir / "state.json", backup)
    await _deliver(pipe, observation(3))
    old_epoch = pipe.spool.epoch

    shutil.copy(backup, pipe.spool.dir / "state.json")  # the restore
    restored = Pipeline(tmp_path, receiver.url)
    assert restored.spool.epoch == old_epoch
    await _deliver(restored, observation(3, start=3))

    assert receiver.faults.statuses() == [200, 422, 200]
    keys = receiver.faults.keys()
    assert keys[0] == keys[1] == f"{AGENT}:{old_epoch}:0"
    assert restored.spool.epoch != old_epoch
    assert keys[2] == f"{AGENT}:{restored.spool.epoch}:1"
    assert len(receiver.samples()) == 6  # both reports' samples, once each
    state = json.loads((pipe.spool.dir / "state.json").read_bytes())
    assert state == {"next_seq": 2, "epoch": restored.spool.epoch}
    assert restored.value("azfed_agent_samples_total", stage="pushed") == 3


async def test_a_renumbered_report_that_conflicts_again_is_dropped_and_counted(
    tmp_path: Path, receiver: LiveReceiver
) -> None:
    """The pusher renumbers a report once: if the receiver still answers key_conflict, the
    report is dropped and counted, not retried forever."""
    pipe = Pipeline(tmp_path, receiver.url)
    receiver.faults.answer(422, times=2)  # stands in for a receiver that keeps conflicting
    await _deliver(pipe, observation(2))
    assert receiver.faults.statuses() == [422, 422]
    assert pipe.value("azfed_agent_samples_dropped_total", reason="key_conflict") == 2
    assert len(pipe.spool) == 0


def test_a_spool_from_before_epochs_gets_one_and_keeps_its_sequence(tmp_path: Path) -> None:
    """Upgrading an agent: its state.json has only next_seq; the spool keeps counting from
    there under a new epoch, and an old spooled report keeps its epoch-less key."""
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    (spool_dir / "state.json").write_text('{"next_seq": 41}')
    pipe = Pipeline(tmp_path, "http://127.0.0.1:9")
    assert pipe.spool.allocate_seq() == 41
    assert re.fullmatch(wire.EPOCH_PATTERN, pipe.spool.epoch)
    state = json.loads((spool_dir / "state.json").read_bytes())
    assert state == {"next_seq": 42, "epoch": pipe.spool.epoch}
