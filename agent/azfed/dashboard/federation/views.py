"""The Federation panel: the receiver's explain of the next boot of a chosen flavor (GET
/v1/placement), which is what `azfed policy explain` prints for the same moment."""

from __future__ import annotations

from typing import Any

from azfed.dashboard import receiver
from django.utils.translation import gettext_lazy as _
from horizon import views
from openstack_dashboard import api


def _flavors(request: Any) -> list[str]:
    try:
        return sorted(f.name for f in api.nova.flavor_list(request))
    except Exception:  # Nova's failure: the panel still shows what the receiver says
        return []


def _rows(doc: dict[str, Any]) -> dict[str, Any]:
    """The explain document as the template shows it."""
    local = doc["local"]
    return {
        "thresholds": [{"metric": m, **t} for m, t in sorted(local["thresholds"].items())],
        "public": [
            {**az, "caps": [{"name": n, **c} for n, c in az["caps"].items()]}
            for az in doc["public"]
        ],
        "skipped": doc["next_boot"].get("skipped", []),
    }


class IndexView(views.HorizonTemplateView):
    template_name = "azfed/federation/index.html"
    page_title = _("Federation")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context: dict[str, Any] = super().get_context_data(**kwargs)
        flavors = _flavors(self.request)
        flavor = self.request.GET.get("flavor") or (flavors[0] if flavors else "")
        context.update(flavors=flavors, flavor=flavor, doc=None, error=None)
        try:
            doc = receiver.get("/v1/placement", flavor=flavor) if flavor else None
        except receiver.ReceiverUnavailable as err:
            context["error"] = str(err)
            return context
        if doc is None:
            context["error"] = f"the receiver knows no flavor {flavor!r}"
            return context
        context.update(doc=doc, **_rows(doc))
        return context
