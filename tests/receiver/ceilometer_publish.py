"""Publish a local VM's samples to Gnocchi through Ceilometer's own code: run in Ceilometer's
virtualenv (testbed/install.sh's CM_VENV), so it imports only Ceilometer and the standard
library.

    python ceilometer_publish.py --config-file ceilometer.conf < vm.json

vm.json: {"meters": [...], "instance": {...}, "stats": {"instance": {...}, "vnics": [...],
"disks": [...]}, "notifications": [...], "polled_at": "<ISO 8601, optional: now>"}.
What each Ceilometer agent does, with its own code:
- the polling agent: the instance as its compute discovery builds it from libvirt's domain
  metadata (compute/discovery.py, NovaLikeServer); each meter's pollster loaded by name from
  the `ceilometer.poll.compute` entry points; the samples stamped with the polling time and
  made into the metering messages it puts on the bus (polling/manager.py);
- the notification agent: first Nova's notifications of the VM (its boot, as nova-compute
  sends them), then the polling agent's messages, each to the endpoints of its sample and event
  pipelines whose filter takes it (as oslo.messaging dispatches them): meters.yaml's meters,
  event_definitions.yaml's events, the `telemetry.polling` samples; the pipelines
  (ceilometer.conf's pipeline.yaml and event_pipeline.yaml) publish them with `gnocchi://`
  (publisher/gnocchi.py's GnocchiPublisher).
Not real: the bus between them (the messages are handed over in-process), and so Nova's
notifications are given, not sent by a Nova; and the hypervisor (no libvirt here: the inspector
answers with the stats given, in the types Ceilometer's libvirt inspector returns).

The publisher logs Gnocchi's refusals and carries on: any ERROR Ceilometer logs fails this
script (exit 1) so the test sees it. Prints one JSON object on its last line: the samples
polled (name, unit, type, resource id) and the errors logged.
"""

import json
import logging
import sys

from ceilometer import service
from ceilometer.compute import discovery, pollsters
from ceilometer.compute.virt import inspector as virt_inspector
from ceilometer.publisher import utils as publisher_utils
from oslo_utils import timeutils
from stevedore import named


class Hypervisor(virt_inspector.Inspector):
    """What libvirt would report of the domain, as LibvirtInspector returns it."""

    def __init__(self, conf, stats):
        super().__init__(conf)
        self.stats = stats

    def inspect_instance(self, instance, duration=None):
        return virt_inspector.InstanceStats(**self.stats["instance"])

    def inspect_vnics(self, instance, duration):
        for vnic in self.stats["vnics"]:
            yield virt_inspector.InterfaceStats(**vnic)

    def inspect_disks(self, instance, duration):
        for disk in self.stats["disks"]:
            yield virt_inspector.DiskStats(**disk)


class Errors(logging.Handler):
    """Ceilometer's own ERROR lines (not, e.g., stevedore's about oslo.cache's memcache
    backend, which it lists whether used or not)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records = []

    def emit(self, record):
        if record.name.split(".")[0] == "ceilometer":
            self.records.append(self.format(record))


def poll(conf, meters, instance, polled_at=None):
    """The polling agent: each meter's samples from its pollster, as metering messages, stamped
    with the polling time (`polled_at` if given: a test replays polls at chosen times)."""
    manager = named.NamedExtensionManager(
        namespace="ceilometer.poll.compute", names=meters, invoke_on_load=True,
        invoke_args=(conf,),
    )  # fmt: skip
    found = {ext.name: ext.obj for ext in manager}
    missing = sorted(set(meters) - set(found))
    if missing:
        raise SystemExit(f"no Ceilometer pollster for {missing}")
    cache = {}
    messages = []
    for name in meters:
        polling_timestamp = polled_at or timeutils.utcnow().isoformat()
        for s in found[name].get_samples(None, cache, [instance]):
            s.set_timestamp(polling_timestamp)
            messages.append(
                publisher_utils.meter_message_from_counter(s, conf.publisher.telemetry_secret)
            )
    return messages


def notification_agent(conf):
    """The notification agent's endpoints, in its order: each pipeline manager's that
    [notification] pipelines names (meter, event), loaded as notification.py loads them."""
    managers = named.NamedExtensionManager(
        namespace="ceilometer.notification.pipeline", names=conf.notification.pipelines,
        invoke_on_load=True, invoke_args=(conf,), name_order=True,
    )  # fmt: skip
    return [e for ext in managers for e in ext.obj.get_main_endpoints()]


def deliver(endpoints, priority, message):
    """One notification to each endpoint whose filter takes it (oslo.messaging's
    NotificationDispatcher); an endpoint's failure is the agent's."""
    message = {"ctxt": {}, "metadata": {}, **message}
    for endpoint in endpoints:
        rule = getattr(endpoint, "filter_rule", None)
        taken = rule is None or rule.match(
            message["ctxt"], message["publisher_id"], message["event_type"],
            message["metadata"], message["payload"],
        )  # fmt: skip
        if (
            taken
            and hasattr(endpoint, priority)
            and (getattr(endpoint, priority)([message]) == "requeue")
        ):
            raise SystemExit(f"{type(endpoint).__name__} requeued {message['event_type']}")


def main():
    conf = service.prepare_service(sys.argv)
    errors = Errors()
    logging.getLogger().addHandler(errors)
    vm = json.load(sys.stdin)
    pollsters.GenericComputePollster._inspector = Hypervisor(conf, vm["stats"])
    endpoints = notification_agent(conf)
    for note in vm["notifications"]:
        deliver(endpoints, note.pop("priority", "info"), note)
    instance = discovery.NovaLikeServer(**vm["instance"])
    messages = poll(conf, vm["meters"], instance, vm.get("polled_at"))
    deliver(endpoints, "sample", {
        "publisher_id": "ceilometer.polling", "event_type": "telemetry.polling",
        "payload": {"samples": messages},
    })  # fmt: skip
    published = [
        {"name": m["counter_name"], "unit": m["counter_unit"], "type": m["counter_type"],
         "resource_id": m["resource_id"]}
        for m in messages
    ]  # fmt: skip
    # the last line of stdout (a library prints on stdout)
    print("\n" + json.dumps({"samples": published, "errors": errors.records}))
    return 1 if errors.records else 0


if __name__ == "__main__":
    sys.exit(main())
