"""POST /v1/reports end to end through the app with an in-memory sink: acceptance, dedupe,
concurrency limits, backend failures, and the read endpoints."""

from __future__ import annotations

import asyncio
from pathlib import Path

from azfed.receiver import openapi
from azfed.receiver.app import GATE

from tests.receiver.conftest import AGENT, NOW, Receiver, ReceiverFactory, example
from tests.waiting import until


async def test_a_signed_report_is_accepted_written_once_and_cached(receiver: Receiver) -> None:
    """A valid report gets 200 with counts, reaches the sink, and its instances' state is
    served by GET /v1/instances/{uuid}."""
    report = example()
    status, answer, _ = await receiver.post(report)
    assert status == 200
    n = len(report["samples"])
    assert answer == {"accepted": True, "key": f"{AGENT}:42", "instances": 2, "samples": n}
    assert await receiver.written() == (1, 1, 2)
    uuid = report["instances"][0]["instance_uuid"]
    resp = await receiver.client.get(f"/v1/instances/{uuid}")
    state = await resp.json()
    assert resp.status == 200
    assert state["remote_id"] == "i-0abc1234def567890"
    assert state["state"] == "running"
    assert state["ips"]["public"] == ["203.0.113.10"]


async def test_a_gzip_report_is_accepted_like_a_plain_one(receiver: Receiver) -> None:
    """Content-Encoding: gzip is decoded after the signature is checked on the bytes as sent."""
    status, answer, _ = await receiver.post(example(), gzip=True)
    assert (status, answer["samples"]) == (200, len(example()["samples"]))


async def test_a_repeat_of_a_finished_key_gets_the_same_answer_and_writes_nothing(
    receiver: Receiver,
) -> None:
    """The same key and body, even gzipped and signed later, is answered from the store."""
    first = await receiver.post(example())
    again = await receiver.post(example(), gzip=True, ts=NOW + 10)
    assert first[:2] == again[:2]
    assert await receiver.written() == (1, 1, 2)


async def test_the_same_key_with_another_body_is_refused(receiver: Receiver) -> None:
    """A second body under a finished key is a permanent 422 key_conflict and changes nothing."""
    await receiver.post(example())
    other = example()
    other["samples"][0]["volume"] = 99.0
    status, answer, _ = await receiver.post(other)
    assert (status, answer["error"]) == (422, "key_conflict")
    assert await receiver.written() == (1, 1, 2)
    assert (
        receiver.sink.batches[0].report["samples"][0]["volume"] == example()["samples"][0]["volume"]
    )


async def test_the_same_key_in_flight_gets_409_with_retry_after(receiver: Receiver) -> None:
    """While a report is being written, its retry is told to come back later."""
    receiver.sink.gate = asyncio.Event()
    first = asyncio.ensure_future(receiver.post(example()))
    await until(
        lambda: len(receiver.sink.batches) == 0 and receiver.app[GATE].count == 1,
        "the first report held in the sink's write",
        interval=0.005,
    )
    status, answer, headers = await receiver.post(example())
    assert (status, answer["error"]) == (409, "in_flight")
    assert "Retry-After" in headers
    receiver.sink.gate.set()
    assert (await first)[0] == 200


async def test_too_many_reports_in_flight_get_429_with_retry_after(
    make_receiver: ReceiverFactory,
) -> None:
    """Past [receiver] max_inflight the receiver sheds load at once instead of queueing."""
    rcv = await make_receiver(max_inflight=1)
    rcv.sink.gate = asyncio.Event()
    first = asyncio.ensure_future(rcv.post(example()))
    await until(lambda: rcv.app[GATE].count == 1, "one report in flight", interval=0.005)
    other = example()
    other["seq"] = 43
    status, answer, headers = await rcv.post(other)
    assert (status, answer["error"], headers.get("Retry-After")) == (429, "busy", "2")
    rcv.sink.gate.set()
    assert (await first)[0] == 200
    assert (await rcv.post(other))[0] == 200


async def test_a_backend_failure_is_503_and_the_retry_succeeds(receiver: Receiver) -> None:
    """A failing sink gives 503 + Retry-After, releases the key, and the retry is written."""
    receiver.sink.fail_next = 1
    status, answer, headers = await receiver.post(example())
    assert (status, answer["error"]) == (503, "backend_failed")
    assert "Retry-After" in headers
    assert await receiver.written() == (0, 0, 0)
    assert (await receiver.post(example()))[0] == 200
    assert await receiver.written() == (1, 1, 2)


async def test_an_older_observation_does_not_overwrite_a_newer_state(receiver: Receiver) -> None:
    """Reports replayed out of order leave the newest observation in the state cache."""
    new, old = example(), example()
    new["instances"][0].update(state="stopped", observed_at="2025-01-15T11:00:00Z")
    old["seq"] = 41
    await receiver.post(new)
    await receiver.post(old)
    uuid = new["instances"][0]["instance_uuid"]
    state = await (await receiver.client.get(f"/v1/instances/{uuid}")).json()
    assert state["state"] == "stopped"


async def test_unknown_and_malformed_instance_ids_are_404_and_400(receiver: Receiver) -> None:
    """GET /v1/instances answers 404 for a UUID no agent reported, 400 for a non-UUID."""
    unknown = await receiver.client.get("/v1/instances/11111111-2222-3333-4444-555555555555")
    bad = await receiver.client.get("/v1/instances/not-a-uuid")
    assert (unknown.status, bad.status) == (404, 400)


async def test_health_readiness_and_metrics_endpoints_answer(receiver: Receiver) -> None:
    """/healthz is alive, /readyz checks the store and sinks, /metrics counts what happened."""
    await receiver.post(example())
    await receiver.post(example(), secret=b"wrong")
    assert (await receiver.client.get("/healthz")).status == 200
    ready = await receiver.client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["checks"] == {"store": "ok", "memory": "ok"}
    text = await (await receiver.client.get("/metrics")).text()
    assert 'azfed_receiver_reports_total{outcome="accepted"} 1.0' in text
    assert f"azfed_receiver_samples_total {len(example()['samples'])}.0" in text
    assert 'azfed_receiver_rejects_total{reason="bad_signature"} 1.0' in text
    assert 'azfed_receiver_write_seconds_count{sink="memory"} 1.0' in text


async def test_placement_without_a_policy_is_503_policy_not_configured(receiver: Receiver) -> None:
    """With no [receiver] policy_file, GET /v1/placement says so instead of guessing."""
    resp = await receiver.client.get("/v1/placement")
    assert (resp.status, (await resp.json())["error"]) == (503, "policy_not_configured")


async def test_the_served_openapi_document_is_the_shipped_one_built_from_the_contract(
    receiver: Receiver,
) -> None:
    """/openapi.json serves the shipped file, and that file is what build() makes now
    (regenerate with `python -m azfed.receiver.openapi` after a contract change)."""
    served = await (await receiver.client.get("/openapi.json")).json()
    assert served == openapi.document() == openapi.build()


async def test_secrets_named_by_systemd_credentials_are_found_with_the_prefix(
    make_receiver: ReceiverFactory, tmp_path: Path
) -> None:
    """With secrets_prefix = "agents_" the secret of agent X is read from agents_X."""
    rcv = await make_receiver(secrets_prefix="agents_")
    secret = b"prefixed-secret-0123456789abcdefghij"
    (tmp_path / "secrets" / "agents_aws-vpc-1").write_bytes(secret)
    assert (await rcv.post(example(), secret=secret))[0] == 200
