from __future__ import annotations

import horizon
from django.utils.translation import gettext_lazy as _


class Federation(horizon.Panel):
    name = _("Federation")
    slug = "federation"
    permissions = ("openstack.roles.admin",)
