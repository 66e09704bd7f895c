"""azfed's Horizon plugin: an admin Federation panel (what the policy sees and would decide, from
the receiver's GET /v1/placement) and a Public cloud tab on an instance's page (what the agent
last reported, from GET /v1/instances/{id}).

Installed the way Horizon plugins are: azfed importable in Horizon's environment, and the files
in `enabled/` copied into `openstack_dashboard/local/enabled/`. Settings (local_settings.py):
AZFED_RECEIVER_URL (required) and AZFED_RECEIVER_TIMEOUT_S (default 3). It imports nothing of
azfed but this package and `azfed.errors`, so Horizon's environment needs none of azfed's
dependencies.
"""
