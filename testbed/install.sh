#!/bin/bash
# Install what the test bed and the tests need, idempotently (Debian, root):
#   - MariaDB and RabbitMQ from Debian's packages (their system services stay stopped: the bed
#     runs its own instances under its own folder), cloud-init and systemd for the packaging tests;
#   - three virtualenvs from PyPI, cached outside the checkout and keyed by the pinned
#     constraints, so a fresh clone finds them ready:
#       $AZFED_CACHE/venvs/openstack-<key>  keystone, placement, glance, neutron, nova, openstacksdk,
#                                           and azfed's own runtime deps (nova-compute and
#                                           nova-scheduler import azfed's driver and filter)
#       $AZFED_CACHE/venvs/gnocchi-<key>    gnocchi (its pins clash with nova's)
#       $AZFED_CACHE/venvs/horizon-<key>    Horizon (Django; its static files collected and
#                                           compressed here, once, not at each start)
#       $AZFED_CACHE/venvs/ceilometer-<key> the telemetry services of one OpenStack release:
#                                           ceilometer (ceilometer-upgrade provisions the bed's
#                                           Gnocchi; its Gnocchi publisher, for the parity tests)
#                                           and aodh (api, evaluator, notifier); their pins clash
#                                           with both others
# Prints the venv paths as shell assignments (NAME=path), one per line, on stdout.
set -euo pipefail
shopt -s inherit_errexit   # make_venv runs in $(...): its failures must stop us
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${AZFED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/azfed}
PY=${AZFED_PYTHON:-python3.11}
log() { echo "[testbed-install $(date +%T)] $*" >&2; }

# oslotest, testtools, wsgi-intercept: what the nova wheel's own tests import (nova/test.py and
# its fixtures), for Nova's virt-driver conformance suite run against FederationDriver
# (tests/nova/test_virt_driver_conformance.py); their pins are OpenStack's upper constraints
OS_PKGS="nova openstack-placement keystone glance neutron python-openstackclient osc-placement
 openstacksdk gunicorn pymysql aioboto3 aiohttp structlog jsonschema prometheus-client click
 pydantic tenacity oslotest testtools wsgi-intercept"
GN_PKGS="gnocchi[mysql,file] gnocchiclient gunicorn"
CM_PKGS="ceilometer aodh pymysql gunicorn"
# whitenoise: gunicorn serves no static files (Apache does, in front of Horizon in a cloud)
HZ_PKGS="horizon gunicorn whitenoise"

# cloud-init: its schema validator checks our rendered user data; systemd: systemd-analyze;
# and shellcheck to lint the boot script the user data carries; haproxy: the balancer in front of two
# receivers in the HA tests; chromium and its driver: the dashboard's browser tests
APT_PKGS="rabbitmq-server mariadb-server mariadb-client curl cloud-init systemd shellcheck haproxy
 chromium chromium-driver"
need_apt=""
for b in mariadbd mariadb rabbitmq-server curl cloud-init systemd-analyze shellcheck haproxy \
    chromium chromedriver; do
  command -v $b >/dev/null 2>&1 || [ -x /usr/sbin/$b ] || [ -x /usr/lib/rabbitmq/bin/$b ] || need_apt=1
