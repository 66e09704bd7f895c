"""The pusher: sends spooled reports to the receiver, oldest first, one at a time.

One report in flight keeps the order and the receiver's load simple; a report is removed from
the spool only after the receiver's answer says it need not be sent again. Each attempt is
signed afresh (timestamp + HMAC over the unchanged body), so a retry hours later is not refused
as a replay while the receiver still dedupes it by its Idempotency-Key.

What each answer means here:
- 2xx: accepted (a repeat of a finished key answers the same): remove.
- 400 and any other 4xx not listed: the receiver will never take it: log, count, drop.
- 401/403: signature or replay window refused. Kept spooled and retried with backoff up to
  `max_backoff_s`, logged as an error each time: the usual causes (a rotated secret, a skewed
  clock) are fixed by the operator, and dropping would lose data that is still good. /readyz
  reports the receiver unreachable meanwhile and the spool bounds cap the cost.
- 409 in_flight: the same key is still being written at the receiver: retry later.
- 422 key_conflict: the receiver has this key for another body (a spool restored from a
  backup reuses old numbers). Permanent for this key: start a new spool epoch and renumber the
  report, once; a renumbered report that conflicts again is dropped and counted.
- 413: too large: split the report in two and send the halves in its place.
- 429: wait what Retry-After says (capped at `max_backoff_s`); 5xx, timeouts and network errors:
  full-jitter exponential backoff (tenacity's wait_random_exponential).
"""

from __future__ import annotations

import asyncio
import email.utils
import gzip as gzip_mod
import json
import ssl
import time
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import structlog
from azfed import wire
from azfed.agent.health import AgentMetrics
from azfed.agent.push.spool import Spool, Spooled
from azfed.config import PushSection
from azfed.errors import AzfedError
from azfed.tls import client_context
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity.wait import wait_random_exponential
from yarl import URL

log = structlog.get_logger(__name__)

Outcome = Literal["accepted", "rejected", "too_large", "key_conflict"]


class RetryLaterError(AzfedError):
    """This attempt failed in a way that another attempt may fix. The pusher keeps the report
    spooled and retries it; `reason` says what to look at if the retries go on."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        self.reason = reason
        self.retry_after = retry_after
        super().__init__(reason)


@dataclass(frozen=True)
class Answer:
    status: int
    retry_after: float | None
    text: str


def reports_url(url: str) -> URL:
    """The POST URL: `url` itself, or the contract's path if `url` names only the receiver."""
    u = URL(url)
    return u.with_path(wire.REPORTS_PATH) if u.path in ("", "/") else u


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Pusher:
    """Drain the spool to the receiver, in order, forever (until cancelled)."""

    def __init__(
        self,
        cfg: PushSection,
        agent_id: str,
        secret: bytes,
        spool: Spool,
        *,
        metrics: AgentMetrics,
        wakeup: asyncio.Event,
    ) -> None:
        self.cfg = cfg
        self.agent_id = agent_id
        self.secret = secret
        self.spool = spool
        self.metrics = metrics
        self.wakeup = wakeup
        self.url = reports_url(str(cfg.url))
        self.reachable: bool | None = None  # None until the first attempt
        self.drained = asyncio.Event()  # set whenever the spool is found empty
        self._jitter = wait_random_exponential(multiplier=0.5, max=cfg.max_backoff_s)
        self._session: aiohttp.ClientSession | None = None
        # built now, so a certificate that is not PEM stops the agent at start, naming the file
        self._tls = self._ssl()
        self._renumbered: set[int] = set()  # seqs given by a renumbering: never renumbered again

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.cfg.timeout_s)
        # one report in flight, one spare
        connector = aiohttp.TCPConnector(limit=2, ssl=self._tls)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            self._session = session
            while True:
                # cleared before looking, so a report spooled meanwhile still wakes us
                self.wakeup.clear()
                item = await asyncio.to_thread(self.spool.oldest)
                if item is None:
                    self.drained.set()
                    await self.wakeup.wait()
                    continue
                self.drained.clear()
                await self._deliver(item)

    def _ssl(self) -> ssl.SSLContext | bool:
        """For https://: the receiver checked against `ca_file` (else the system's CAs), and
        our certificate presented if configured. True means aiohttp's default checks."""
        cfg = self.cfg
        if self.url.scheme != "https" or (cfg.ca_file is None and cfg.client_cert_file is None):
            return True
        return client_context(cfg.ca_file, cfg.client_cert_file, cfg.client_key_file)

    # --- one report ------------------------------------------------------------------------

    async def _deliver(self, item: Spooled) -> None:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(RetryLaterError),
            wait=self._wait,
            before_sleep=self._log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                outcome = await self._attempt(item)
        await self._settle(item, outcome)

    async def _settle(self, item: Spooled, outcome: Outcome) -> None:
        entry = item.entry
        if outcome == "too_large":
            await self._split(item)
            return
        if outcome == "key_conflict" and entry.seq not in self._renumbered:
            await self._renumber(item)
            return
        await asyncio.to_thread(self.spool.remove, entry)
        if outcome == "accepted":
            self.metrics.count("pushed", entry.samples)
        else:  # refused for good, or a renumbered report that still conflicts
            self.metrics.drop(outcome, entry.samples)
            if outcome == "key_conflict":
                log.error("push.rejected", then="dropped", seq=entry.seq, reason=outcome,
                          samples=entry.samples)  # fmt: skip

    def _wait(self, state: RetryCallState) -> float:
        err = state.outcome.exception() if state.outcome else None
        if isinstance(err, RetryLaterError) and err.retry_after is not None:
            return min(err.retry_after, self.cfg.max_backoff_s)
        return float(self._jitter(state))

    def _log_retry(self, state: RetryCallState) -> None:
        err = state.outcome.exception() if state.outcome else None
        reason = err.reason if isinstance(err, RetryLaterError) else repr(err)
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning("push.retrying", reason=reason,
                    attempt=state.attempt_number, retry_in_s=round(wait, 2))  # fmt: skip

    async def _attempt(self, item: Spooled) -> Outcome:
        answer = await self._post(item)
        self.reachable = answer.status < 500 and answer.status not in (401, 403)
        self.metrics.reports.labels(str(answer.status)).inc()
        return self._classify(item, answer)

    def _classify(self, item: Spooled, answer: Answer) -> Outcome:
        status, seq = answer.status, item.entry.seq
        if 200 <= status < 300:
            log.info("push.delivered", seq=seq, samples=item.entry.samples, status=status)
            return "accepted"
        if status == 413:
            return "too_large"
        if status in (401, 403):
            log.error("push.unauthorized", seq=seq, status=status, answer=answer.text,
                      hint="check that [push] secret_file matches the receiver's secret for "
                      "this agent and that the clock is right (NTP)")  # fmt: skip
            raise RetryLaterError("unauthorized")
        if status == 409:
            raise RetryLaterError("in flight at the receiver", answer.retry_after)
        if status == 422 and _error_code(answer.text) == "key_conflict":
            log.error("push.key_conflict", seq=seq, epoch=item.entry.epoch, answer=answer.text)
            return "key_conflict"
        if status == 429:
            raise RetryLaterError("throttled", answer.retry_after)
        if status >= 500:
            raise RetryLaterError(f"receiver error {status}")
        log.error("push.rejected", then="dropped", seq=seq, status=status,
                  samples=item.entry.samples, answer=answer.text)  # fmt: skip
        return "rejected"

    async def _post(self, item: Spooled) -> Answer:
        assert self._session is not None
        headers = wire.signed_headers(
            self.secret, agent_id=self.agent_id, seq=item.entry.seq, body=item.body,
            gzip=item.gzip, now=time.time(), path=self.url.path, epoch=item.entry.epoch,
        )  # fmt: skip
        started = time.perf_counter()
        try:
            async with self._session.post(self.url, data=item.body, headers=headers) as resp:
                text = (await resp.content.read(2048)).decode("utf-8", "replace")
                return Answer(resp.status, parse_retry_after(resp.headers.get("Retry-After")), text)
        except (aiohttp.ClientError, TimeoutError) as err:
            self.reachable = False
            self.metrics.reports.labels("network_error").inc()
            raise RetryLaterError(f"receiver unreachable: {err!r}") from err
        finally:
            self.metrics.push_seconds.observe(time.perf_counter() - started)

    # --- 413 -------------------------------------------------------------------------------

    async def _split(self, item: Spooled) -> None:
        """Replace a report the receiver finds too large by two halves, in its place."""
        report = wire.loads(gzip_mod.decompress(item.body) if item.gzip else item.body)
        halves = split_report(report)
        if halves is None:
            log.error("push.too_large", seq=item.entry.seq, then="dropped (one sample)",
                      hint="raise the receiver's [receiver] max_body_bytes")  # fmt: skip
            await asyncio.to_thread(self.spool.remove, item.entry)
            self.metrics.drop("too_large", item.entry.samples)
            return
        parts = []
        for half in halves:
            seq = await asyncio.to_thread(self.spool.allocate_seq)
            half.update(seq=seq)
            body = wire.encode_body(half, agent_id=self.agent_id, seq=seq, gzip=item.gzip)
            parts.append((seq, body, len(half["samples"])))
        await asyncio.to_thread(
            self.spool.replace, item.entry, parts, item.gzip, report.get("epoch")
        )
        log.warning("push.split", why="too large for the receiver", seq=item.entry.seq,
                    into=[p[0] for p in parts])  # fmt: skip

    # --- 422 key_conflict ------------------------------------------------------------------

    async def _renumber(self, item: Spooled) -> None:
        """Send a report whose key the receiver holds for another body under a new epoch
        and sequence number, in its place in the order."""
        report = wire.loads(gzip_mod.decompress(item.body) if item.gzip else item.body)
        epoch = await asyncio.to_thread(self.spool.new_epoch)
        seq = await asyncio.to_thread(self.spool.allocate_seq)
        report.update(seq=seq, epoch=epoch)
        body = wire.encode_body(report, agent_id=self.agent_id, seq=seq, gzip=item.gzip)
        parts = [(seq, body, item.entry.samples)]
        await asyncio.to_thread(self.spool.replace, item.entry, parts, item.gzip, epoch)
        self._renumbered.add(seq)
        log.warning("push.renumbered", why="key_conflict", seq=item.entry.seq, new_seq=seq,
                    epoch=epoch)  # fmt: skip


def _error_code(text: str) -> str | None:
    """The `error` of a receiver's JSON error answer, if the text is one."""
    try:
        answer = json.loads(text)
    except ValueError:
        return None
    code = answer.get("error") if isinstance(answer, dict) else None
    return code if isinstance(code, str) else None


def split_report(report: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Two self-contained halves of a report (by instance, else by sample), or None."""
    instances, samples = report["instances"], report["samples"]
    if len(instances) > 1:
        mid = len(instances) // 2
        groups = [instances[:mid], instances[mid:]]
        return [_subset(report, g, samples) for g in groups]
    if len(samples) > 1:
        mid = len(samples) // 2
        return [dict(report, samples=samples[:mid]), dict(report, samples=samples[mid:])]
    return None


def _subset(
    report: dict[str, Any], instances: list[dict[str, Any]], samples: list[dict[str, Any]]
) -> dict[str, Any]:
    keep = {i["instance_uuid"].lower() for i in instances}
    # a version 1 report (spooled before the agent was upgraded) names the instance resource_id
    mine = [s for s in samples if s.get("instance_uuid", s.get("resource_id", "")).lower() in keep]
    return dict(report, instances=instances, samples=mine)
