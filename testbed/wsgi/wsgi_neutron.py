# gunicorn entry: oslo.config parses sys.argv, so hide gunicorn's own arguments from it
import sys

sys.argv = sys.argv[:1]
from neutron.wsgi.api import application  # noqa: E402,F401

# The Port.port_forwardings backref only exists once the mappers are configured; the first
# GET /v2.0/ports otherwise fails with AttributeError. Configure them eagerly.
from sqlalchemy import orm  # noqa: E402

orm.configure_mappers()
