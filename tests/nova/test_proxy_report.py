"""The proxy host reads the agent's last report of an instance, and its usage, from the real
receiver (in a process of its own, as in production): what diagnostics are made of. Every way
it can be missing is an error that says which."""

from __future__ import annotations

import datetime as dt
import socket
import uuid
from collections.abc import Iterator

import pytest
from azfed.clouds import RemoteState
from azfed.clouds.ec2 import Ec2Backend, Ec2Settings
from azfed.nova.proxy import ProxyHost, ProxySettings, ReportUnavailable
from structlog.testing import capture_logs

from tests.nova.reported import USAGE, ReceiverProcess


def _proxy(receiver_url: str | None) -> ProxyHost:
    # the backend is never called here: reports come from the receiver only
    backend = Ec2Backend(Ec2Settings(region="us-east-1", endpoint_url="http://127.0.0.1:9"))
    return ProxyHost(ProxySettings("ec2", {}, receiver_url=receiver_url), backend)


@pytest.fixture
def proxy_for() -> Iterator[list[ProxyHost]]:
    made: list[ProxyHost] = []
    yield made
    for p in made:
        p.close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[ReceiverProcess]:
    r = ReceiverProcess()
    yield r
    r.stop()


def test_the_report_carries_the_state_and_every_meter_the_agent_sent(
    receiver: ReceiverProcess, proxy_for: list[ProxyHost]
) -> None:
    proxy = _proxy(receiver.url)
    proxy_for.append(proxy)
    instance_uuid = str(uuid.uuid4())
    receiver.report(instance_uuid, "i-0abc", state="stopped")

    report = proxy.report(instance_uuid)

    assert (report.state, report.remote_id) == (RemoteState.STOPPED, "i-0abc")
    assert dt.datetime.now(dt.timezone.utc) - report.observed_at < dt.timedelta(minutes=5)
    got = {(r.resource_type, r.device, r.meter): r.value for r in report.readings}
    assert got == {(t, d, m): float(v) for t, d, m, _, _, v in USAGE}
    assert report.devices("instance_network_interface") == ["eni-0a1b2c3d"]
    assert report.value("disk.device.write.requests", "xvda") == 7.0


def test_an_instance_no_agent_reported_is_an_error_naming_the_agent(
    receiver: ReceiverProcess, proxy_for: list[ProxyHost]
) -> None:
    proxy = _proxy(receiver.url)
    proxy_for.append(proxy)
    with pytest.raises(ReportUnavailable, match="no agent has reported instance"):
        proxy.report(str(uuid.uuid4()))


def test_a_receiver_that_does_not_answer_is_an_error_naming_it(
    proxy_for: list[ProxyHost],
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    proxy = _proxy(url)
    proxy_for.append(proxy)
    with pytest.raises(ReportUnavailable, match=f"the receiver at {url}.* does not answer"):
        proxy.report(str(uuid.uuid4()))


def test_no_receiver_url_is_an_error_naming_the_option(proxy_for: list[ProxyHost]) -> None:
    proxy = _proxy(None)
    proxy_for.append(proxy)
    with pytest.raises(ReportUnavailable, match=r"\[azfed\] receiver_url is not set"):
        proxy.report(str(uuid.uuid4()))


def test_without_a_usage_store_the_state_comes_alone_and_that_is_logged(
    proxy_for: list[ProxyHost],
) -> None:
    receiver = ReceiverProcess(usage=False)
    try:
        proxy = _proxy(receiver.url)
        proxy_for.append(proxy)
        instance_uuid = str(uuid.uuid4())
        receiver.report(instance_uuid, "i-0def")
        with capture_logs() as logs:
            report = proxy.report(instance_uuid)
    finally:
        receiver.stop()
    assert (report.state, report.readings) == (RemoteState.RUNNING, ())
    assert [(e["event"], e["status"]) for e in logs] == [("proxy.usage_unavailable", 503)]
