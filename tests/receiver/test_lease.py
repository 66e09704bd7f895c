"""The reconciliation lease on the receiver's real store (SQLite here; two real receivers on
MariaDB in test_ha_bed.py): one holder at a time, taken over on expiry or at once on a clean
release, renewed by its holder, and a reconciler that runs only while it holds the lease."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from azfed.config import AzfedConfig
from azfed.receiver.lease import RECONCILE, Lease
from azfed.receiver.metrics import Metrics
from azfed.receiver.reconcile import Orphan, Reconciler
from azfed.receiver.store import Store
from structlog.testing import capture_logs

TTL = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'state.db'}")
    await s.open()
    yield s
    await s.close()


def _lease(store: Store, clock: Clock) -> Lease:
    return Lease(store, RECONCILE, TTL, clock, Metrics())


async def test_one_holder_at_a_time_and_the_holder_renews(store: Store) -> None:
    clock = Clock()
    a, b = _lease(store, clock), _lease(store, clock)
    assert a.holder != b.holder
    assert await a.renew() is True
    assert await b.renew() is False
    clock.now += TTL - 1  # a renews before expiry: b still cannot take it
    assert await a.renew() is True
    clock.now += TTL - 1
    assert await b.renew() is False
    assert await store.lease_holder(RECONCILE, clock.now) == a.holder
    assert (a.held, b.held) == (True, False)


async def test_an_expired_lease_is_taken_over_and_the_old_holder_knows_it_lost(
    store: Store,
) -> None:
    clock = Clock()
    a, b = _lease(store, clock), _lease(store, clock)
    await a.renew()
    clock.now += TTL + 1  # a died (or stalled) past its expiry
    assert await b.renew() is True
    with capture_logs() as logs:
        assert await a.renew() is False
    assert a.held is False
    assert [e["event"] for e in logs] == ["lease.lost"]
    assert await store.lease_holder(RECONCILE, clock.now) == b.holder


async def test_a_clean_release_hands_over_at_once_and_only_the_holder_can_release(
    store: Store,
) -> None:
    clock = Clock()
    a, b = _lease(store, clock), _lease(store, clock)
    await a.renew()
    await b.release()  # b does not hold it: nothing happens
    assert await store.lease_holder(RECONCILE, clock.now) == a.holder
    await a.release()
    assert await store.lease_holder(RECONCILE, clock.now) is None
    assert await b.renew() is True


async def test_the_gauge_shows_who_holds_the_lease(store: Store) -> None:
    clock = Clock()
    ma, mb = Metrics(), Metrics()
    a = Lease(store, RECONCILE, TTL, clock, ma)
    b = Lease(store, RECONCILE, TTL, clock, mb)
    await a.renew()
    await b.renew()

    def held(m: Metrics) -> float | None:
        return m.registry.get_sample_value("azfed_receiver_lease_held", {"lease": RECONCILE})

    assert (held(ma), held(mb)) == (1.0, 0.0)


class CountingReconciler(Reconciler):
    """The real loop (lease, pause, wake-up); each pass is counted instead of asking Nova."""

    runs = 0

    async def run_once(self) -> list[Orphan]:
        self.runs += 1
        return []


async def test_the_reconciler_runs_only_while_it_holds_the_lease_and_at_once_on_taking_it(
    store: Store,
) -> None:
    clock = Clock()
    config = AzfedConfig.model_validate({"reconcile": {"interval_s": 300, "lease_ttl_s": TTL}})
    other, mine = _lease(store, clock), _lease(store, clock)
    await other.renew()
    rec = CountingReconciler(config, store, None, Metrics(), clock=clock, lease=mine)  # type: ignore[arg-type]
    await mine.renew()
    loop = asyncio.create_task(rec.run_forever())
    try:
        await asyncio.sleep(0.2)
        assert rec.runs == 0  # standing by: another receiver holds the lease
        await other.release()  # the holder stopped cleanly
        await mine.renew()
        # far sooner than interval_s (300 s): the new holder runs at once
        async with asyncio.timeout(5):
            while rec.runs == 0:
                await asyncio.sleep(0.01)
        assert rec.runs == 1
    finally:
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop


async def test_a_failure_the_store_does_not_type_still_ends_the_holding_not_the_loop(
    tmp_path: Path,
) -> None:
    """Any error while renewing (here the store closed under it) makes the receiver stop
    acting as holder, and the renewal loop goes on: a stale `held` would let two receivers
    reconcile at once."""
    s = Store(f"sqlite:///{tmp_path / 'state.db'}")
    await s.open()
    lease = Lease(s, RECONCILE, 3.0, Clock(), Metrics())
    assert await lease.renew() is True
    await s.close()
    with capture_logs() as logs:
        loop = asyncio.create_task(lease.keep())
        await asyncio.sleep(0.1)
    try:
        assert lease.held is False
        assert not loop.done()
        assert "lease.renew_failed" in [e["event"] for e in logs]
    finally:
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop
