"""The receiver's aiohttp application: `create_app(config) -> web.Application`.

POST /v1/reports        ingest one signed report (validate -> dedupe -> write -> answer)
GET  /v1/instances/{id} the state the agent last reported (FederationDriver.get_info reads it)
GET  /v1/instances/{id}/usage  the newest value of each of its meters, read back from Gnocchi
GET  /v1/placement      what the next boot would get, and why (the policy's explain)
GET  /v1/spend          burst instances' spend this day and month against the budgets
GET  /v1/decisions      the scheduler filter's decisions (its state file's, kept in the store)
GET  /v1/status         agents' freshness, instances by state, orphans, refused resources
POST /v1/capacity-events  a proxy host's driver: a boot failed (or launched) in a public AZ
GET  /v1/capacity-events  the scheduler's filter: those events, by id, to back AZs off
GET  /healthz /readyz /metrics /openapi.json
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from azfed import wire
from azfed.config import AzfedConfig, ReceiverSection
from azfed.errors import CloudError, PolicyError
from azfed.policy.budget import PERIODS, SPEND_PATH
from azfed.policy.capacity_source import CAPACITY_EVENTS_PATH
from azfed.probes import add_probes
from azfed.receiver import capacity, history, openapi, status
from azfed.receiver.aio import bounded_each
from azfed.receiver.lease import RECONCILE, Lease
from azfed.receiver.metrics import Metrics
from azfed.receiver.nova import NovaClient
from azfed.receiver.placement import (
    Placement,
    StateUnreadable,
    UnknownFlavorError,
    policy_placement,
)
from azfed.receiver.reconcile import Cleaner, Reconciler
from azfed.receiver.sinks import Batch, Sink, SinkError, UsageReader, make_sink
from azfed.receiver.spend import SpendAnswer, policy_spend
from azfed.receiver.store import KeyConflict, Store
from azfed.receiver.validate import (
    Auth,
    Reject,
    check_auth_headers,
    check_owners,
    check_signature,
    decode_body,
    parse_report,
)
from azfed.sdk import connector
from sqlalchemy.exc import SQLAlchemyError

log = structlog.get_logger(__name__)

# What every runner of this app must pass to AppRunner/TestServer: the signature covers the
# body as sent, so aiohttp must hand us the gzip bytes and let us decompress (bounded) ourselves.
RUNNER_KWARGS: dict[str, Any] = {"auto_decompress": False}

Clock = Callable[[], float]

CONFIG = web.AppKey("config", ReceiverSection)
STORE = web.AppKey("store", Store)
SINKS = web.AppKey("sinks", list[Sink])
NOVA = web.AppKey("nova", NovaClient)
METRICS = web.AppKey("metrics", Metrics)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
GATE: web.AppKey[Gate] = web.AppKey("gate")
PLACEMENT: web.AppKey[Placement] = web.AppKey("placement")
SPEND: web.AppKey[SpendAnswer] = web.AppKey("spend")
RECONCILER = web.AppKey("reconciler", Reconciler)
SINK_FAILURES = web.AppKey("sink_failures", dict[str, tuple[float, str]])

# Keys of an in-flight claim older than this were left by a receiver that died mid-write.
_STALE_FACTOR = 2.0
_RETRY_AFTER_BUSY = 2
_RETRY_AFTER_BACKEND = 10
# SHA-256 runs at about 1 GB/s: a body this size holds the loop a quarter of a millisecond.
_HASH_ON_LOOP_BYTES = 256 * 1024
# /readyz reports a sink's failed write for this long, unless it writes again meanwhile.
_WRITE_FAILURE_MEMORY_S = 60.0


class Gate:
    """Bounds the reports processed at once; past the bound, answer 429 at once instead of
    queueing (the agent's spool is a better queue than our memory)."""

    def __init__(self, limit: int, metrics: Metrics) -> None:
        self.limit = limit
        self.count = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self._metrics = metrics

    @contextlib.contextmanager
    def enter(self) -> Iterator[None]:
        if self.count >= self.limit:
            msg = f"{self.count} reports in flight (limit {self.limit}): retry later"
            raise Reject(429, "busy", msg, retry_after=_RETRY_AFTER_BUSY)
        self.count += 1
        self.idle.clear()
        self._metrics.inflight.set(self.count)
        try:
            yield
        finally:
            self.count -= 1
            self._metrics.inflight.set(self.count)
            if self.count == 0:
                self.idle.set()


# --- POST /v1/reports ---------------------------------------------------------------------------


async def post_report(request: web.Request) -> web.Response:
    app = request.app
    try:
        answer = await _ingest(request)
    except Reject as rej:
        app[METRICS].rejects.labels(rej.reason).inc()
        app[METRICS].reports.labels("rejected").inc()
        log.info("report.rejected", status=rej.status, reason=rej.reason, message=rej.message,
                 cause=rej.cause or None)  # fmt: skip
        headers = {"Retry-After": str(rej.retry_after)} if rej.retry_after is not None else None
        return web.json_response(rej.body(), status=rej.status, headers=headers)
    return web.json_response(answer)


async def _ingest(request: web.Request) -> dict[str, Any]:
    app = request.app
    cfg = app[CONFIG]
    now = app[CLOCK]()
    auth = check_auth_headers(
        request.headers, cfg.secrets_dir, now, cfg.replay_window_s, cfg.secrets_prefix
    )
    if request.content_length is not None and request.content_length > cfg.max_body_bytes:
        raise Reject(413, "too_large", f"the body is larger than {cfg.max_body_bytes} bytes")
    # Nothing is held before the signature is checked: a sender without the secret costs one
    # bounded read (size and time), never an in-flight slot.
    body = await _read_body(request, cfg.max_body_bytes, cfg.body_timeout_s)
    # Hashing, gunzip, JSON and schema checks of a big body take CPU seconds: off the loop.
    # Hashing a small one takes less than the hop to a thread and back: on the loop.
    if len(body) <= _HASH_ON_LOOP_BYTES:
        check_signature(auth, request.method, request.path, body)
    else:
        await asyncio.to_thread(check_signature, auth, request.method, request.path, body)
    window = wire.Window.around(now, cfg.max_age_s, cfg.max_future_s)
    with app[GATE].enter():
        report, digest = await asyncio.to_thread(
            _decode_and_parse, auth, body, request.headers.get("Content-Encoding"),
            request.content_type, cfg.max_body_bytes, window,
        )  # fmt: skip
        # The last check, read-only like the others: nothing is written before all pass.
        await check_owners(app[STORE], report)
        return await _apply(app, auth.key, report, digest)


def _decode_and_parse(  # noqa: PLR0917 - the request's parts, in the order they are used
    auth: Auth,
    body: bytes,
    encoding: str | None,
    content_type: str,
    limit: int,
    window: wire.Window,
) -> tuple[dict[str, Any], str]:
    data = decode_body(body, encoding, content_type, limit)
    return parse_report(data, auth, window), wire.sha256_hex(data)


async def _read_body(request: web.Request, limit: int, timeout_s: float) -> bytes:
    try:
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise Reject(413, "too_large", f"the body is larger than {limit} bytes") from None
    except TimeoutError:
        msg = f"the body did not arrive within {timeout_s:.0f}s: send it at once"
        raise Reject(408, "body_timeout", msg) from None


async def _apply(
    app: web.Application, key: str, report: dict[str, Any], digest: str
) -> dict[str, Any]:
    cfg, store, now = app[CONFIG], app[STORE], app[CLOCK]()
    stale = cfg.write_timeout_s * _STALE_FACTOR
    try:
        claim = await store.claim(key, report["agent_id"], report["seq"], digest, now, stale)
    except SQLAlchemyError as err:
        raise Reject(
            503, "store_failed", f"state store: {err}", retry_after=_RETRY_AFTER_BACKEND
        ) from None
    if claim.kind == "conflict":
        # Permanent, unlike in_flight: retrying the same key and body can never succeed.
        raise Reject(422, "key_conflict", f"{key} was already used for a different body")
    if claim.kind == "inflight":
        raise Reject(409, "in_flight", f"{key} is being processed", retry_after=_RETRY_AFTER_BUSY)
    if claim.kind == "done" and claim.answer is not None:
        app[METRICS].reports.labels("duplicate").inc()
        return claim.answer
    return await _write_claimed(app, key, report, now)


async def _write_claimed(
    app: web.Application, key: str, report: dict[str, Any], now: float
) -> dict[str, Any]:
    store, metrics = app[STORE], app[METRICS]
    batch = Batch(key, report, now)
    done = False
    try:
        async with asyncio.timeout(app[CONFIG].write_timeout_s):
            await _write_sinks(app[SINKS], batch, metrics, app[SINK_FAILURES])
        if batch.dropped:  # kept for `azfed status`; the rest of the report was written
            await store.note_dropped([dataclasses.asdict(d) for d in batch.dropped], now)
        answer = {
            "accepted": True,
            "key": key,
            "instances": len(report["instances"]),
            "samples": len(report["samples"]),
        }
        await store.finish(key, answer, report, now)
        done = True
    except (SinkError, TimeoutError, SQLAlchemyError) as err:
        log.warning("report.write_failed", key=key, error=str(err) or repr(err))
        raise Reject(
            503, "backend_failed", f"writing failed: {err!r}", retry_after=_RETRY_AFTER_BACKEND
        ) from None
    finally:
        if not done:
            # Shielded: the claim must be released even if this task is being cancelled.
            await asyncio.shield(store.release(key))
    metrics.reports.labels("accepted").inc()
    metrics.samples.inc(len(report["samples"]))
    metrics.instances.inc(len(report["instances"]))
    for d in batch.dropped:
        metrics.dropped.labels(d.sink, d.reason).inc(d.samples)
        metrics.skipped.labels(d.sink, d.reason).inc()
    log.info(
        "report.accepted", key=key, instances=answer["instances"], samples=answer["samples"],
        dropped=sum(d.samples for d in batch.dropped),
    )  # fmt: skip
    return answer


async def _write_sinks(
    sinks: list[Sink], batch: Batch, metrics: Metrics, failures: dict[str, tuple[float, str]]
) -> None:
    # A backend failure is a SinkError (503, retried); anything else is our bug (500). The
    # last failure of each sink stays in `failures` until it writes again: /readyz shows it.
    async def timed_write(sink: Sink) -> None:
        with metrics.write_seconds.labels(sink.name).time():
            try:
                await sink.write(batch)
            except SinkError as err:
                failures[sink.name] = (time.monotonic(), str(err)[:200])
                raise
        failures.pop(sink.name, None)

    await bounded_each(timed_write, sinks, len(sinks))


# --- capacity events -----------------------------------------------------------------------------


async def post_capacity_event(request: web.Request) -> web.Response:
    try:
        answer = await _capacity_event(request)
    except Reject as rej:
        log.info("capacity.event_rejected", status=rej.status, reason=rej.reason,
                 message=rej.message, cause=rej.cause or None)  # fmt: skip
        headers = {"Retry-After": str(rej.retry_after)} if rej.retry_after is not None else None
        return web.json_response(rej.body(), status=rej.status, headers=headers)
    return web.json_response(answer)


async def _capacity_event(request: web.Request) -> dict[str, Any]:
    """Check the writer's signature, then the event; keep it once per Idempotency-Key."""
    app = request.app
    cfg, now, limit = app[CONFIG], app[CLOCK](), capacity.MAX_BODY_BYTES
    auth = check_auth_headers(
        request.headers, cfg.secrets_dir, now, cfg.replay_window_s, cfg.secrets_prefix
    )
    if request.content_length is not None and request.content_length > limit:
        raise Reject(413, "too_large", f"an event is at most {limit} bytes")
    body = await _read_body(request, cfg.max_body_bytes, cfg.body_timeout_s)
    if len(body) > limit:
        raise Reject(413, "too_large", f"an event is at most {limit} bytes")
    check_signature(auth, request.method, request.path, body)
    data = decode_body(body, request.headers.get("Content-Encoding"), request.content_type, limit)
    if len(auth.key) > capacity.KEY_MAX:
        msg = f"{wire.HEADER_KEY} is at most {capacity.KEY_MAX} characters"
        raise Reject(400, "bad_key", msg)
    event = capacity.parse_event(data)
    row = {**event, "writer_id": auth.agent_id, "key": auth.key, "received_at": now,
           "body_sha256": wire.sha256_hex(data)}  # fmt: skip
    try:
        event_id, new = await app[STORE].add_capacity_event(row, now - capacity.KEEP_S)
    except KeyConflict:
        raise Reject(
            422, "key_conflict", f"{auth.key} was already used for another event"
        ) from None
    except SQLAlchemyError as err:
        msg = f"state store: {err}"
        raise Reject(503, "store_failed", msg, retry_after=_RETRY_AFTER_BACKEND) from None
    log.info("capacity.event_received", id=event_id, writer_id=auth.agent_id, az=event["az"],
             flavor=event["flavor"], outcome=event["outcome"], instance_uuid=event["instance_uuid"],
             duplicate=not new)  # fmt: skip
    return {"accepted": True, "id": event_id, "duplicate": not new}


async def get_capacity_events(request: web.Request) -> web.Response:
    try:
        after, limit = capacity.parse_range(request.query)
    except Reject as rej:
        return web.json_response(rej.body(), status=rej.status)
    try:
        rows, last = await request.app[STORE].capacity_events(after, limit)
    except SQLAlchemyError as err:
        return _error(503, "store_failed", f"state store: {err}")
    events = [{k: r[k] for k in capacity.EVENT_FIELDS} for r in rows]
    return web.json_response({"events": events, "last_id": last})


# --- the other endpoints ------------------------------------------------------------------------


async def get_instance(request: web.Request) -> web.Response:
    uuid = request.match_info["uuid"]
    if not wire.is_uuid(uuid):
        return _error(400, "bad_uuid", f"{uuid[:64]!r} is not an instance UUID")
    row = await request.app[STORE].instance(uuid)
    if row is None:
        return _error(404, "not_found", f"no agent has reported instance {uuid}")
    return web.json_response({k: row[k] for k in openapi.INSTANCE_FIELDS})


async def get_usage(request: web.Request) -> web.Response:
    uuid = request.match_info["uuid"]
    if not wire.is_uuid(uuid):
        return _error(400, "bad_uuid", f"{uuid[:64]!r} is not an instance UUID")
    reader = next((s for s in request.app[SINKS] if isinstance(s, UsageReader)), None)
    if reader is None:
        return _error(503, "no_usage_store", "no sink that reads usage back (add gnocchi)")
    try:
        usage = await reader.latest(uuid.lower())
    except (SinkError, aiohttp.ClientError, TimeoutError) as err:
        return _error(503, "usage_unreadable", f"{err}")
    if usage is None:
        return _error(404, "not_found", f"no usage of instance {uuid} is recorded")
    return web.json_response({"instance_uuid": uuid.lower(), "usage": usage})


async def get_spend(request: web.Request) -> web.Response:
    answer = request.app.get(SPEND)
    if answer is None:
        return _error(503, "policy_not_configured", "set [receiver] policy_file to count spend")
    try:
        doc = await answer()
    except PolicyError as err:
        return _error(503, "policy_invalid", str(err))
    except CloudError as err:
        log.warning("spend.nova_failed", error=str(err))
        return _error(503, "nova_unavailable", str(err))
    _set_budget_gauges(request.app[METRICS], doc)
    return web.json_response(doc)


def _set_budget_gauges(metrics: Metrics, doc: dict[str, Any]) -> None:
    for period in PERIODS:
        metrics.budget_spend.labels(period).set(doc[period]["spent"])
        metrics.budget_warning.labels(period).set(period in doc["warning"])
        if doc[period]["left"] is not None:
            metrics.budget_left.labels(period).set(doc[period]["left"])


async def get_placement(request: web.Request) -> web.Response:
    placement = request.app.get(PLACEMENT)
    if placement is None:
        return _error(
            503, "policy_not_configured", "set [receiver] policy_file to enable placement"
        )
    flavor = request.query.get("flavor", "")
    if not flavor:
        return _error(400, "flavor_required", "ask about a flavor: /v1/placement?flavor=NAME")
    try:
        return web.json_response(await placement(flavor))
    except UnknownFlavorError as err:
        return _error(404, "unknown_flavor", str(err))
    except PolicyError as err:
        # the file on disk is broken: say which key; the scheduler keeps its last good policy
        return _error(503, "policy_invalid", str(err))


DECISIONS_MAX = 500  # a page of the kept decisions (a day's chart)


async def get_decisions(request: web.Request) -> web.Response:
    app = request.app
    state_file = app[CONFIG].policy_state_file
    if state_file is None:
        return _error(
            503, "state_not_configured", "set [receiver] policy_state_file to the filter's"
        )
    raw = request.query.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= DECISIONS_MAX:
        return _error(400, "bad_limit", f"limit must be 1 to {DECISIONS_MAX}, not {raw[:32]!r}")
    since = _since(request.query.get("since"))
    if isinstance(since, web.Response):
        return since
    try:
        # the newest decisions of the file first, so the answer is as current as the file
        await history.sync(app[STORE], state_file, app[CLOCK]())
        decisions = await app[STORE].kept_decisions(int(raw), since)
    except StateUnreadable as err:
        return _error(503, "state_unreadable", str(err))
    except SQLAlchemyError as err:
        return _error(503, "store_failed", f"state store: {err}")
    return web.json_response({"decisions": decisions, "kept_s": history.KEEP_S})


def _since(raw: str | None) -> float | web.Response | None:
    """The `since` query parameter as unix seconds; an error answer if it is not one."""
    if raw is None:
        return None
    try:
        since = float(raw)
    except ValueError:
        since = math.nan
    if not math.isfinite(since) or since < 0:
        return _error(400, "bad_since", f"since must be unix seconds (>= 0), not {raw[:32]!r}")
    return since


async def get_status(request: web.Request) -> web.Response:
    return web.json_response(await status.from_store(request.app[STORE], time.time()))


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    checks: dict[str, Awaitable[None]] = {"store": app[STORE].ping()}
    for sink in app[SINKS]:
        checks[sink.name] = sink.check()
    results = {}
    for name, check in checks.items():
        results[name] = await _probe(check)
    # A backend that answers a ping but fails writes is not ready either. Only for a while:
    # behind a balancer, a receiver taken out gets no writes that could clear it.
    for name, (at, error) in app[SINK_FAILURES].items():
        if results.get(name) == "ok" and time.monotonic() - at < _WRITE_FAILURE_MEMORY_S:
            results[name] = f"failed: its last write failed: {error}"
    ok = all(v == "ok" for v in results.values())
    return web.json_response({"ready": ok, "checks": results}, status=200 if ok else 503)


async def _probe(check: Awaitable[None]) -> str:
    try:
        async with asyncio.timeout(5):
            await check
    except Exception as err:  # a readiness probe reports any failure; it never raises
        return f"failed: {err!r}"[:300]
    return "ok"


async def openapi_endpoint(request: web.Request) -> web.Response:
    return web.json_response(openapi.document())


def _error(status: int, error: str, message: str) -> web.Response:
    return web.json_response({"error": error, "message": message, "problems": []}, status=status)


# --- lifecycle ---------------------------------------------------------------------------------


def _resources(
    store: Store, sinks: list[Sink], nova: NovaClient | None
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        await store.open()
        started: list[Sink] = []
        try:
            # Sinks start before the first report can arrive; they close after the last write.
            for sink in sinks:
                await sink.start()
                started.append(sink)
            yield
            await app[GATE].idle.wait()
        finally:
            for sink in reversed(started):
                await sink.close()
            if nova is not None:
                await nova.close()
            await store.close()

    return ctx


def _reconcile_loop(app: web.Application) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        reconciler = app[RECONCILER]
        tasks = [asyncio.create_task(reconciler.run_forever(), name="azfed-reconcile")]
        if reconciler.lease is not None:
            tasks.append(asyncio.create_task(reconciler.lease.keep(), name="azfed-lease"))
        yield
        for task in tasks:
            task.cancel("receiver shutting down")
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if reconciler.lease is not None:
            await reconciler.lease.release()

    return ctx


def _keep_decisions(state_file: Path) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        # kept while nobody reads them too: the filter's file holds only its last few
        task = asyncio.create_task(
            history.keep_syncing(app[STORE], state_file, app[CLOCK]), name="azfed-decisions"
        )
        yield
        task.cancel("receiver shutting down")
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx


def create_app(
    config: AzfedConfig,
    *,
    sinks: list[Sink] | None = None,
    nova: NovaClient | None = None,
    clock: Clock = time.time,
    cleaner: Cleaner | None = None,
    placement: Placement | None = None,
    spend: SpendAnswer | None = None,
    reconcile: bool = True,
) -> web.Application:
    """The receiver for `config`. `sinks` replaces the configured ones (tests, benchmarks);
    `cleaner` removes a public orphan when [reconcile] action = "clean" (absent: report only);
    `placement` answers GET /v1/placement and `spend` GET /v1/spend (absent, and no
    [receiver] policy_file: 503 "policy not configured")."""
    config.require("receiver")
    assert config.receiver is not None  # for mypy: require() raised otherwise
    rcfg = config.receiver
    if nova is None and (sinks is None or config.nova.public_azs):
        nova = NovaClient(
            connector(config.nova.cloud, timeout_s=config.nova.timeout_s),
            concurrency=config.nova.concurrency,
        )
    if sinks is None:
        sinks = [make_sink(name, config, nova) for name in rcfg.sinks]
    app = web.Application(client_max_size=rcfg.max_body_bytes)
    metrics = Metrics()
    store = Store(rcfg.database_url)
    app[CONFIG], app[STORE], app[SINKS], app[METRICS], app[CLOCK] = (
        rcfg,
        store,
        sinks,
        metrics,
        clock,
    )
    app[GATE] = Gate(rcfg.max_inflight, metrics)
    app[SINK_FAILURES] = {}
    if nova is not None:
        app[NOVA] = nova
    if placement is None and rcfg.policy_file is not None:
        placement = policy_placement(
            rcfg.policy_file,
            rcfg.policy_state_file,
            connector(config.nova.cloud, timeout_s=config.nova.timeout_s),
        )
    if placement is not None:
        app[PLACEMENT] = placement
    if spend is None and rcfg.policy_file is not None:
        spend = policy_spend(
            rcfg.policy_file, connector(config.nova.cloud, timeout_s=config.nova.timeout_s), clock
        )
    if spend is not None:
        app[SPEND] = spend
    app.cleanup_ctx.append(_resources(store, sinks, nova))
    if rcfg.policy_state_file is not None:
        app.cleanup_ctx.append(_keep_decisions(rcfg.policy_state_file))
    if cleaner is None:
        from azfed.receiver.cleaner import cloud_cleaner

        cleaner = cloud_cleaner(config)
    if reconcile and nova is not None and config.nova.public_azs:
        lease = Lease(store, RECONCILE, config.reconcile.lease_ttl_s, clock, metrics)
        app[RECONCILER] = Reconciler(
            config, store, nova, metrics, clock=clock, cleaner=cleaner, lease=lease
        )
        app.cleanup_ctx.append(_reconcile_loop(app))
    _routes(app)
    return app


def _routes(app: web.Application) -> None:
    app.router.add_post(wire.REPORTS_PATH, post_report)
    app.router.add_get(wire.INSTANCES_PATH + "/{uuid}", get_instance)
    app.router.add_get(wire.INSTANCES_PATH + "/{uuid}/usage", get_usage)
    app.router.add_get("/v1/placement", get_placement)
    app.router.add_get(SPEND_PATH, get_spend)
    app.router.add_get("/v1/decisions", get_decisions)
    app.router.add_get("/v1/status", get_status)
    app.router.add_post(CAPACITY_EVENTS_PATH, post_capacity_event)
    app.router.add_get(CAPACITY_EVENTS_PATH, get_capacity_events)
    add_probes(app, app[METRICS].registry)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/openapi.json", openapi_endpoint)
