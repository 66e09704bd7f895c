"""The Public cloud tab on an instance's page (Project and Admin > Instances > the instance):
what the agent in the public cloud last reported of it, from the receiver."""

from __future__ import annotations

from typing import Any

from azfed.dashboard import receiver
from django.utils.translation import gettext_lazy as _
from horizon import tabs


class PublicCloudTab(tabs.Tab):
    name = _("Public cloud")
    slug = "azfed_public_cloud"
    template_name = "azfed/_public_cloud.html"

    def get_context_data(self, request: Any) -> dict[str, Any]:
        instance = self.tab_group.kwargs["instance"]
        try:
            report = receiver.get(f"/v1/instances/{instance.id}")
        except receiver.ReceiverUnavailable as err:
            return {"report": None, "error": str(err), "instance": instance}
        context = {"report": report, "error": None, "instance": instance, "usage": []}
        if report is not None:
            context.update(_usage(instance.id))
        return context


def _usage(instance_id: str) -> dict[str, Any]:
    """The newest value of each meter, as Gnocchi holds it (the receiver reads it back)."""
    try:
        found = receiver.get(f"/v1/instances/{instance_id}/usage")
    except receiver.ReceiverUnavailable as err:
        return {"usage_error": str(err)}
    return {"usage": (found or {}).get("usage", []), "usage_error": None}
