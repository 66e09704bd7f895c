"""The receiver's own Prometheus metrics, on a registry of its own per app (so two apps in
one test process do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Report writes take from milliseconds (null sink) to seconds (10,000 instances into Nova).
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.reports = Counter(
            "azfed_receiver_reports", "Reports answered, by outcome", ["outcome"], registry=r
        )
        self.samples = Counter("azfed_receiver_samples", "Samples written", registry=r)
        self.instances = Counter("azfed_receiver_instances", "Instance states written", registry=r)
        self.dropped = Counter(
            "azfed_receiver_samples_dropped",
            "Samples a sink's backend refused for good while the rest of the report was written"
            " (`azfed status` names the resources), by sink and reason",
            ["sink", "reason"],
            registry=r,
        )
        self.skipped = Counter(
            "azfed_receiver_resources_skipped",
            "Resources a sink skipped while the rest of the report was written (a Nova server "
            "deleted since it was reported: server_gone; a resource Gnocchi refused), by sink "
            "and reason",
            ["sink", "reason"],
            registry=r,
        )
        self.rejects = Counter(
            "azfed_receiver_rejects", "Reports refused, by reason", ["reason"], registry=r
        )
        self.write_seconds = Histogram(
            "azfed_receiver_write_seconds",
            "Time to write a report, by sink",
            ["sink"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.inflight = Gauge("azfed_receiver_inflight", "Reports being processed", registry=r)
        self.orphans = Gauge(
            "azfed_receiver_orphans",
            "Orphans found by the last reconciliation",
            ["kind"],
            registry=r,
        )
        self.reconcile_runs = Counter(
            "azfed_receiver_reconcile_runs",
            "Reconciliation runs, by outcome",
            ["outcome"],
            registry=r,
        )
        self.budget_spend = Gauge(
            "azfed_receiver_budget_spend",
            "Spent on burst instances this day / month (the price tables' currency), as of the "
            "last GET /v1/spend, by period",
            ["period"],
            registry=r,
        )
        self.budget_left = Gauge(
            "azfed_receiver_budget_left",
            "Spend budget left this day / month, as of the last GET /v1/spend, by period "
            "(absent: no budget for that period)",
            ["period"],
            registry=r,
        )
        self.budget_warning = Gauge(
            "azfed_receiver_budget_warning",
            "1 once a period's spend reached budgets.spend.warn_at_pct of its budget, by period",
            ["period"],
            registry=r,
        )
        self.lease_held = Gauge(
            "azfed_receiver_lease_held",
            "1 while this receiver holds the lease for the once-per-cloud work, by lease",
            ["lease"],
            registry=r,
        )
