"""Write samples to Gnocchi the way Ceilometer does: an `instance` resource per Nova instance,
an `instance_network_interface` per vNIC and an `instance_disk` per disk (resource types and
archive policies created once, with Ceilometer's definitions: `ceilometer-upgrade` makes the
same), measures through the batch API with `create_metrics=true`, each metric under the archive
policy gnocchi_resources.yaml names for it. An instance's attributes come from Nova and are
PATCHed when they change (a resize, a rename); `ended_at` is set on the instance and its vNICs
and disks once Nova no longer has the server and the public cloud is ending it. Burst VMs'
usage then sits beside local VMs'.

One resource Gnocchi refuses (a 4xx on its creation or on its measures) loses its own measures
only, as in Ceilometer's publisher: they are added to the batch's `dropped` and the rest is
written, so the report is accepted and the agent does not retry it forever. Gnocchi down, a 5xx,
or a 401/408/429 fails the write (503 to the agent, which retries).
"""

from __future__ import annotations

import asyncio
import base64
import json as _json
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
import structlog
from azfed.receiver.aio import bounded_each
from azfed.receiver.nova import NovaClient, ServerFacts
from azfed.receiver.sinks import Batch, Dropped, SinkError
from azfed.wire import LOW, LOW_RATE, METERS, ResourceType, resource_id

if TYPE_CHECKING:
    from azfed.config import AzfedConfig

log = structlog.get_logger(__name__)

_STR = {"type": "string", "min_length": 0, "max_length": 255}
_TIME = {"type": "datetime", "required": False}
# Ceilometer's resource types as `ceilometer-upgrade` leaves them (27.0.0 gnocchi_client.py:
# resources_initial, then every resources_update_operations entry): the `instance` attributes
# gnocchi_resources.yaml fills, and the vNIC and disk types that hang off an instance.
RESOURCE_TYPES: dict[ResourceType, dict[str, dict[str, Any]]] = {
    "instance": {
        "display_name": {**_STR, "required": True},
        "flavor_id": {**_STR, "required": True},
        "flavor_name": {**_STR, "required": True},
        "host": {**_STR, "required": False},
        "image_ref": {**_STR, "required": False},
        "server_group": {**_STR, "required": False},
        "launched_at": _TIME,
        "created_at": _TIME,
        "deleted_at": _TIME,
        "availability_zone": {**_STR, "required": False},
    },
    "instance_network_interface": {
        "name": {**_STR, "required": True},
        "instance_id": {"type": "uuid", "required": True},
    },
    "instance_disk": {
        "name": {**_STR, "required": True},
        "instance_id": {"type": "uuid", "required": True},
    },
}
# Nova's user metadata key Ceilometer reads `server_group` from (resource_metadata.user_metadata
# .server_group: nova-compute passes the `metering.` keys on without the prefix)
SERVER_GROUP_KEY = "metering.server_group"
# the reported states in which the public cloud is ending an instance
ENDING = frozenset({"shutting-down", "terminated"})
FRESH_EVERY_S = 60.0

# Ceilometer's archive policies (gnocchi_resources.yaml), created if missing.
CEILOMETER_POLICIES: dict[str, dict[str, Any]] = {
    LOW: {
        "aggregation_methods": ["mean"],
        "back_window": 0,
        "definition": [{"granularity": "5 minutes", "timespan": "30 days"}],
    },
    LOW_RATE: {
        "aggregation_methods": ["mean", "rate:mean"],
        "back_window": 0,
        "definition": [{"granularity": "5 minutes", "timespan": "30 days"}],
    },
}

# 4xx answers about us or the moment, not about the request: retried like a 5xx
_RETRIED_4XX = frozenset({401, 408, 429})


class Facts(Protocol):
    """Nova's facts of a server, None if Nova has no such server (`NovaClient.server`)."""

    async def __call__(self, uuid: str, *, fresh: bool = False) -> ServerFacts | None: ...


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


def _with_fill(spec: dict[str, Any]) -> dict[str, Any]:
    # A required attribute added to a type that has resources needs a value for them
    # (Ceilometer adds flavor_name with fill '')
    if spec.get("required") and spec["type"] == "string":
        return {**spec, "options": {"fill": ""}}
    return spec


def basic_auth(user: str) -> Auth:
    """Gnocchi's auth_mode=basic: the user name is the identity, the password is ignored."""
    header = {"Authorization": "Basic " + base64.b64encode(f"{user}:".encode()).decode()}

    async def auth() -> dict[str, str]:
        return header

    return auth


