# gunicorn entry: gnocchi parses sys.argv through oslo.config; give it only its config file
import os
import sys

sys.argv = [sys.argv[0], "--config-file", os.environ["AZFED_GNOCCHI_CONF"]]
from gnocchi.rest.wsgi import application  # noqa: E402,F401
