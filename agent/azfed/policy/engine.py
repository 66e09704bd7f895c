"""The policy as a long-lived service: the part of the scheduler filter that does not need Nova.

`PolicyEngine.filter(hosts, request)` reads the load from the host states, asks `decide`, keeps
the hosts of the chosen AZ, remembers the decision (the mode and the cooldown clocks live here,
in the scheduler process, and in an optional state file so a restart does not forget them),
and logs one canonical line per decision.

The policy file is re-read when it changes (stat per request: one syscall). An invalid new file
is refused with an error logged, and the last good policy stays in force. With no good policy
at all, nothing bursts: only hosts outside the configured public AZs are kept.
"""

from __future__ import annotations

import atexit
import json
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import structlog
from azfed.errors import PolicyError
from azfed.files import write_atomic
from azfed.policy.budget import NOTHING_SPENT, UNKNOWN_SPEND, Spend
from azfed.policy.capacity_source import CapacityEvent, ReceiverCapacity
from azfed.policy.decide import BURST_TRAIT, HINT, Decision, Flavor, History, Request, decide
from azfed.policy.load import (
    HostLike,
    Load,
    LocalLoad,
    PublicUsage,
    group_by_az,
    host_az,
    load_from_hosts,
)
from azfed.policy.model import Backoff, Policy, load_policy
from azfed.policy.spend_source import ReceiverSpend

H = TypeVar("H", bound=HostLike)

# A uuid we sent public is priced from our own record until Nova reports it on the host, and
# forgotten once it has been gone from every public host this long.
PRICE_GRACE_S = 600.0
RECENT_DECISIONS = 200
# how long the local load seen in one request stands in for requests that cannot see it
LOCAL_SEEN_MAX_AGE_S = 120.0
# a cloud's message, as kept in the history (the whole one is in the receiver and the logs)
REASON_MAX = 300
# the fallback order of this many recent boots, for the weigher
ORDERS_KEPT = 1000


@dataclass(frozen=True)
class _Stamp:
    mtime_ns: int
    size: int
    ino: int


_NEVER_READ = _Stamp(-1, -1, -1)


def _stamp(path: Path) -> _Stamp | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return _Stamp(st.st_mtime_ns, st.st_size, st.st_ino)


class _StateWriter:
    """Writes the filter's newest state in a thread of its own, off the scheduling path: a
    durable write (two fsyncs) took the filter from 0.5 to 4 ms p50. The filter hands each new
    state over and goes on; a write under way is followed by one write of the newest state
    handed over meanwhile (those in between are superseded, as the next write would have
    replaced them anyway). A crash loses at most the state of the last milliseconds."""

    def __init__(self, path: Path, log: Any) -> None:
        self._path, self._log = path, log
        self._cond = threading.Condition()
        self._pending: dict[str, Any] | None = None
        self._busy = False
        self._thread: threading.Thread | None = None

    def submit(self, doc: dict[str, Any]) -> None:
        with self._cond:
            self._pending = doc
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="azfed-filter-state", daemon=True
                )
                self._thread.start()
                # a scheduler stopping cleanly writes what it decided last
                atexit.register(self.flush, 5.0)
            self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every state handed over is written; False if `timeout` came first."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._pending is None and not self._busy, timeout=timeout
            )

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None)
                doc, self._pending, self._busy = self._pending, None, True
            try:
                write_atomic(self._path, json.dumps(doc).encode())
            except OSError as err:  # the decision stands; only the memory of it is at risk
                # the error names the file and the cause: no traceback
                self._log.error(
                    "filter_state.unwritable", state_file=str(self._path), error=str(err)
                )
            except Exception:  # a bug: logged whole, and the next state is written still
                self._log.exception("filter_state.unwritable", state_file=str(self._path))
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


