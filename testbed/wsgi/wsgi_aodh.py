# gunicorn entry: aodh parses its arguments through oslo.config; give it only its config file
import os

from aodh.api import app

application = app.build_wsgi_app(argv=["--config-file", os.environ["AZFED_AODH_CONF"]])