def instance_attributes(inst: dict[str, Any], facts: ServerFacts | None) -> dict[str, Any]:
    """The `instance` resource's attributes: Nova's facts when Nova knows the server (as
    Ceilometer's notifications and pollsters give them), what the agent reported otherwise (an
    orphan still gets its usage recorded, under no flavor)."""
    # display_name, flavor_id and host are required by the type Ceilometer creates: always
    # sent, empty when unknown (Gnocchi refuses the resource, and so its measures, without them)
    if facts is None:
        return {
            "display_name": inst["remote_id"],
            "flavor_id": "",
            "flavor_name": "",
            "host": inst.get("az") or inst["provider"],
            "availability_zone": inst.get("az"),
            "launched_at": inst.get("launched_at"),
        }
    return {
        "display_name": facts.name,
        "flavor_id": facts.flavor_id,
        "flavor_name": facts.flavor_name,
        "host": facts.host,
        "image_ref": facts.image_ref or None,
        "server_group": facts.metadata.get(SERVER_GROUP_KEY),
        "availability_zone": facts.az or None,
        "created_at": facts.created_at or None,
        "launched_at": facts.launched_at or None,
    }


def resource_body(uuid: str, inst: dict[str, Any], facts: ServerFacts | None) -> dict[str, Any]:
    """The `instance` resource to create for a reported instance."""
    body = {"id": uuid, **instance_attributes(inst, facts)}
    if facts is not None:
        body.update({k: getattr(facts, k) for k in ("project_id", "user_id") if getattr(facts, k)})
    return {k: v for k, v in body.items() if v is not None}


def device_body(rid: str, uuid: str, device: str, facts: ServerFacts | None) -> dict[str, Any]:
    """An `instance_network_interface` or `instance_disk` resource: its name is the device,
    and it belongs to the instance (Ceilometer searches them by instance_id on delete)."""
    body = {"id": rid, "name": device, "instance_id": uuid}
    if facts is not None:
        body.update({k: getattr(facts, k) for k in ("project_id", "user_id") if getattr(facts, k)})
    return body


def changed_attributes(want: dict[str, Any], have: dict[str, Any] | None) -> dict[str, Any]:
    """What a PATCH must send: every attribute that differs from what was last written (all of
    them when that is unknown, after a restart). An attribute now unknown is not cleared."""
    return {k: v for k, v in want.items() if v is not None and (have is None or have.get(k) != v)}


def not_before(ended_at: str, started_at: str | None) -> str:
    """`ended_at`, or the resource's `started_at` if that is later. Gnocchi refuses an end
    before the start, and starts a resource at its own clock's time of creation: a VM created
    and ended in one report (deleted within one agent cycle) would end before it started."""
    if started_at and datetime.fromisoformat(started_at) > datetime.fromisoformat(ended_at):
        return started_at
    return ended_at


def policy_of(meter: str, override: str | None) -> str:
    """A metric's archive policy: gnocchi_resources.yaml's, unless the operator names one for
    all (Ceilometer's `archive_policy` publisher option)."""
    return override or METERS[meter].archive_policy  # type: ignore[index]


