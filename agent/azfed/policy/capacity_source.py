"""The public AZs' capacity failures, as the scheduler's filter gets them: from the receiver's
GET /v1/capacity-events.

Why through the receiver: the driver that meets the failure runs in nova-compute on the public
AZ's proxy host, the policy in nova-scheduler, often on other machines; both already talk to the
receiver (the driver for instance states, the filter for the spend), which authenticates its
writers and keeps state in a database. The driver POSTs each boot that failed for lack of
capacity (or a limit, or throttling that outlasted the retries), signed as the agents sign their
reports; the filter reads the events it has not seen yet, at most every `refresh_s`, within
`timeout_s` (it runs in a scheduling request: a slow receiver must not hold boots up), and folds
them into the policy's history. A receiver away costs only the news: boots go on with what the
filter knew.

Inside nova-scheduler: the stdlib only (urllib), like the rest of the engine.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any, Final, Literal

# the contract's one declaration: the receiver and the driver's reporter import these
CAPACITY_EVENTS_PATH: Final = "/v1/capacity-events"
OUTCOMES: Final = ("failed", "launched")
Outcome = Literal["failed", "launched"]

REFRESH_S = 2.0
TIMEOUT_S = 0.5
PAGE = 500  # events per read; more wait for the next read


@dataclass(frozen=True)
class CapacityEvent:
    """One boot's outcome in a public AZ, as the proxy host's driver saw it."""

    az: str
    flavor: str
    outcome: Outcome
    at: float  # Unix time, the proxy host's clock
    reason: str = ""


class ReceiverCapacity:
    """`new_events(now)`: the events the receiver recorded since the last read (at most one
    read every `refresh_s`; none while it does not answer). Not thread-safe: the engine calls
    it under its lock. `after` is the id of the last event read: the engine keeps it in its
    state file, so a restarted scheduler does not count an event twice."""

    def __init__(
        self,
        base_url: str,
        log: Any,
        *,
        refresh_s: float = REFRESH_S,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self.url = base_url.rstrip("/") + CAPACITY_EVENTS_PATH
        self.log = log
        self.refresh_s, self.timeout_s = refresh_s, timeout_s
        self.after = 0
        self._tried = -float("inf")

    def new_events(self, now: float) -> list[CapacityEvent]:
        if now - self._tried < self.refresh_s:
            return []
        self._tried = now
        try:
            return self._read()
        except (OSError, ValueError, KeyError, TypeError) as err:
            # URLError and timeouts are OSErrors; a bad body is a ValueError or KeyError
            self.log.error(  # noqa: TRY400 - the URL and the cause say it all
                "capacity.events_unreadable", url=self.url, error=str(err), after=self.after
            )
            return []

    def _read(self) -> list[CapacityEvent]:
        url = f"{self.url}?after={self.after}&limit={PAGE}"
        with urllib.request.urlopen(url, timeout=self.timeout_s) as resp:  # noqa: S310
            doc = json.load(resp)
        last = int(doc["last_id"])
        if last < self.after:
            # not the store read before (a new database): its events are all news
            self.log.warning("capacity.events_restarted", url=self.url, after=self.after, last=last)
            self.after = 0
            return self._read()
        rows = doc["events"]
        events = [_event(e) for e in rows]
        if rows:
            self.after = int(rows[-1]["id"])
        return events


def _event(raw: dict[str, Any]) -> CapacityEvent:
    outcome = raw["outcome"]
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome {outcome!r} is not one of {OUTCOMES}")
    return CapacityEvent(
        str(raw["az"]), str(raw["flavor"]), outcome, float(raw["at"]), str(raw.get("reason", ""))
    )
