"""The agent's self-metrics and its /healthz, /readyz and /metrics listener.

Metrics live in a registry per agent (not prometheus-client's global one) so that two agents
in one process, as in the tests, never share counters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from azfed.probes import add_probes
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class AgentMetrics:
    """Counters for every stage of collector -> batcher -> spool -> pusher. Drops are counted."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.cycles = Counter(
            "azfed_agent_cycles",
            "Collection cycles by outcome",
            ["collector", "outcome"],
            registry=r,
        )
        self.cycle_seconds = Histogram(
            "azfed_agent_cycle_seconds",
            "Wall time of a collection cycle",
            ["collector"],
            registry=r,
        )
        self.api_calls = Counter(
            "azfed_agent_api_calls", "Cloud API requests sent (retries included)",
            ["api", "action"], registry=r,
        )  # fmt: skip
        self.throttles = Counter(
            "azfed_agent_api_throttles", "Cloud API requests refused as throttled",
            ["api", "action"], registry=r,
        )  # fmt: skip
        self.api_errors = Counter(
            "azfed_agent_api_errors", "Cloud API calls that failed after retries",
            ["api", "action"], registry=r,
        )  # fmt: skip
        self.instances = Gauge(
            "azfed_agent_instances", "Federated instances seen by the last cycle", ["collector"],
            registry=r,
        )  # fmt: skip
        self.samples = Counter(
            "azfed_agent_samples", "Samples by stage: collected, spooled, pushed", ["stage"],
            registry=r,
        )  # fmt: skip
        self.dropped = Counter(
            "azfed_agent_samples_dropped", "Samples dropped, by reason", ["reason"], registry=r
        )
        self.reports = Counter(
            "azfed_agent_reports", "Reports sent, by receiver answer", ["outcome"], registry=r
        )
        self.spool_bytes = Gauge("azfed_agent_spool_bytes", "Bytes in the spool", registry=r)
        self.spool_reports = Gauge("azfed_agent_spool_reports", "Reports in the spool", registry=r)
        self.push_seconds = Histogram(
            "azfed_agent_push_seconds", "Latency of one report POST", registry=r
        )

    def count(self, stage: str, n: int) -> None:
        self.samples.labels(stage).inc(n)

    def drop(self, reason: str, n: int) -> None:
        self.dropped.labels(reason).inc(n)


@dataclass
class Readiness:
    """What /readyz checks; each callable answers (ok, reason if not ok)."""

    checks: dict[str, Callable[[], tuple[bool, str]]]

    def report(self) -> tuple[bool, dict[str, str]]:
        out: dict[str, str] = {}
        ok = True
        for name, check in self.checks.items():
            good, why = check()
            out[name] = "ok" if good else why
            ok = ok and good
        return ok, out


READY_KEY = web.AppKey("readiness", Readiness)


async def _readyz(request: web.Request) -> web.Response:
    ok, checks = request.app[READY_KEY].report()
    return web.json_response(
        {"status": "ok" if ok else "not ready", "checks": checks}, status=200 if ok else 503
    )


def create_health_app(metrics: AgentMetrics, readiness: Readiness) -> web.Application:
    """The health listener: GET only, tiny bodies, so the default body limit is lowered."""
    app = web.Application(client_max_size=1024)
    app[READY_KEY] = readiness
    add_probes(app, metrics.registry)
    app.router.add_get("/readyz", _readyz)
    return app


async def start_health(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Serve `app` on host:port (port 0: the OS chooses); the caller cleans the runner up."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port a runner listens on (useful when it was started on port 0)."""
    for addr in runner.addresses:
        if isinstance(addr, tuple):
            return int(addr[1])
    raise RuntimeError("the health listener is not bound to a TCP port")