done
if [ -n "$need_apt" ]; then
  log "apt: installing $APT_PKGS"
  t0=$(date +%s)
  # policy-rc.d 101: do not start the system instances (their ports would clash with the bed's)
  # (an existing policy-rc.d is the machine's own: leave it as it is)
  made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
    made_policy=1; trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -q >/dev/null
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $APT_PKGS >/dev/null
  if [ -n "$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
  log "apt: done in $(( $(date +%s) - t0 ))s"
fi

key() { cat "$@" | sha256sum | cut -c1-12; }

# make_venv NAME CONSTRAINTS PACKAGES... : echo the venv path; build it only if its key is new
make_venv() {
  local name=$1 cons=$2; shift 2
  local k; k=$(printf '%s\n' "$*" | cat - "$cons" | sha256sum | cut -c1-12)
  local dir=$CACHE/venvs/$name-$k
  if [ ! -f "$dir/.azfed-complete" ]; then
    log "pip: building $dir"
    local t0; t0=$(date +%s)
    rm -rf "$dir"; mkdir -p "$CACHE/venvs"
    $PY -m venv "$dir"
    # the machine-wide find-links/index settings print a warning per package: keep the log readable
    if ! "$dir/bin/pip" install -q --disable-pip-version-check -c "$cons" "$@" \
        2> >(grep -v "is ignored: it is neither" >&2) >&2; then
      log "pip failed for $name: see the messages above"; exit 1
    fi
    touch "$dir/.azfed-complete"   # written last: an interrupted build is rebuilt next time
    log "pip: $name ready in $(( $(date +%s) - t0 ))s"
  fi
  echo "$dir"
}

# shellcheck disable=SC2086
OS_VENV=$(make_venv openstack "$HERE/constraints-openstack.txt" $OS_PKGS)
# shellcheck disable=SC2086
GN_VENV=$(make_venv gnocchi "$HERE/constraints-gnocchi.txt" $GN_PKGS)
# shellcheck disable=SC2086
CM_VENV=$(make_venv ceilometer "$HERE/constraints-ceilometer.txt" $CM_PKGS)
# shellcheck disable=SC2086
HZ_VENV=$(make_venv horizon "$HERE/constraints-horizon.txt" $HZ_PKGS)
# Horizon reads its settings from its own package (openstack_dashboard/local/): the bed's, and
# the static files collected and compressed once per settings (COMPRESS_OFFLINE)
for dash in "$HZ_VENV"/lib/python3*/site-packages/openstack_dashboard; do
  mkdir -p "$dash/local/local_settings.d"
  cp "$HERE/etc/horizon_local_settings.py" "$dash/local/local_settings.py"
  cp "$HERE/etc/horizon_static.py" "$dash/local/local_settings.d/_10_azfed_static.py"
  # azfed's Horizon plugin, enabled as Horizon plugins are; Horizon imports it from this
  # checkout (the bed's PYTHONPATH), as nova-compute does azfed's driver
  cp "$HERE"/../agent/azfed/dashboard/enabled/_*.py "$dash/local/enabled/"
  stamp="$HZ_VENV/.azfed-static-$(key "$HERE"/etc/horizon_*.py "$HERE"/../agent/azfed/dashboard/enabled/_*.py)"
  if [ ! -f "$stamp" ]; then
    log "horizon: collecting and compressing its static files"
    t0=$(date +%s)
    for cmd in "collectstatic --noinput" "compress --force"; do
      # shellcheck disable=SC2086
      if ! DJANGO_SETTINGS_MODULE=openstack_dashboard.settings PYTHONPATH="$HERE/../agent" \
          "$HZ_VENV/bin/django-admin" $cmd -v0 >"$HZ_VENV/static.log" 2>&1; then
        cat "$HZ_VENV/static.log" >&2; log "horizon: django-admin $cmd failed"; exit 1
      fi
    done
    rm -f "$HZ_VENV"/.azfed-static-*; touch "$stamp"
    log "horizon: static files ready in $(( $(date +%s) - t0 ))s"
  fi
done
# Nova imports compute drivers only from its own nova.virt package: put azfed's one-line shim
# there, as an operator's package of azfed for Nova hosts does (docs/driver.md). It imports
# azfed.nova.driver, which the bed's Nova services find in this checkout (PYTHONPATH).
for virt in "$OS_VENV"/lib/python3*/site-packages/nova/virt; do
  cmp -s "$HERE/../agent/azfed/nova/nova_virt_azfed.py" "$virt/azfed.py" \
    || cp "$HERE/../agent/azfed/nova/nova_virt_azfed.py" "$virt/azfed.py"
done
echo "OS_VENV=$OS_VENV"
echo "GN_VENV=$GN_VENV"
echo "CM_VENV=$CM_VENV"
echo "HZ_VENV=$HZ_VENV"
