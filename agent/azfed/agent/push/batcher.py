"""The batcher: turns collectors' observations into encoded reports in the spool.

A report must be self-contained (the contract: every sample's resource is one of the report's
instances, each instance once), so the unit of packing is one instance with its samples. Units
are packed until the report reaches `batch_max_samples` or `batch_max_bytes`; one instance
with more samples than that is spread over several reports, each repeating its record.

Reports are encoded once, here (`wire.encode_body`), and the spool keeps the body bytes: a
retry must resend exactly the same body for the receiver's dedupe; the pusher signs each
attempt (`wire.signed_headers`), so the batcher never holds the secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import structlog
from azfed import wire
from azfed.agent.collect.sample import Instance, Observation, Sample, rfc3339
from azfed.agent.health import AgentMetrics
from azfed.agent.push.spool import Spool
from azfed.config import PushSection
from azfed.errors import InputError

log = structlog.get_logger(__name__)

# JSON punctuation and the envelope ({"version":2,"agent_id":...}) around the items
ENVELOPE_BYTES = 256


def wire_size(obj: dict[str, Any]) -> int:
    return len(json.dumps(obj, separators=(",", ":"))) + 1


# A sample's size is the size of its fixed part (its keys, resource type, meter, unit and type)
# plus its UUID, timestamp, volume and device: json.dumps of each of 80,000 samples per cycle
# at 10k instances was a tenth of the cycle's CPU. Fixed parts are a few per meter.
_VARIABLE = ("instance_uuid", "timestamp", "volume", "device")
_fixed_sizes: dict[tuple[Any, ...], int] = {}
# what json.dumps writes as it is: printable ASCII but the quote and the backslash
_PLAIN = re.compile(r"[ !#-\[\]-~]*")


def sample_size(obj: dict[str, Any]) -> int:
    """`wire_size(obj)` of a sample's wire form (`Sample.as_wire()`), computing only what
    varies per sample."""
    volume = obj["volume"]
    if type(volume) is float and math.isfinite(volume):
        size = len(float.__repr__(volume))
    elif type(volume) is int:
        size = len(int.__repr__(volume))
    else:  # NaN, infinities, anything unusual: as json.dumps writes it
        return wire_size(obj)
    for name in ("instance_uuid", "timestamp", "device"):
        text = obj.get(name, "")
        if not (type(text) is str and _PLAIN.fullmatch(text)):
            return wire_size(obj)  # escapes, or not a string: as json.dumps writes them
        size += len(text)
    # as_wire() gives every sample the same keys, but for the device
    key = (obj["resource_type"], obj["meter"], obj["unit"], obj["type"], "device" in obj, len(obj))
    fixed = _fixed_sizes.get(key)
    if fixed is None:
        # the same keys in the same order, the variable values empty ("" and 0)
        blank = {k: ("" if k != "volume" else 0) if k in _VARIABLE else v for k, v in obj.items()}
        fixed = _fixed_sizes[key] = wire_size(blank) - 1  # less the 0
    return fixed + size


@dataclass
class Piece:
    """An instance record with some (or all) of its samples, sized as it will be sent."""

    instance: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)
    size: int = 0


@dataclass
class Pending:
    """What has been observed and not yet written to the spool, per instance UUID."""

    instances: dict[str, Instance] = field(default_factory=dict)
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    n_samples: int = 0


class Batcher:
    """Collect observations; write them to the spool as reports by size and by time."""

    def __init__(
        self, cfg: PushSection, agent_id: str, spool: Spool, metrics: AgentMetrics
    ) -> None:
        self.cfg = cfg
        self.agent_id = agent_id
        self.spool = spool
        self.metrics = metrics
        self.max_samples = min(cfg.batch_max_samples, wire.MAX_SAMPLES)
        self._pending = Pending()
        # the instances of the latest observation: a sample whose instance record was already
        # flushed still needs that record in its own report (kept per cycle, so it stays bounded)
        self._known: dict[str, Instance] = {}
        # the last report of a write made while parts of a cycle were still coming: not full
        # yet, so it waits for them (written by the next write, whichever it is)
        self._open: list[Piece] = []
        self._lock = asyncio.Lock()  # one flush at a time, so seqs reach the spool in order
        self.spooled = asyncio.Event()  # set after each write: the pusher's wake-up call

    async def add(self, obs: Observation) -> None:
        """Take a cycle's findings, or a part of them; once a report's worth is pending, write
        the full reports at once (back-pressure) and keep the last, which later parts may
        fill, for the next write."""
        p = self._pending
        if obs.instances:
            self._known = {i.instance_uuid: i for i in obs.instances}
        for inst in obs.instances:
            p.instances[inst.instance_uuid] = inst
        for s in obs.samples:
            p.samples.setdefault(s.instance_uuid, []).append(s)
        p.n_samples += len(obs.samples)
        self.metrics.count("collected", len(obs.samples))
        if p.n_samples + sum(len(piece.samples) for piece in self._open) >= self.max_samples:
            await self._write(keep_open=True)

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every `flush_interval_s` until `stop`, then once more."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.cfg.flush_interval_s)
            await self.flush()

    async def flush(self) -> int:
        """Write everything pending to the spool; answer how many reports were written."""
        return await self._write(keep_open=False)

    async def _write(self, *, keep_open: bool) -> int:
        async with self._lock:
            pending, self._pending = self._pending, Pending()
            opened, self._open = self._open, []
            # the report left open by the last write comes first: packed again with what
            # followed, it gives the reports one packing of everything would have given
            batches = self._pack(itertools.chain(opened, self._pieces(pending)))
            written = 0
            batch = next(batches, None)
            while batch is not None:
                following = next(batches, None)
                if following is None and keep_open:
                    self._open = batch
                    break
                written += await self._spool_report(batch)
                batch = following
            if written:
                self.spooled.set()
            return written

    # --- packing ---------------------------------------------------------------------------

    def _pieces(self, p: Pending) -> Iterator[Piece]:
        uuids = list(p.instances) + [u for u in p.samples if u not in p.instances]
        for uuid in uuids:
            inst = p.instances.get(uuid) or self._known.get(uuid)
            samples = p.samples.get(uuid, [])
            if inst is None:
                self.metrics.drop("no_instance", len(samples))
                log.error("samples.dropped", why="instance never observed", instance_uuid=uuid)
                continue
            yield from self._split(inst.as_wire(), [s.as_wire() for s in samples])

    def _split(self, inst: dict[str, Any], samples: list[dict[str, Any]]) -> Iterator[Piece]:
        piece = Piece(inst, [], wire_size(inst) + ENVELOPE_BYTES)
        for s in samples:
            size = sample_size(s)
            if piece.samples and (
                len(piece.samples) >= self.max_samples
                or piece.size + size > self.cfg.batch_max_bytes
            ):
                yield piece
                piece = Piece(inst, [], wire_size(inst) + ENVELOPE_BYTES)
            piece.samples.append(s)
            piece.size += size
        yield piece

    def _pack(self, pieces: Iterator[Piece]) -> Iterator[list[Piece]]:
        batch: list[Piece] = []
        n_samples = size = 0
        for piece in pieces:
            over = (
                n_samples + len(piece.samples) > self.max_samples
                or size + piece.size > self.cfg.batch_max_bytes
                or len(batch) >= wire.MAX_INSTANCES
            )
            if batch and over:
                yield batch
                batch, n_samples, size = [], 0, 0
            batch.append(piece)
            n_samples += len(piece.samples)
            size += piece.size
        if batch:
            yield batch

    # --- encoding --------------------------------------------------------------------------

    async def _spool_report(self, pieces: list[Piece]) -> int:
        samples = [s for p in pieces for s in p.samples]
        report = {
            "sent_at": rfc3339(dt.datetime.now(dt.timezone.utc)),
            "instances": [p.instance for p in pieces],
            "samples": samples,
        }
        seq = await asyncio.to_thread(self.spool.allocate_seq)
        # read once: the pusher may start a new epoch meanwhile; body and spool entry agree
        report["epoch"] = epoch = self.spool.epoch
        try:
            body = self.encode(report, seq)
        except InputError as err:
            # our own bug, not the receiver's: never send it, say loudly what was wrong
            self.metrics.drop("invalid", len(samples))
            log.exception("report.invalid", then="dropped", seq=seq, problems=str(err))
            return 0
        await asyncio.to_thread(
            self.spool.put, seq, body, samples=len(samples), gzip=self.cfg.gzip, epoch=epoch
        )
        log.info("report.spooled", seq=seq, instances=len(pieces), samples=len(samples),
                 bytes=len(body))  # fmt: skip
        return 1

    def encode(self, report: dict[str, Any], seq: int) -> bytes:
        """The body bytes of report `seq` (gzip if configured).

        Not schema-checked here: the records come from typed dataclasses, and the full
        jsonschema pass cost as much CPU as the whole collection (bench/bench_agent.py). The
        receiver validates every report (tests push the agent's reports to the real one)."""
        return wire.encode_body(
            report, agent_id=self.agent_id, seq=seq, gzip=self.cfg.gzip, check=False
        )
