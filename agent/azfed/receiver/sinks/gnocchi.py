"""Write samples to Gnocchi the way Ceilometer does: an `instance` resource per Nova instance
(resource type and archive policy created once, with Ceilometer's definitions), measures
through the batch API with `create_metrics=true`. Burst VMs' usage then sits beside local VMs'.

One resource Gnocchi refuses (a 4xx on its creation or on its measures) loses its own measures
only, as in Ceilometer's publisher: they are added to the batch's `dropped` and the rest is
written, so the report is accepted and the agent does not retry it forever. Gnocchi down, a 5xx,
or a 401/408/429 fails the write (503 to the agent, which retries).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog
from azfed.receiver.aio import bounded_each
from azfed.receiver.nova import NovaClient, ServerFacts
from azfed.receiver.sinks import Batch, Dropped, SinkError
from azfed.wire import METERS

if TYPE_CHECKING:
    from azfed.config import AzfedConfig

log = structlog.get_logger(__name__)

# Ceilometer's `instance` resource type (ceilometer/gnocchi_client.py, initial + updates).
_STR = {"type": "string", "min_length": 0, "max_length": 255}
INSTANCE_TYPE: dict[str, Any] = {
    "name": "instance",
    "attributes": {
        "display_name": {**_STR, "required": True},
        "flavor_id": {**_STR, "required": True},
        "host": {**_STR, "required": True},
        "image_ref": {**_STR, "required": False},
        "server_group": {**_STR, "required": False},
        "flavor_name": {**_STR, "required": False},
    },
}

# Ceilometer's default archive policies, created only if the configured one is missing.
CEILOMETER_POLICIES: dict[str, dict[str, Any]] = {
    "ceilometer-low": {
        "aggregation_methods": ["mean"],
        "back_window": 0,
        "definition": [{"granularity": "5 minutes", "timespan": "30 days"}],
    },
    "ceilometer-low-rate": {
        "aggregation_methods": ["mean", "rate:mean"],
        "back_window": 0,
        "definition": [{"granularity": "5 minutes", "timespan": "30 days"}],
    },
}

# 4xx answers about us or the moment, not about the request: retried like a 5xx
_RETRIED_4XX = frozenset({401, 408, 429})

Facts = Callable[[str], Awaitable[ServerFacts | None]]
Samples = dict[str, list[dict[str, Any]]]  # resource id -> its samples


def refused(status: int) -> bool:
    """Gnocchi refused the request for good: the same body would be refused again."""
    return 400 <= status < 500 and status not in _RETRIED_4XX


def unknown_resources(status: int, answer: Any) -> set[str]:
    """The ids in Gnocchi's batch answer "Unknown resources" (resources deleted behind our
    back, gnocchi/rest/api.py), or none for any other answer."""
    desc = answer.get("description") if isinstance(answer, dict) else None
    if status != 400 or not isinstance(desc, dict) or desc.get("cause") != "Unknown resources":
        return set()
    return {str(d.get("original_resource_id", "")).lower() for d in desc.get("detail", [])}


def _detail(status: int, answer: Any) -> str:
    return f"HTTP {status} {answer!r}"[:500]


Auth = Callable[[], Awaitable[dict[str, str]]]


def basic_auth(user: str) -> Auth:
    """Gnocchi's auth_mode=basic: the user name is the identity, the password is ignored."""
    header = {"Authorization": "Basic " + base64.b64encode(f"{user}:".encode()).decode()}

    async def auth() -> dict[str, str]:
        return header

    return auth


def resource_body(uuid: str, inst: dict[str, Any], facts: ServerFacts | None) -> dict[str, Any]:
    """The `instance` resource for a reported instance: Nova's facts when Nova knows it,
    what the agent reported otherwise (an orphan still gets its usage recorded)."""
    if facts is None:
        return {
            "id": uuid,
            "display_name": inst["remote_id"],
            "flavor_id": inst.get("instance_type") or "unknown",
            "host": inst.get("az") or inst["provider"],
        }
    body = {
        "id": uuid,
        "display_name": facts.name,
        "flavor_id": facts.flavor_id,
        "flavor_name": facts.flavor_name,
        "host": facts.host,
        "image_ref": facts.image_ref,
    }
    for key in ("project_id", "user_id"):
        if getattr(facts, key):
            body[key] = getattr(facts, key)
    return body


