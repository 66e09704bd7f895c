"""The spend so far, as the scheduler's filter gets it: from the receiver's GET /v1/spend.

The receiver counts it from Nova's launch and termination times (azfed.receiver.spend); the
filter only reads the answer. A read happens at most every `refresh_s`, within `timeout_s`
(it runs in a scheduling request: a slow receiver must not hold boots up), and the last good
answer stands in between and while the receiver is away, up to `max_age_s`. Past that the
spend is unknown, and `decide` treats an unknown spend as a used-up budget.

Inside nova-scheduler: the stdlib only (urllib), like the rest of the engine.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from azfed.policy.budget import SPEND_PATH, Spend

REFRESH_S = 60.0
TIMEOUT_S = 1.0
MAX_AGE_S = 900.0


class ReceiverSpend:
    """`spend(now)`: the receiver's last answer, read again when older than `refresh_s`;
    None when no answer younger than `max_age_s` is known. Not thread-safe: the engine calls
    it under its lock."""

    def __init__(
        self,
        base_url: str,
        log: Any,
        *,
        refresh_s: float = REFRESH_S,
        timeout_s: float = TIMEOUT_S,
        max_age_s: float = MAX_AGE_S,
    ) -> None:
        self.url = base_url.rstrip("/") + SPEND_PATH
        self.log = log
        self.refresh_s, self.timeout_s, self.max_age_s = refresh_s, timeout_s, max_age_s
        self._last: tuple[Spend, float] | None = None  # the answer, and when it was read
        self._tried = -float("inf")
        self._warned: frozenset[str] = frozenset()  # the periods last seen at the warning level

    def spend(self, now: float) -> Spend | None:
        if now - self._tried >= self.refresh_s:
            self._tried = now
            self._read(now)
        if self._last is None or now - self._last[1] > self.max_age_s:
            return None
        return self._last[0]

    def _read(self, now: float) -> None:
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout_s) as resp:  # noqa: S310
                doc = json.load(resp)
            self._last = (Spend(float(doc["day"]["spent"]), float(doc["month"]["spent"])), now)
            self._note_warning(doc)
        except (OSError, ValueError, KeyError, TypeError) as err:
            # URLError and timeouts are OSErrors; a bad body is a ValueError or KeyError
            age = None if self._last is None else round(now - self._last[1], 1)
            self.log.error(  # noqa: TRY400 - the URL and the cause say it all
                "budget.spend_unreadable", url=self.url, error=str(err), last_answer_age_s=age
            )

    def _note_warning(self, doc: dict[str, Any]) -> None:
        """Log once when a period's spend reaches the warning level, and once when it is
        below again (a new day or month): operators alert on `budget.warning`."""
        warned = frozenset(str(p) for p in doc.get("warning") or [])
        for period in sorted(warned - self._warned):
            p = doc.get(period) or {}
            self.log.warning(
                "budget.warning", period=period, spent=p.get("spent"), budget=p.get("budget"),
                left=p.get("left"), warn_at_pct=doc.get("warn_at_pct"),
            )  # fmt: skip
        for period in sorted(self._warned - warned):
            self.log.info("budget.warning_cleared", period=period)
        self._warned = warned
