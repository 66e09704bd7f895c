# azfed's Federation panel and its Public cloud tab on instance pages (copy into
# openstack_dashboard/local/enabled/; set AZFED_RECEIVER_URL in local_settings.py)
PANEL = "federation"
PANEL_DASHBOARD = "admin"
PANEL_GROUP = "azfed"
ADD_PANEL = "azfed.dashboard.federation.panel.Federation"
ADD_INSTALLED_APPS = ["azfed.dashboard"]
EXTRA_TABS = {
    "openstack_dashboard.dashboards.project.instances.tabs.InstanceDetailTabs": (
        "azfed.dashboard.tabs.PublicCloudTab",
    ),
    "openstack_dashboard.dashboards.admin.instances.tabs.AdminInstanceDetailTabs": (
        "azfed.dashboard.tabs.PublicCloudTab",
    ),
}
