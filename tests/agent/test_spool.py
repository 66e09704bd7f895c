"""The disk spool: order, durability across reopen, bounds, and corrupt files set aside."""

from __future__ import annotations

from pathlib import Path

import pytest
from azfed.agent.health import AgentMetrics
from azfed.agent.push.spool import HEADER, Spool
from azfed.config import SpoolSection
from structlog.testing import capture_logs


def spool_at(path: Path, **kw: float) -> Spool:
    s = Spool(SpoolSection(path=path, **kw), AgentMetrics())  # type: ignore[arg-type]
    s.open()
    return s


def fill(s: Spool, n: int, size: int = 100) -> list[int]:
    seqs = []
    for _ in range(n):
        seq = s.allocate_seq()
        s.put(seq, bytes([seq % 256]) * size, samples=10, gzip=False)
        seqs.append(seq)
    return seqs


def drain(s: Spool) -> list[int]:
    out = []
    while (item := s.oldest()) is not None:
        out.append(item.entry.seq)
        s.remove(item.entry)
    return out


def dropped(s: Spool, reason: str) -> float | None:
    return s.metrics.registry.get_sample_value(
        "azfed_agent_samples_dropped_total", {"reason": reason}
    )


def test_reports_come_back_in_order_after_a_reopen(tmp_path: Path) -> None:
    """What was spooled before a restart is replayed, oldest first, byte for byte."""
    s = spool_at(tmp_path)
    seqs = fill(s, 5)
    again = spool_at(tmp_path)
    item = again.oldest()
    assert item is not None
    assert item.body == bytes([seqs[0]]) * 100
    assert drain(again) == seqs


def test_sequence_numbers_are_never_reused_after_a_restart_with_an_empty_spool(
    tmp_path: Path,
) -> None:
    """Reusing a seq would make the receiver drop new data as a duplicate."""
    s = spool_at(tmp_path)
    fill(s, 3)
    drain(s)
    assert spool_at(tmp_path).allocate_seq() == 3


def test_a_full_spool_drops_the_oldest_reports_and_counts_their_samples(tmp_path: Path) -> None:
    """Bounded in bytes: past max_bytes the oldest go first, and each drop is counted."""
    s = spool_at(tmp_path, max_bytes=2000)
    seqs = fill(s, 10, size=300)
    left = drain(s)
    assert left == seqs[-len(left) :]
    assert len(left) < 10
    assert dropped(s, "spool_full") == 10 * (10 - len(left))


def test_reports_older_than_max_age_are_dropped_and_counted(tmp_path: Path) -> None:
    """Bounded in age too: stale usage is not worth replaying after a week-long outage."""
    now = [1000.0]
    s = Spool(SpoolSection(path=tmp_path, max_age_s=60), AgentMetrics(), clock=lambda: now[0])
    s.open()
    fill(s, 2)
    now[0] += 61
    fill(s, 1)
    assert drain(s) == [2]
    assert dropped(s, "spool_age") == 20


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_corrupt_file_is_set_aside_with_advice_and_the_rest_replays(
    tmp_path: Path, damage: str
) -> None:
    """A torn or bit-rotten report is moved to corrupt/ with a message saying what to do;
    it never blocks the reports after it."""
    s = spool_at(tmp_path)
    fill(s, 3)
    victim = sorted(tmp_path.glob("*.rep"))[1]
    data = bytearray(victim.read_bytes())
    if damage == "truncate":
        data = data[: HEADER.size + 3]
    else:
        data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    with capture_logs() as logs:
        again = spool_at(tmp_path)
        assert drain(again) == [0, 2]
    assert (tmp_path / "corrupt" / victim.name).exists()
    events = [e for e in logs if e["log_level"] == "error"]
    assert events[0]["event"] == "spool.corrupt_file"
    assert "delete it" in events[0]["hint"]
    assert events[0]["moved_to"].endswith(victim.name)


def test_half_written_temporaries_are_removed_at_start(tmp_path: Path) -> None:
    """A write killed before its rename was never acknowledged: it is discarded."""
    s = spool_at(tmp_path)
    fill(s, 1)
    (tmp_path / "00000000000000000001.rep.tmp").write_bytes(b"partial")
    again = spool_at(tmp_path)
    assert not list(tmp_path.glob("*.tmp"))
    assert drain(again) == [0]


def test_split_parts_take_the_place_of_the_whole_in_the_order(tmp_path: Path) -> None:
    """The halves of a report too large for the receiver are sent before its successors."""
    s = spool_at(tmp_path)
    fill(s, 2)
    first = s.oldest()
    assert first is not None
    a, b = s.allocate_seq(), s.allocate_seq()
    s.replace(first.entry, [(a, b"half-a", 5), (b, b"half-b", 5)], gzip=False)
    assert drain(s) == [a, b, 1]
