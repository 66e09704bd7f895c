"""Renders azfed's Horizon plugin inside Horizon's own environment (its Django, its settings)
and prints what it rendered, as one JSON line, for tests/receiver/test_dashboard_plugin.py to judge.

Run by that test with the test bed's Horizon virtualenv's python (nothing of the bed is
started): `python -m tests.receiver.horizon_pages RECEIVER_URL INSTANCE_UUID`. For each
receiver it renders the Federation panel's body and the Public cloud tab of INSTANCE_UUID as
Horizon would (the panel's view and the tab's own context code, their own templates):
  up:     RECEIVER_URL, the test's receiver;
  closed: a port nothing listens on (the receiver is down);
  silent: a port that accepts and never answers (the receiver hangs), under a short
          AZFED_RECEIVER_TIMEOUT_S.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import types
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openstack_dashboard.settings")

import django

django.setup()

from azfed.dashboard import receiver  # noqa: E402
from azfed.dashboard.federation.views import IndexView  # noqa: E402
from azfed.dashboard.tabs import PublicCloudTab  # noqa: E402
from django.template.loader import render_to_string  # noqa: E402
from django.test import RequestFactory, override_settings  # noqa: E402

SILENT_TIMEOUT_S = 0.5


def panel() -> str:
    request = RequestFactory().get("/admin/federation/", {"flavor": "m1.small"})
    view = IndexView()
    view.setup(request)
    return render_to_string("azfed/federation/_federation.html", view.get_context_data())


def tab(instance_uuid: str) -> str:
    group = types.SimpleNamespace(kwargs={"instance": types.SimpleNamespace(id=instance_uuid)})
    found = PublicCloudTab(group)  # no request: Horizon's permission checks need a user
    return render_to_string(found.template_name, found.get_context_data(None))


def pages(url: str, instance_uuid: str, timeout_s: float = 3.0) -> dict[str, Any]:
    with override_settings(AZFED_RECEIVER_URL=url, AZFED_RECEIVER_TIMEOUT_S=timeout_s):
        try:
            receiver.get("/v1/status")
            client = "answered"
        except receiver.ReceiverUnavailable as err:
            client = str(err)
        return {"client": client, "panel": panel(), "tab": tab(instance_uuid)}


def main() -> None:
    url, instance_uuid = sys.argv[1], sys.argv[2]
    out = {"up": pages(url, instance_uuid)}
    with socket.socket() as closed:  # bound, not listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        out["closed"] = pages(f"http://127.0.0.1:{port}", instance_uuid)
    with socket.socket() as silent:  # listening, never accepted: requests time out
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        out["silent"] = pages(f"http://127.0.0.1:{port}", instance_uuid, SILENT_TIMEOUT_S)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