class PolicyEngine:
    """One per scheduler process. Thread-safe: Nova schedules requests concurrently."""

    def __init__(
        self,
        policy_file: str | Path,
        *,
        public_azs: Sequence[str] = (),
        state_file: str | Path | None = None,
        log: Any = None,
        clock: Callable[[], float] = time.time,
        spend_url: str | None = None,
        capacity_url: str | None = None,
    ) -> None:
        self.policy_file = Path(policy_file)
        self.public_azs = frozenset(public_azs)
        self.state_file = Path(state_file) if state_file else None
        self.log = log if log is not None else structlog.get_logger("azfed.policy")
        self.clock = clock
        # the spend so far, for the policy's spend budgets: the receiver counts it
        self._spend = ReceiverSpend(spend_url, self.log) if spend_url else None
        # the public AZs' capacity failures, which the proxy hosts' drivers report to it
        self._capacity = ReceiverCapacity(capacity_url, self.log) if capacity_url else None
        # each recent boot's AZs in the policy's order, for the weigher (bounded)
        self._orders: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._lock = threading.Lock()
        self._policy: Policy | None = None
        self._stamp: _Stamp | None = _NEVER_READ
        self._history = History()
        self._prices: dict[str, tuple[float, float]] = {}  # uuid -> (hourly price, seen at)
        # the last decisions, for audit and for `explain`; bounded, like everything kept here
        self._recent: deque[dict[str, Any]] = deque(maxlen=RECENT_DECISIONS)
        self._local_seen: tuple[LocalLoad, float] | None = None
        self._writer = _StateWriter(self.state_file, self.log) if self.state_file else None
        self._restore()

    # --- policy file -----------------------------------------------------------------------

    def current(self) -> Policy | None:
        """The policy in force: re-read if the file changed; the last good one if it is bad."""
        stamp = _stamp(self.policy_file)
        if stamp == self._stamp:
            return self._policy
        self._stamp = stamp
        try:
            self._policy = load_policy(self.policy_file)
        except PolicyError as err:
            kept = self._policy.source if self._policy else None
            # an operator's mistake, not a bug: the problems say it all, no traceback
            self.log.error(  # noqa: TRY400
                "policy.invalid",
                policy_file=str(self.policy_file),
                problems=[str(p) for p in err.problems],
                kept_policy=kept,
                action="keeping the last good policy" if kept else "not bursting",
            )
        else:
            warnings = [str(w) for w in self._policy.warnings]
            self.log.info("policy.loaded", policy_file=str(self.policy_file), warnings=warnings)
        return self._policy

    # --- state -----------------------------------------------------------------------------

    @property
    def history(self) -> History:
        return self._history

    def record_failure(
        self, az: str, flavor: str, at: float | None = None, reason: str = ""
    ) -> None:
        """A boot of `flavor` failed in public AZ `az` (at `at`, default now) for lack of
        capacity, a limit or throttling: the next boots of it skip that AZ for the policy's
        back-off, which doubles with each consecutive failure (History.with_failure)."""
        with self._lock:
            when = self.clock() if at is None else at
            backoff = self._backoff()
            self._history = self._history.with_failure(
                az, flavor, when, backoff, reason[:REASON_MAX]
            )
            self._save(None, None)

    def record_success(self, az: str, flavor: str) -> None:
        """A boot of `flavor` launched in `az`: its failure streak there is over."""
        with self._lock:
            self._history = self._history.with_success(az, flavor)
            self._save(None, None)

    def _backoff(self) -> Backoff:
        policy = self.current()
        return policy.capacity_backoff if policy is not None else Backoff()

    def _fold(self, events: list[CapacityEvent], policy: Policy) -> None:
        """The receiver's new capacity events into the history (under the lock)."""
        for e in events:
            if e.outcome == "failed":
                self._history = self._history.with_failure(
                    e.az, e.flavor, e.at, policy.capacity_backoff, e.reason[:REASON_MAX]
                )
            else:
                self._history = self._history.with_success(e.az, e.flavor)
            self.log.info("capacity.event_folded", az=e.az, flavor=e.flavor, outcome=e.outcome,
                          at=e.at, reason=e.reason)  # fmt: skip

    def _restore(self) -> None:
        if self.state_file is None or not self.state_file.exists():
            return
        try:
            data = json.loads(self.state_file.read_text("utf-8"))
            self._history = History.from_dict(data["history"])
            self._prices = {u: (float(p), float(t)) for u, (p, t) in data["prices"].items()}
            if self._capacity is not None:
                self._capacity.after = int(data.get("capacity_after") or 0)
            if data.get("local_seen"):
                local, at = data["local_seen"]
                self._local_seen = (LocalLoad(**local), float(at))
            # the recent decisions outlive a restart too (the dashboard lists them)
            self._recent.extend(d for d in data.get("recent") or [] if isinstance(d, dict))
        except (OSError, ValueError, KeyError, TypeError) as err:
            self.log.error(  # noqa: TRY400 - start with a fresh history; the error says why
                "filter_state.unreadable", state_file=str(self.state_file), error=str(err)
            )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the state file holds the newest state (it is written in the background);
        False if `timeout` came first."""
        return self._writer.flush(timeout) if self._writer else True

    def _save(
        self, decision: Decision | None, load: Load | None, request: Request | None = None
    ) -> None:
        if self._writer is None:
            return
        doc = {
            "history": self._history.as_dict(),
            "last_request": _request_dict(request) if request else None,
            "prices": {u: list(v) for u, v in self._prices.items()},
            "last_decision": decision.as_dict() if decision else None,
            "recent": list(self._recent),
            "local_seen": (
                [asdict(self._local_seen[0]), self._local_seen[1]] if self._local_seen else None
            ),
            "last_load": _load_dict(load) if load else None,
            "capacity_after": self._capacity.after if self._capacity else None,
            "saved_at": self.clock(),
        }
        self._writer.submit(doc)

    def _prune_prices(self, alive: set[str], now: float) -> None:
        for uuid, (price, seen) in list(self._prices.items()):
            if uuid in alive:
                self._prices[uuid] = (price, now)
            elif now - seen > PRICE_GRACE_S:
                del self._prices[uuid]

    # --- the filter ------------------------------------------------------------------------

    def filter(
        self, hosts: Iterable[H], request: Request, *, with_fallback: bool = False
    ) -> tuple[list[H], Decision | None]:
        """The hosts this request may use, and the decision that chose them. `with_fallback`
        keeps the hosts of the decision's fallback AZs too, as alternates for a boot that
        fails for lack of capacity (the weigher then puts them in the policy's order)."""
        hs = list(hosts)
        by_az = group_by_az(hs)  # once: the AZ lookup is most of the per-host cost
        with self._lock:
            policy = self.current()
            if policy is not None:
                decision, load = self._decide(by_az, request, policy)
        if policy is None:
            kept = [h for h in hs if host_az(h) not in self.public_azs]
            self.log.error("placement.decided", rule="no_valid_policy", hosts_out=len(kept))
            return kept, None
        azs = self._azs(decision, request, with_fallback)
        kept = [h for az in azs for h in by_az.get(az, ())]
        self._log(decision, load, request, len(hs), len(kept))
        return kept, decision

    def _azs(self, decision: Decision, request: Request, with_fallback: bool) -> tuple[str, ...]:
        if decision.az is None:
            return ()
        if not with_fallback:
            return (decision.az,)
        azs = (decision.az, *decision.fallback)
        if request.instance_uuid:
            with self._lock:
                self._orders[request.instance_uuid] = azs
                self._orders.move_to_end(request.instance_uuid)
                while len(self._orders) > ORDERS_KEPT:
                    self._orders.popitem(last=False)
        return azs

    def order(self, instance_uuid: str) -> tuple[str, ...]:
        """The AZs the last decision for this boot allows, in the policy's order (empty: none
        known)."""
        with self._lock:
            return self._orders.get(instance_uuid, ())

    def _decide(
        self, by_az: dict[str, list[H]], request: Request, policy: Policy
    ) -> tuple[Decision, Load]:
        now = self.clock()
        if self._capacity is not None:
            self._fold(self._capacity.new_events(now), policy)
        public_hosts = [h for az in policy.public_azs for h in by_az.get(az.name, ())]
        self._prune_prices({u for h in public_hosts for u in (h.instances or ())}, now)
        load = load_from_hosts(by_az, policy, {u: p for u, (p, _) in self._prices.items()})
        load = self._with_local_seen(load, request, now)
        decision = decide(request, load, policy, self._history, now, self._spend_now(policy, now))
        self._history = self._history.after(decision, now)
        az = policy.public(decision.az) if decision.az else None
        if az is not None and request.instance_uuid:
            price = az.price(request.flavor.name)
            self._prices[request.instance_uuid] = (
                az.max_price if price is None else price,
                now,
            )
        self._recent.append(
            {"at": now, **_request_dict(request), **decision.as_dict(), "load": _load_dict(load)}
        )
        self._save(decision, load, request)
        return decision, load

    def _spend_now(self, policy: Policy, now: float) -> Spend:
        """The spend so far, read only when the policy has a spend budget; unknown (nothing
        bursts then) without a receiver to read it from, or one that stopped answering."""
        if not policy.budgets.spend_limited:
            return NOTHING_SPENT
        known = self._spend.spend(now) if self._spend else None
        return UNKNOWN_SPEND if known is None else known

    def _with_local_seen(self, load: Load, request: Request, now: float) -> Load:
        """For a request that asked for an AZ, Placement offers only that AZ's hosts: judge it
        against the local load last seen (if recent) rather than as if local were full."""
        if load.local.hosts:
            self._local_seen = (load.local, now)
            return load
        seen = self._local_seen
        if request.requested_az and seen and now - seen[1] <= LOCAL_SEEN_MAX_AGE_S:
            return replace(load, local=seen[0])
        return load

    def _log(self, decision: Decision, load: Load, request: Request, seen: int, kept: int) -> None:
        local = load.local
        self.log.info(
            "placement.decided",
            instance_uuid=request.instance_uuid,
            flavor=request.flavor.name,
            requested_az=request.requested_az,
            project_id=request.project_id,
            burst_hint=request.burst_hint,
            az=decision.az,
            rule=decision.rule,
            reason=decision.reason,
            mode=decision.mode,
            window=decision.window,
            compared=dict(decision.compared),
            skipped=[list(s) for s in decision.skipped],
            local_instances=local.instances,
            local_memory_used_pct=local.memory_used_pct,
            hosts_in=seen,
            hosts_out=kept,
        )


def az_weight(order: tuple[str, ...], az: str | None) -> float:
    """FederationWeigher's weight of a host in `az` for a boot whose AZs are `order` (the
    engine's `order()`): the first AZ weighs most, an AZ outside the order nothing."""
    if az is None or az not in order:
        return 0.0
    return float(len(order) - order.index(az))


def _request_dict(request: Request) -> dict[str, Any]:
    return {
        "instance_uuid": request.instance_uuid,
        "flavor": request.flavor.name,
        "requested_az": request.requested_az,
        "project_id": request.project_id,
        "burst_hint": request.burst_hint,
    }


def request_from_spec(spec: Any) -> Request:
    """The Request of one of Nova's RequestSpec objects, read through its attributes and
    `get_scheduler_hint` only (nova is not imported here, so this is tested without it)."""
    flavor = spec.flavor
    hint = spec.get_scheduler_hint(HINT)
    if hint is None and _requires_burst_trait(spec):
        # Placement offers only public hosts for it: deciding "local" would leave no host
        hint = "prefer"
    return Request(
        flavor=Flavor(str(flavor.name), int(flavor.vcpus), int(flavor.memory_mb)),
        requested_az=spec.availability_zone or None,
        instance_uuid=str(spec.instance_uuid or ""),
        project_id=str(spec.project_id or ""),
        # several values come as a list: not a value decide knows, so the boot is refused
        burst_hint="allowed" if hint is None else str(hint),
    )


def _requires_burst_trait(spec: Any) -> bool:
    """Whether the boot's image requires the public AZ's trait (a burst instance's snapshot)."""
    try:
        required = spec.image.properties.traits_required
    except (AttributeError, NotImplementedError):  # no image, or Nova left the field unset
        return False
    return BURST_TRAIT in (required or ())


def _load_dict(load: Load) -> dict[str, Any]:
    return {
        "local": {
            **_scalars(load.local),
            "memory_used_pct": load.local.memory_used_pct,
            "vcpus_used_pct": load.local.vcpus_used_pct,
        },
        "public": {az: _scalars(u) for az, u in load.public.items()},
    }


def _scalars(obj: LocalLoad | PublicUsage) -> dict[str, Any]:
    """asdict() of a dataclass of plain numbers and strings, without asdict's deep copy:
    there is nothing to copy, and the copy cost twice decide() itself on every request."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}
