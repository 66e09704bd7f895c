"""Contract version 2 (Ceilometer's meters, per resource) is what agents send; version 1 comes
from agents in the public cloud not yet upgraded, which the receiver still accepts, converting
what it honestly can and counting the rest (issue 12, item 5)."""

from __future__ import annotations

from azfed.receiver.app import STORE
from structlog.testing import capture_logs

from tests.receiver.conftest import AGENT, Receiver, example


async def test_a_v2_report_reaches_the_sinks_as_sent(receiver: Receiver) -> None:
    report = example("report-full")
    status, answer, _ = await receiver.post(report)
    assert (status, answer["samples"]) == (200, len(report["samples"]))
    [batch] = receiver.sink.batches
    assert batch.samples == report["samples"]
    assert batch.dropped == []


async def test_a_v1_report_is_accepted_with_what_converts_and_the_rest_counted(
    receiver: Receiver,
) -> None:
    """An old agent's report is accepted (its instances' state matters as much as ever): its
    memory.usage reaches the sinks as a version 2 sample in MiB; cpu_util and the old network
    and disk totals are dropped, each instance's count kept with the reason (the metric and
    `azfed status` show them), and the answer counts only what was written."""
    report = example("report-v1-full")
    with capture_logs() as logs:
        status, answer, _ = await receiver.post(report)
    assert status == 200, answer
    assert answer["samples"] == 1
    [batch] = receiver.sink.batches
    assert [(s["meter"], s["unit"], s["resource_type"]) for s in batch.samples] == [
        ("memory.usage", "MiB", "instance")
    ]
    text = await (await receiver.client.get("/metrics")).text()
    dropped = 'azfed_receiver_samples_dropped_total{reason="v1_not_convertible",sink="contract"}'
    assert f"{dropped} 8.0" in text
    rows = await receiver.app[STORE].dropped()
    assert [(r["sink"], r["reason"], r["samples"]) for r in rows] == [
        ("contract", "v1_not_convertible", 8)
    ]
    assert "upgrade the agent" in rows[0]["detail"]
    [converted] = [e for e in logs if e["event"] == "report.v1_converted"]
    assert (converted["agent_id"], converted["dropped"]) == (AGENT, 8)
    assert "cpu_util" in converted["meters"]
    assert await receiver.written() == (1, 1, 2)


async def test_a_v1_report_that_breaks_version_1s_rules_is_a_400_naming_the_key(
    receiver: Receiver,
) -> None:
    """A version 1 report is checked against version 1 (its meters, units, resource_id),
    and refused as before when it breaks them."""
    report = example("report-v1-full")
    report["samples"][7]["unit"] = "MiB"  # version 1's memory.usage was labelled MB
    status, answer, _ = await receiver.post(report)
    assert (status, answer["error"]) == (400, "bad_schema")
    assert [p["key"] for p in answer["problems"]] == ["samples[7]"]
    assert await receiver.written() == (0, 0, 0)


async def test_a_version_this_receiver_does_not_read_is_refused_saying_which_it_reads(
    receiver: Receiver,
) -> None:
    report = example("report-full")
    report["version"] = 3
    status, answer, _ = await receiver.post(report)
    assert (status, answer["error"]) == (400, "bad_schema")
    [problem] = answer["problems"]
    assert problem["key"] == "version"
    assert "versions 1 and 2" in problem["reason"]
    assert await receiver.written() == (0, 0, 0)
