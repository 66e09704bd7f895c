"""The /healthz and /metrics endpoints both services serve: the agent on its health port, the
receiver beside its API. What "ready" means differs per process, so /readyz stays with each."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

REGISTRY = web.AppKey("prometheus_registry", CollectorRegistry)


async def healthz(request: web.Request) -> web.Response:
    # alive means the event loop answers; readiness is /readyz's business
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_probes(app: web.Application, registry: CollectorRegistry) -> None:
    """Serve GET /healthz and GET /metrics (the metrics of `registry`) on `app`."""
    app[REGISTRY] = registry
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
