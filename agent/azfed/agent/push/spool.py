"""The durable disk spool: every report waits here until the receiver has accepted it.

One file per report, written to a temporary name, fsynced, renamed into place and the folder
fsynced, so after a kill -9 or a power cut a report file is either whole or absent. Each file
is framed (magic, lengths, CRC-32 over everything after the header) so a torn or bit-rotten file
is recognised: it is moved to `corrupt/` with a message saying what to do, never replayed and
never allowed to stop the agent.

File names sort in send order: a report's key is its sequence number, zero-padded; the halves
of a report the receiver found too large get the parent's key plus "a" and "b", which sort
right after the parent and before its successor.

The spool is bounded in bytes and in age; when either is exceeded the oldest reports go first
and every sample dropped is counted. Deleting a sent report needs no fsync: if the deletion is
lost in a crash, the report is sent again and the receiver dedupes it by its Idempotency-Key.

The spool has an epoch, a random id made with its state file and written into every report
(`wire.EPOCH_PATTERN`): keys are `<agent>:<epoch>:<seq>`, so an agent whose spool was lost
starts again at seq 0 without meeting its old keys at the receiver. A receiver that still finds
a key used (422 key_conflict: a spool restored from a backup) makes the pusher call
`new_epoch` and renumber that report.

The methods are blocking (file I/O, fsync): call them through `asyncio.to_thread`. A lock
keeps the index consistent between the batcher's writes and the pusher's reads.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from azfed import wire
from azfed.agent.health import AgentMetrics
from azfed.config import SpoolSection
from azfed.errors import AzfedError
from azfed.files import TMP_SUFFIX, write_atomic

log = structlog.get_logger(__name__)

_EPOCH = re.compile(wire.EPOCH_PATTERN)


def _new_epoch() -> str:
    return secrets.token_hex(8)


MAGIC = b"AZSP"
VERSION = 1
# magic, version, meta length, body length, CRC-32 of meta + body
HEADER = struct.Struct(">4sBIII")
SUFFIX = ".rep"
STATE_FILE = "state.json"


class CorruptSegmentError(AzfedError):
    """A spool file failed its framing or checksum. The spool sets it aside in `corrupt/`
    and moves on: inspect the file, then delete it."""


class SpoolStateError(AzfedError):
    """The spool's sequence-number state is unreadable: the agent cannot start safely."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One spooled report, as the index knows it (the body stays on disk)."""

    key: str
    seq: int
    path: Path
    size: int
    samples: int
    created: float
    epoch: str | None = None  # None: spooled by an agent before epochs


@dataclass(frozen=True, slots=True)
class Spooled:
    """A report read back from disk."""

    entry: Entry
    body: bytes
    gzip: bool


def frame(meta: dict[str, Any], body: bytes) -> bytes:
    m = json.dumps(meta, separators=(",", ":")).encode()
    crc = zlib.crc32(body, zlib.crc32(m))
    return HEADER.pack(MAGIC, VERSION, len(m), len(body), crc) + m + body


def unframe(data: bytes) -> tuple[dict[str, Any], bytes]:
    """Check and split one file's bytes; raise CorruptSegmentError saying what is wrong."""
    if len(data) < HEADER.size:
        raise CorruptSegmentError(f"truncated header ({len(data)} bytes)")
    magic, version, mlen, blen, crc = HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise CorruptSegmentError(f"not an azfed spool file (magic {magic!r}, v{version})")
    if len(data) != HEADER.size + mlen + blen:
        raise CorruptSegmentError(f"length {len(data)} != {HEADER.size + mlen + blen} framed")
    meta, body = data[HEADER.size : HEADER.size + mlen], data[HEADER.size + mlen :]
    if zlib.crc32(body, zlib.crc32(meta)) != crc:
        raise CorruptSegmentError("checksum mismatch")
    try:
        return json.loads(meta), body
    except ValueError as err:
        raise CorruptSegmentError(f"bad metadata: {err}") from None