def measures_body(samples: list[dict[str, Any]], archive_policy: str) -> dict[str, Any]:
    """The batch API body: {resource: {meter: {archive_policy_name, unit, measures}}}."""
    out: dict[str, dict[str, Any]] = {}
    for s in samples:
        metrics = out.setdefault(s["resource_id"].lower(), {})
        metric = metrics.get(s["meter"])
        if metric is None:
            unit = METERS[s["meter"]][0]
            metric = {"archive_policy_name": archive_policy, "unit": unit, "measures": []}
            metrics[s["meter"]] = metric
        metric["measures"].append({"timestamp": s["timestamp"], "value": s["volume"]})
    return out


class GnocchiSink:
    name = "gnocchi"

    def __init__(
        self,
        endpoint: str,
        auth: Auth,
        *,
        archive_policy: str = "ceilometer-low",
        facts: Facts | None = None,
        timeout_s: float = 30.0,
        concurrency: int = 8,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._auth = auth
        self.archive_policy = archive_policy
        self._facts = facts
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._concurrency = concurrency
        self._sem = asyncio.Semaphore(concurrency)
        self._known: set[str] = set()
        self._ready = False
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("GnocchiSink.start() has not been called")
        return self._session

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self._concurrency)
        # Gnocchi (pecan, webob) answers an error as HTML to aiohttp's default "Accept: */*";
        # only in JSON does its body carry what the sink acts on ("Unknown resources").
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, headers={"Accept": "application/json"}
        )
        try:
            await self._setup()
        except (aiohttp.ClientError, TimeoutError) as err:
            # Gnocchi may be down at boot: /readyz says so, and writes try again later.
            log.warning("gnocchi.setup_failed", error=repr(err))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def check(self) -> None:
        status, body = await self._request("GET", "/v1/resource_type/instance")
        if status != 200:
            raise SinkError(f"gnocchi: resource type instance: HTTP {status} {body!r}")

    async def _request(
        self, method: str, path: str, json: Any = None, params: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        try:
            return await self._request_once(method, path, json, params)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            # A pooled keep-alive connection the server had closed (gunicorn's sync workers
            # do): once more on a fresh one. The agent's own retry covers anything beyond.
            return await self._request_once(method, path, json, params)

    async def _request_once(
        self, method: str, path: str, json: Any, params: dict[str, str] | None
    ) -> tuple[int, Any]:
        headers = await self._auth()
        async with (
            self._sem,
            self.session.request(
                method, self.endpoint + path, json=json, params=params, headers=headers
            ) as resp,
        ):
            body = (
                await resp.json() if resp.content_type == "application/json" else await resp.text()
            )
            return resp.status, body

    async def _ensure(self, get_path: str, post_path: str, body: dict[str, Any]) -> None:
        status, _ = await self._request("GET", get_path)
        if status == 404:
            status, answer = await self._request("POST", post_path, json=body)
            if status not in (201, 409):  # 409: another receiver created it first
                raise SinkError(f"gnocchi: creating {get_path}: HTTP {status} {answer!r}")
            log.info("gnocchi.created", path=get_path)

    async def _ensure_archive_policy(self) -> None:
        name = self.archive_policy
        definition = CEILOMETER_POLICIES.get(name)
        if definition is None:
            return  # an operator's own policy: it must exist; check() and writes will say so
        await self._ensure(
            f"/v1/archive_policy/{name}", "/v1/archive_policy", {"name": name, **definition}
        )

    async def write(self, batch: Batch) -> None:
        if not batch.samples:
            return
        try:
            await self._write(batch)
        except (aiohttp.ClientError, TimeoutError) as err:
            raise SinkError(f"gnocchi: {err!r}") from err

    async def _write(self, batch: Batch) -> None:
        if not self._ready:
            await self._setup()
        by_uuid = {i["instance_uuid"].lower(): i for i in batch.instances}
        samples: Samples = {}
        for s in batch.samples:
            samples.setdefault(s["resource_id"].lower(), []).append(s)
        await self._create_resources([u for u in samples if u not in self._known], by_uuid, batch)
        await self._post_measures(self._keep(samples, batch), by_uuid, batch, recreate=True)

    def _keep(self, samples: Samples, batch: Batch) -> Samples:
        """`samples` without the resources already dropped from this batch."""
        gone = {d.resource_id for d in batch.dropped if d.sink == self.name}
        return {rid: s for rid, s in samples.items() if rid not in gone}

    def _drop(self, batch: Batch, rid: str, n: int, reason: str, detail: str) -> None:
        batch.dropped.append(Dropped(self.name, rid, n, reason, detail))
        log.warning(
            "gnocchi.dropped", resource_id=rid, samples=n, reason=reason, detail=detail,
            key=batch.key,
        )  # fmt: skip

    async def _post_measures(
        self, samples: Samples, by_uuid: dict[str, Any], batch: Batch, *, recreate: bool
    ) -> None:
        """One batch call for `samples`; if Gnocchi refuses it, the resources it names as
        unknown are created again (once), and otherwise the set is halved until the refused
        resources stand alone and are dropped: log2(N) extra calls per bad resource."""
        if not samples:
            return
        body = measures_body([s for group in samples.values() for s in group], self.archive_policy)
        status, answer = await self._request(
            "POST", "/v1/batch/resources/metrics/measures", json=body,
            params={"create_metrics": "true"},
        )  # fmt: skip
        if status == 202:
            return
        if not refused(status):
            raise SinkError(f"gnocchi: batch measures: {_detail(status, answer)}")
        unknown = unknown_resources(status, answer) & samples.keys()
        if unknown and recreate:
            # deleted behind our back (Gnocchi's own janitor, an operator): create them again
            self._known.difference_update(unknown)
            await self._create_resources(sorted(unknown), by_uuid, batch)
            await self._post_measures(self._keep(samples, batch), by_uuid, batch, recreate=False)
            return
        rids = sorted(samples)
        if len(rids) == 1:
            self._known.discard(rids[0])
            self._drop(
                batch, rids[0], len(samples[rids[0]]), "measures_refused", _detail(status, answer)
            )
            return
        half = len(rids) // 2
        for part in (rids[:half], rids[half:]):
            await self._post_measures(
                {r: samples[r] for r in part}, by_uuid, batch, recreate=recreate
            )

    async def _setup(self) -> None:
        """Create the archive policy and resource type, once (at start, or at the first write
        if Gnocchi was down at start)."""
        await self._ensure_archive_policy()
        await self._ensure("/v1/resource_type/instance", "/v1/resource_type", INSTANCE_TYPE)
        self._ready = True

    async def _create_resources(
        self, uuids: list[str], by_uuid: dict[str, Any], batch: Batch
    ) -> None:
        """Create the `instance` resources of `uuids`; those Gnocchi refuses are dropped from
        `batch` with all their samples (and tried again with the next report)."""
        counts: dict[str, int] = {}
        for s in batch.samples:
            rid = s["resource_id"].lower()
            counts[rid] = counts.get(rid, 0) + 1

        async def create(uuid: str) -> None:
            status, answer = await self._create_resource(uuid, by_uuid[uuid])
            if status in (201, 409):  # 409: it exists (another receiver, an earlier try)
                self._known.add(uuid)
            elif refused(status):
                self._drop(
                    batch, uuid, counts.get(uuid, 0), "resource_refused", _detail(status, answer)
                )
            else:
                raise SinkError(f"gnocchi: creating resource {uuid}: {_detail(status, answer)}")

        await bounded_each(create, uuids, self._concurrency)

    async def _create_resource(self, uuid: str, inst: dict[str, Any]) -> tuple[int, Any]:
        facts = await self._facts(uuid) if self._facts is not None else None
        body = resource_body(uuid, inst, facts)
        return await self._request("POST", "/v1/resource/instance", json=body)


def keystone_auth(nova: NovaClient) -> Auth:
    """A Keystone token from the receiver's own OpenStack session (keystoneauth caches and
    renews it, so this is cheap after the first call)."""

    async def auth() -> dict[str, str]:
        return {"X-Auth-Token": await nova.token()}

    return auth


def from_config(config: AzfedConfig, nova: NovaClient) -> GnocchiSink:
    g = config.gnocchi
    if g.endpoint is None:
        raise SinkError("gnocchi: set [gnocchi] endpoint (the metric endpoint of the catalog)")
    auth = basic_auth(g.basic_user) if g.auth_mode == "basic" else keystone_auth(nova)
    return GnocchiSink(
        str(g.endpoint),
        auth,
        archive_policy=g.archive_policy,
        facts=nova.server,
        timeout_s=g.timeout_s,
        concurrency=g.concurrency,
    )
