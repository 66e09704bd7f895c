# gunicorn entry: Horizon's own WSGI module (its settings come from openstack_dashboard/local/,
# which testbed/install.sh fills)
from openstack_dashboard.wsgi import application  # noqa: F401
