"""The Federation panel: the receiver's explain of the next boot of a chosen flavor (GET
/v1/placement, what `azfed policy explain` prints for the same moment), the filter's decisions
of the last day with a chart of the local load they saw (GET /v1/decisions: kept in the
receiver's store, so the chart outlives restarts of the filter and of the receiver), and the
agents' freshness and the orphans reconciliation found (GET /v1/status). Each part says so in
its place when the receiver cannot give it."""

from __future__ import annotations

import time
from typing import Any

from azfed.dashboard import receiver
from django.utils.translation import gettext_lazy as _
from horizon import views
from openstack_dashboard import api

DECISIONS_SHOWN = 20
# the chart's span: the receiver keeps the filter's decisions longer (GET /v1/decisions' kept_s)
CHART_WINDOW_S = 24 * 3600
CHART_MAX = 500  # GET /v1/decisions' largest page
CHART_W, CHART_H, CHART_PAD = 600.0, 160.0, 20.0
CHART_METRIC = "memory_used_pct"


def _utc(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))


def _flavors(request: Any) -> list[str]:
    try:
        return sorted(f.name for f in api.nova.flavor_list(request))
    except Exception:  # Nova's failure: the panel still shows what the receiver says
        return []


def _explained(doc: dict[str, Any]) -> dict[str, Any]:
    """The explain document as the template shows it."""
    local = doc["local"]
    return {
        "thresholds": [{"metric": m, **t} for m, t in sorted(local["thresholds"].items())],
        "public": [
            {**az, "caps": [{"name": n, **c} for n, c in az["caps"].items()]}
            for az in doc["public"]
        ],
        "skipped": doc["next_boot"].get("skipped", []),
        "budget_caps": [
            {"name": n, **c} for n, c in ((doc.get("budgets") or {}).get("caps") or {}).items()
        ],
    }


def _decision_rows(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "at": _utc(d.get("at", 0)),
            "instance_uuid": d.get("instance_uuid", ""),
            "flavor": d.get("flavor", ""),
            "az": d.get("az") or "refused",
            "rule": d.get("rule", ""),
            "reason": d.get("reason", ""),
            "local_pct": ((d.get("load") or {}).get("local") or {}).get(CHART_METRIC),
        }
        for d in decisions
    ]


def _y(pct: float) -> float:
    return round(CHART_H - CHART_PAD - (CHART_H - 2 * CHART_PAD) * min(max(pct, 0), 100) / 100, 1)


def chart(decisions: list[dict[str, Any]], thresholds: list[dict[str, Any]]) -> dict[str, Any]:
    """A chart of the local memory use each decision saw over time, oldest left, a dot per boot
    (filled: sent to a public AZ), with the burst and return thresholds as lines and the times
    of the first and the last boot under it; drawn as SVG by the template, no JavaScript."""
    points = [
        (float(d["at"]), float(d["load"]["local"][CHART_METRIC]), bool(d.get("burst")))
        for d in sorted(decisions, key=lambda d: float(d.get("at", 0)))
        if CHART_METRIC in ((d.get("load") or {}).get("local") or {})
    ]
    if not points:
        return {}
    t0, t1 = points[0][0], points[-1][0]
    span = (t1 - t0) or 1.0

    def x(at: float) -> float:
        return round(CHART_PAD + (CHART_W - 2 * CHART_PAD) * (at - t0) / span, 1)

    dots = [{"x": x(at), "y": _y(pct), "burst": burst, "pct": pct} for at, pct, burst in points]
    limits = next((t for t in thresholds if t["metric"] == CHART_METRIC), {})
    lines = [
        {"name": name, "y": _y(float(limits[name]))}
        for name in ("burst", "return")
        if limits.get(name) is not None
    ]
    return {
        "w": CHART_W,
        "h": CHART_H,
        "polyline": " ".join(f"{d['x']},{d['y']}" for d in dots),
        "dots": dots,
        "lines": lines,
        "x_end": CHART_W - CHART_PAD,
        "x_start": CHART_PAD,
        "first_at": _utc(t0),
        "last_at": _utc(t1),
    }


class IndexView(views.HorizonTemplateView):
    template_name = "azfed/federation/index.html"
    page_title = _("Federation")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context: dict[str, Any] = super().get_context_data(**kwargs)
        flavors = _flavors(self.request)
        flavor = self.request.GET.get("flavor") or (flavors[0] if flavors else "")
        context.update(flavors=flavors, flavor=flavor, chart_window_h=CHART_WINDOW_S // 3600)
        context.update(self._explain(flavor))
        context.update(self._decisions(context.get("thresholds", [])))
        context.update(self._status())
        return context

    @staticmethod
    def _explain(flavor: str) -> dict[str, Any]:
        try:
            doc = receiver.get("/v1/placement", flavor=flavor) if flavor else None
        except receiver.ReceiverUnavailable as err:
            return {"doc": None, "error": str(err)}
        if doc is None:
            return {"doc": None, "error": f"the receiver knows no flavor {flavor!r}"}
        return {"doc": doc, "error": None, **_explained(doc)}

    @staticmethod
    def _decisions(thresholds: list[dict[str, Any]]) -> dict[str, Any]:
        """The last day's decisions: the newest in the table, all of them on the chart."""
        since = str(int(time.time()) - CHART_WINDOW_S)
        try:
            found = receiver.get("/v1/decisions", limit=str(CHART_MAX), since=since) or {}
        except receiver.ReceiverUnavailable as err:
            return {"decisions": [], "decisions_error": str(err)}
        decisions = found.get("decisions", [])
        return {
            "decisions": _decision_rows(decisions[:DECISIONS_SHOWN]),
            "decisions_error": None,
            "chart": chart(decisions, thresholds),
        }

    @staticmethod
    def _status() -> dict[str, Any]:
        try:
            return {"status": receiver.get("/v1/status"), "status_error": None}
        except receiver.ReceiverUnavailable as err:
            return {"status": None, "status_error": str(err)}