class Spool:
    """A bounded, ordered, crash-safe queue of encoded reports on disk."""

    def __init__(
        self, cfg: SpoolSection, metrics: AgentMetrics, clock: Callable[[], float] = time.time
    ) -> None:
        self.cfg = cfg
        self.dir = Path(cfg.path)
        self.corrupt_dir = self.dir / "corrupt"
        self.metrics = metrics
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: list[Entry] = []
        self._bytes = 0
        self._next_seq = 0
        self.epoch = ""

    # --- start-up -------------------------------------------------------------------------

    def open(self) -> None:
        """Create the folder, drop half-written temporaries, index and check every report."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for tmp in self.dir.glob("*" + TMP_SUFFIX):
            tmp.unlink()  # a write that never reached its rename: it was never acknowledged
        for path in sorted(self.dir.glob("*" + SUFFIX)):
            entry = self._index_file(path)
            if entry is not None:
                self._entries.append(entry)
                self._bytes += entry.size
        next_seq, epoch = self._read_state()
        self._next_seq = max([next_seq, *(e.seq + 1 for e in self._entries)])
        self.epoch = epoch or _new_epoch()
        if epoch is None:  # a new spool, or one from before epochs: its epoch starts now
            self._write_state()
        self._publish()
        log.info("spool.opened", path=str(self.dir), reports=len(self._entries),
                 bytes=self._bytes, next_seq=self._next_seq, epoch=self.epoch)  # fmt: skip

    def _index_file(self, path: Path) -> Entry | None:
        try:
            meta, _ = unframe(path.read_bytes())
            return self._entry(path.name[: -len(SUFFIX)], path, meta)
        except (CorruptSegmentError, KeyError, TypeError) as err:
            self._set_aside(path, str(err))
            return None

    def _entry(self, key: str, path: Path, meta: dict[str, Any]) -> Entry:
        size = path.stat().st_size
        epoch = meta.get("epoch")
        return Entry(
            key, int(meta["seq"]), path, size, int(meta["samples"]), float(meta["created"]),
            str(epoch) if epoch else None,
        )  # fmt: skip

    def _set_aside(self, path: Path, why: str) -> None:
        self.corrupt_dir.mkdir(exist_ok=True)
        dest = self.corrupt_dir / path.name
        os.replace(path, dest)
        self.metrics.reports.labels("corrupt").inc()
        log.error(
            "spool.corrupt_file", file=str(path), moved_to=str(dest), reason=why,
            then="set aside; its report will not be sent",
            hint="inspect it, then delete it (the agent has already moved on)",
        )  # fmt: skip

    def _read_state(self) -> tuple[int, str | None]:
        path = self.dir / STATE_FILE
        try:
            state = json.loads(path.read_bytes())
            next_seq, epoch = int(state["next_seq"]), state.get("epoch")
        except FileNotFoundError:
            return 0, None
        except (ValueError, KeyError, TypeError) as err:
            raise self._state_error(path, str(err)) from None
        if epoch is not None and not (isinstance(epoch, str) and _EPOCH.match(epoch)):
            raise self._state_error(path, f"epoch {epoch!r} is not {wire.EPOCH_PATTERN}")
        return next_seq, epoch

    @staticmethod
    def _state_error(path: Path, why: str) -> SpoolStateError:
        # written atomically, so this is tampering or disk rot: refuse to reuse numbers
        return SpoolStateError(
            f"{path} is unreadable ({why}); restore it or set next_seq above the last "
            "sequence number the receiver has seen, then restart"
        )

    # --- writing ---------------------------------------------------------------------------

    def allocate_seq(self) -> int:
        """The next sequence number, persisted before use so a restart never reuses it."""
        with self._lock:
            seq = self._next_seq
            self._next_seq += 1
            self._write_state()
            return seq

    def new_epoch(self) -> str:
        """Start a new epoch (the receiver found a key of this one used): persisted before
        use, like a sequence number."""
        with self._lock:
            self.epoch = _new_epoch()
            self._write_state()
        log.warning("spool.new_epoch", epoch=self.epoch)
        return self.epoch

    def _write_state(self) -> None:
        state = {"next_seq": self._next_seq, "epoch": self.epoch}
        write_atomic(self.dir / STATE_FILE, json.dumps(state).encode())

    def put(
        self, seq: int, body: bytes, *, samples: int, gzip: bool, key: str = "",
        epoch: str | None = None,
    ) -> Entry:  # fmt: skip
        """Store one encoded report durably, then enforce the bounds (oldest dropped first).
        `epoch` is the one written in the report (None: a report without one)."""
        key = key or f"{seq:020d}"
        meta: dict[str, Any] = {
            "seq": seq,
            "samples": samples,
            "gzip": gzip,
            "created": self.clock(),
        }
        if epoch:
            meta["epoch"] = epoch
        path = self.dir / (key + SUFFIX)
        write_atomic(path, frame(meta, body))
        entry = self._entry(key, path, meta)
        with self._lock:
            self._entries.append(entry)
            self._entries.sort(key=lambda e: e.key)
            self._bytes += entry.size
            self._enforce_bounds()
        self.metrics.count("spooled", samples)
        return entry

    def _enforce_bounds(self) -> None:
        horizon = self.clock() - self.cfg.max_age_s
        while self._entries and self._entries[0].created < horizon:
            self._drop(self._entries[0], "spool_age")
        while len(self._entries) > 1 and self._bytes > self.cfg.max_bytes:
            self._drop(self._entries[0], "spool_full")
        self._publish()

    def _drop(self, entry: Entry, reason: str) -> None:
        self._forget(entry)
        self.metrics.drop(reason, entry.samples)
        log.warning("spool.dropped", reason=reason, seq=entry.seq,
                    samples=entry.samples, max_bytes=self.cfg.max_bytes,
                    max_age_s=self.cfg.max_age_s)  # fmt: skip

    def _forget(self, entry: Entry) -> None:
        if entry in self._entries:
            self._entries.remove(entry)
            self._bytes -= entry.size
        entry.path.unlink(missing_ok=True)

    # --- reading ---------------------------------------------------------------------------

    def oldest(self) -> Spooled | None:
        """The first report in send order, read and checked; corrupt ones are set aside."""
        while True:
            with self._lock:
                self._enforce_bounds()
                if not self._entries:
                    return None
                entry = self._entries[0]
            try:
                meta, body = unframe(entry.path.read_bytes())
                return Spooled(entry, body, bool(meta.get("gzip")))
            except FileNotFoundError:
                pass  # dropped for the bounds meanwhile
            except CorruptSegmentError as err:
                with self._lock:
                    self._forget_index_only(entry)
                self._set_aside(entry.path, str(err))

    def _forget_index_only(self, entry: Entry) -> None:
        if entry in self._entries:
            self._entries.remove(entry)
            self._bytes -= entry.size
        self._publish()

    def remove(self, entry: Entry) -> None:
        """The receiver has the report (or refused it for good): forget it."""
        with self._lock:
            self._forget(entry)
            self._publish()

    def replace(
        self,
        entry: Entry,
        parts: list[tuple[int, bytes, int]],
        gzip: bool,
        epoch: str | None = None,
    ) -> None:
        """Swap a report for its parts (seq, body, samples; all of `epoch`), in its place in
        the order.

        The parts are written before the whole is removed: a crash in between sends both,
        which the receiver stores once (Gnocchi keeps one measure per timestamp)."""
        for n, (seq, body, samples) in enumerate(parts):
            self.put(seq, body, samples=samples, gzip=gzip, key=entry.key + "ab"[n], epoch=epoch)
        self.remove(entry)

    # --- state -----------------------------------------------------------------------------

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def full(self) -> bool:
        return self._bytes >= self.cfg.max_bytes

    def _publish(self) -> None:
        self.metrics.spool_bytes.set(self._bytes)
        self.metrics.spool_reports.set(len(self._entries))
