# azfed's panel group in the Admin dashboard (copy into openstack_dashboard/local/enabled/)
from django.utils.translation import gettext_lazy as _

PANEL_GROUP = "azfed"
PANEL_GROUP_NAME = _("Federation")
PANEL_GROUP_DASHBOARD = "admin"
