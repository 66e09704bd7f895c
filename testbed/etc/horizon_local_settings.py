# Horizon's local_settings.py for the azfed test bed (testbed/install.sh copies it into the
# Horizon virtualenv's openstack_dashboard/local/). The bed's ports are fixed (PORTS in
# testbed/openstack.py): Keystone on 127.0.0.1:5000, Horizon itself on 127.0.0.1:8080.
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
WEBROOT = "/"
OPENSTACK_HOST = "127.0.0.1"
OPENSTACK_KEYSTONE_URL = "http://127.0.0.1:5000/v3"
OPENSTACK_KEYSTONE_DEFAULT_DOMAIN = "Default"
# sessions in signed cookies and a per-process cache: no memcached to run beside it
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# CSS and JS compressed once at install (`django-admin compress`), not at each start
COMPRESS_OFFLINE = True
# a test bed's key, on 127.0.0.1 only: not a secret
SECRET_KEY = "azfed-testbed-not-a-secret"
TIME_ZONE = "UTC"
# the bed's Neutron is its API alone (no agents): Horizon's network pages only read it
OPENSTACK_NEUTRON_NETWORK = {"enable_router": False, "enable_quotas": False}
# azfed's Horizon plugin (agent/azfed/dashboard; install.sh copies its enabled/ files): the
# receiver the demo and the e2e tests run (testbed/demo.py RECEIVER_PORT)
AZFED_RECEIVER_URL = "http://127.0.0.1:8790"
AZFED_RECEIVER_TIMEOUT_S = 3
