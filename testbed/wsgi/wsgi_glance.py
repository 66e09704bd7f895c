# gunicorn entry: oslo.config parses sys.argv, so hide gunicorn's own arguments from it
import sys

sys.argv = sys.argv[:1]
from glance.wsgi.api import application  # noqa