def measures_body(samples: list[dict[str, Any]], override: str | None) -> dict[str, Any]:
    """The batch API body: {resource id: {meter: {archive_policy_name, unit, measures}}}."""
    out: dict[str, dict[str, Any]] = {}
    for s in samples:
        metrics = out.setdefault(resource_id(s["instance_uuid"], s.get("device")), {})
        metric = metrics.get(s["meter"])
        if metric is None:
            unit = METERS[s["meter"]].unit
            policy = policy_of(s["meter"], override)
            metric = {"archive_policy_name": policy, "unit": unit, "measures": []}
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
        archive_policy: str | None = None,
        facts: Facts | None = None,
        timeout_s: float = 30.0,
        concurrency: int = 8,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._auth = auth
        # None: each metric under gnocchi_resources.yaml's policy; a name: all under that one
        self.archive_policy = archive_policy
        self._facts = facts
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._concurrency = concurrency
        self._sem = asyncio.Semaphore(concurrency)
        self._known: set[str] = set()  # resource ids Gnocchi has
        self._attrs: dict[str, dict[str, Any]] = {}  # instance -> attributes last written
        self._ended: set[str] = set()  # instances whose ended_at is set
        self._asked: dict[str, float] = {}  # instance -> when Nova was last asked afresh
        self._types: dict[str, str | None] = {}  # instance -> its public type last reported
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
        except (aiohttp.ClientError, TimeoutError, SinkError) as err:
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

    # --- reading back ---------------------------------------------------------------------------

    async def latest(self, uuid: str) -> list[dict[str, Any]] | None:
        """The newest value of each of the instance's metrics and its vNICs' and disks' (the
        finest granularity's mean: for the dashboard), or None if Gnocchi has no such
        instance."""
        resources = [("instance", await self._get_resource("instance", uuid))]
        if resources[0][1] is None:
            return None
        for rtype in ("instance_network_interface", "instance_disk"):
            status, found = await self._request(
                "POST", f"/v1/search/resource/{rtype}", json={"=": {"instance_id": uuid}}
            )
            if status != 200:
                raise SinkError(f"gnocchi: searching {rtype} of {uuid}: {_detail(status, found)}")
            resources += [(rtype, r) for r in found]
        out = []
        for rtype, resource in resources:
            assert resource is not None
            for meter, metric_id in sorted(resource["metrics"].items()):
                point = await self._last_point(metric_id)
                if point is not None:
                    out.append({
                        "resource_type": rtype, "device": resource.get("name"), "meter": meter,
                        "unit": METERS[meter].unit if meter in METERS else None,
                        "timestamp": point[0], "value": point[2],
                    })  # fmt: skip
        return out

    async def _get_resource(self, rtype: str, rid: str) -> dict[str, Any] | None:
        status, answer = await self._request("GET", f"/v1/resource/{rtype}/{rid}")
        if status == 404:
            return None
        if status != 200:
            raise SinkError(f"gnocchi: resource {rid}: {_detail(status, answer)}")
        resource: dict[str, Any] = answer
        return resource

    async def _last_point(self, metric_id: str) -> list[Any] | None:
        status, points = await self._request("GET", f"/v1/metric/{metric_id}/measures")
        if status != 200 or not points:
            return None
        finest = min(p[1] for p in points)
        last: list[Any] = [p for p in points if p[1] == finest][-1]
        return last

    # --- HTTP ---------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        json: Any = None,
        params: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> tuple[int, Any]:
        try:
            return await self._request_once(method, path, json, params, content_type)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            # A pooled keep-alive connection the server had closed (gunicorn's sync workers
            # do): once more on a fresh one. The agent's own retry covers anything beyond.
            return await self._request_once(method, path, json, params, content_type)

    async def _request_once(
        self,
        method: str,
        path: str,
        json: Any,
        params: dict[str, str] | None,
        content_type: str | None,
    ) -> tuple[int, Any]:
        headers = await self._auth()
        kw: dict[str, Any] = {"json": json}
        if content_type is not None:  # Gnocchi takes a resource type's PATCH as JSON Patch only
            headers = {**headers, "Content-Type": content_type}
            kw = {"data": _json.dumps(json)}
        async with (
            self._sem,
            self.session.request(
                method, self.endpoint + path, params=params, headers=headers, **kw
            ) as resp,
        ):
            body = (
                await resp.json() if resp.content_type == "application/json" else await resp.text()
            )
            return resp.status, body

    # --- archive policies and resource types, once ------------------------------------------

    async def _setup(self) -> None:
        """Create the archive policies and resource types, or add the attributes an older
        type lacks, once (at start, or at the first write if Gnocchi was down at start)."""
        for name in self._policies():
            await self._ensure(
                f"/v1/archive_policy/{name}",
                "/v1/archive_policy",
                {"name": name, **CEILOMETER_POLICIES[name]},
            )
        for rtype, attributes in RESOURCE_TYPES.items():
            await self._ensure_type(rtype, attributes)
        self._ready = True

    def _policies(self) -> list[str]:
        # an operator's own policy must exist: check() and writes will say so if not
        if self.archive_policy is not None:
            return [self.archive_policy] if self.archive_policy in CEILOMETER_POLICIES else []
        return sorted(CEILOMETER_POLICIES)

    async def _ensure(self, get_path: str, post_path: str, body: dict[str, Any]) -> Any:
        status, answer = await self._request("GET", get_path)
        if status == 404:
            status, answer = await self._request("POST", post_path, json=body)
            if status not in (201, 409):  # 409: another receiver created it first
                raise SinkError(f"gnocchi: creating {get_path}: HTTP {status} {answer!r}")
            log.info("gnocchi.created", path=get_path)
            return body
        if status != 200:
            raise SinkError(f"gnocchi: {get_path}: HTTP {status} {answer!r}")
        return answer

    async def _ensure_type(self, rtype: str, attributes: dict[str, dict[str, Any]]) -> None:
        """As `ceilometer-upgrade` does: create the type, or add what an older one lacks (an
        `instance` type made by an azfed before launched_at, or by an old Ceilometer)."""
        found = await self._ensure(
            f"/v1/resource_type/{rtype}",
            "/v1/resource_type",
            {"name": rtype, "attributes": attributes},
        )
        have = found.get("attributes", {}) if isinstance(found, dict) else {}
        missing = [name for name in attributes if name not in have]
        if not missing:
            return
        patch = [
            {"op": "add", "path": f"/attributes/{name}", "value": _with_fill(attributes[name])}
            for name in missing
        ]
        status, answer = await self._request(
            "PATCH", f"/v1/resource_type/{rtype}", json=patch,
            content_type="application/json-patch+json",
        )  # fmt: skip
        if status != 200:
            raise SinkError(f"gnocchi: adding {missing} to {rtype}: HTTP {status} {answer!r}")
        log.info("gnocchi.type_updated", resource_type=rtype, added=missing)

    # --- one batch ----------------------------------------------------------------------------

    async def write(self, batch: Batch) -> None:
        try:
            if batch.samples:
                await self._write(batch)
            await self._update_instances(batch)
        except (aiohttp.ClientError, TimeoutError) as err:
            raise SinkError(f"gnocchi: {err!r}") from err

    async def _write(self, batch: Batch) -> None:
        if not self._ready:
            await self._setup()
        by_uuid = {i["instance_uuid"].lower(): i for i in batch.instances}
        samples: Samples = {}
        for s in batch.samples:
            samples.setdefault(resource_id(s["instance_uuid"], s.get("device")), []).append(s)
        await self._create_resources([r for r in samples if r not in self._known], by_uuid, batch)
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
        flat = [s for group in samples.values() for s in group]
        status, answer = await self._request(
            "POST", "/v1/batch/resources/metrics/measures",
            json=measures_body(flat, self.archive_policy), params={"create_metrics": "true"},
        )  # fmt: skip
        if status == 202:
            return
        if not refused(status):
            raise SinkError(f"gnocchi: batch measures: {_detail(status, answer)}")
        lower = {rid.lower(): rid for rid in samples}
        unknown = {lower[u] for u in unknown_resources(status, answer) if u in lower}
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

    # --- resources ----------------------------------------------------------------------------

    async def _create_resources(
        self, rids: list[str], by_uuid: dict[str, Any], batch: Batch
    ) -> None:
        """Create the resources `rids`; those Gnocchi refuses are dropped from `batch` with
        all their samples (and tried again with the next report)."""
        counts: dict[str, int] = {}
        where: dict[str, tuple[str, str | None, str]] = {}
        for s in batch.samples:
            rid = resource_id(s["instance_uuid"], s.get("device"))
            counts[rid] = counts.get(rid, 0) + 1
            where[rid] = (s["instance_uuid"].lower(), s.get("device"), s["resource_type"])

        async def create(rid: str) -> None:
            uuid, device, rtype = where[rid]
            status, answer = await self._create_resource(rid, rtype, device, by_uuid[uuid])
            if status in (201, 409):  # 409: it exists (another receiver, an earlier try)
                self._known.add(rid)
            elif refused(status):
                self._drop(
                    batch, rid, counts.get(rid, 0), "resource_refused", _detail(status, answer)
                )
            else:
                raise SinkError(f"gnocchi: creating resource {rid}: {_detail(status, answer)}")

        await bounded_each(create, rids, self._concurrency)

    async def _create_resource(
        self, rid: str, rtype: str, device: str | None, inst: dict[str, Any]
    ) -> tuple[int, Any]:
        uuid = inst["instance_uuid"].lower()
        facts = await self._facts(uuid) if self._facts is not None else None
        if device is None:
            body = resource_body(uuid, inst, facts)
            status, answer = await self._request("POST", "/v1/resource/instance", json=body)
            if status == 201:
                self._attrs[uuid] = instance_attributes(inst, facts)
            return status, answer
        body = device_body(rid, uuid, device, facts)
        return await self._request("POST", f"/v1/resource/{rtype}", json=body)

    # --- attributes kept current, and ended_at ------------------------------------------------

    async def _update_instances(self, batch: Batch) -> None:
        """PATCH what changed of each reported instance's attributes (a resize, a rename); end
        the resources of an instance Nova no longer has while the public cloud ends it."""
        if self._facts is None:
            return
        ended_at = datetime.fromtimestamp(batch.received_at, timezone.utc).isoformat()

        async def update(inst: dict[str, Any]) -> None:
            await self._update_instance(inst, ended_at)

        await bounded_each(update, batch.instances, self._concurrency)

    async def _update_instance(self, inst: dict[str, Any], ended_at: str) -> None:
        assert self._facts is not None
        uuid = inst["instance_uuid"].lower()
        if uuid in self._ended:
            return
        ending = inst["state"] in ENDING
        if not ending and uuid not in self._known:
            return  # no resource yet: it is created, with these attributes, with its samples
        resized = self._type_changed(uuid, inst.get("instance_type"))
        fresh = resized or (ending and self._may_ask_afresh(uuid))
        facts = await self._facts(uuid, fresh=fresh)
        if facts is None:
            if ending:
                await self._end(uuid, ended_at)
            return
        want = instance_attributes(inst, facts)
        changed = changed_attributes(want, self._attrs.get(uuid))
        if changed:
            await self._patch_instance(uuid, changed, want)

    def _type_changed(self, uuid: str, instance_type: str | None) -> bool:
        """Whether the public cloud now runs the instance as another type than it last
        reported: a resize, which Nova has applied to the server's flavor before the driver
        changes the type. Nova's cached facts would show the old flavor for minutes."""
        before = self._types.get(uuid, instance_type)
        self._types[uuid] = instance_type
        return before != instance_type

    def _may_ask_afresh(self, uuid: str) -> bool:
        """Nova's answer for an instance being ended must be fresh, not the cache's; but a
        husk (Nova keeps the server, the public VM is gone) is reported terminated for as long
        as the cloud lists it, so Nova is asked afresh about it at most once a minute."""
        now = time.monotonic()
        if now - self._asked.get(uuid, -FRESH_EVERY_S) < FRESH_EVERY_S:
            return False
        self._asked[uuid] = now
        return True

    async def _patch_instance(
        self, uuid: str, changed: dict[str, Any], want: dict[str, Any]
    ) -> None:
        status, answer = await self._request("PATCH", f"/v1/resource/instance/{uuid}", json=changed)
        if status == 200:
            self._attrs[uuid] = want
            log.info("gnocchi.resource_updated", instance_uuid=uuid, attributes=sorted(changed))
        elif status == 404:  # deleted behind our back: created again with the next samples
            self._known.discard(uuid)
            self._attrs.pop(uuid, None)
        elif refused(status):  # not asked again until the attributes change
            self._attrs[uuid] = want
            log.warning("gnocchi.update_refused", instance_uuid=uuid,
                        detail=_detail(status, answer))  # fmt: skip
        else:
            raise SinkError(f"gnocchi: updating resource {uuid}: {_detail(status, answer)}")

    async def _end(self, uuid: str, ended_at: str) -> None:
        """`ended_at` on the instance and its vNICs and disks, as Ceilometer does on Nova's
        compute.instance.delete.start (at the receiver's time, as Ceilometer's is its own)."""
        resources = await self._open_resources(uuid)
        for rtype, rid, started_at in resources:
            status, answer = await self._request(
                "PATCH", f"/v1/resource/{rtype}/{rid}",
                json={"ended_at": not_before(ended_at, started_at)},
            )  # fmt: skip
            if status not in (200, 404) and not refused(status):
                raise SinkError(f"gnocchi: ending resource {rid}: {_detail(status, answer)}")
            if refused(status) and status != 404:
                log.warning("gnocchi.end_refused", resource_id=rid, detail=_detail(status, answer))
        self._ended.add(uuid)
        log.info("gnocchi.resource_ended", instance_uuid=uuid, ended_at=ended_at,
                 resources=len(resources))  # fmt: skip

    async def _open_resources(self, uuid: str) -> list[tuple[str, str, str | None]]:
        """The instance's resource and its vNIC and disk resources (Ceilometer's
        event_associated_resources) not ended yet: (type, Gnocchi's id, started_at)."""
        out = []
        for rtype, key in (
            ("instance", "id"),
            ("instance_network_interface", "instance_id"),
            ("instance_disk", "instance_id"),
        ):
            status, answer = await self._request(
                "POST", f"/v1/search/resource/{rtype}", json={"=": {key: uuid}}
            )
            if status != 200 or not isinstance(answer, list):
                raise SinkError(f"gnocchi: searching {rtype} of {uuid}: {_detail(status, answer)}")
            out += [
                (rtype, str(r["id"]), r.get("started_at")) for r in answer if not r.get("ended_at")
            ]
        return out


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
