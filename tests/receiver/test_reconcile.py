"""find_orphans, the pure heart of reconciliation: both kinds of orphan, and what is not one."""

from __future__ import annotations

from typing import Any

from azfed.receiver.nova import ServerFacts
from azfed.receiver.reconcile import find_orphans

NOW = 1_700_000_000.0
OLD = "2023-11-01T00:00:00Z"  # weeks before NOW: past any grace period
GRACE = 600.0


def _reported(uuid: str, state: str = "running", age: float = 60) -> dict[str, Any]:
    return {
        "instance_uuid": uuid,
        "provider": "ec2",
        "remote_id": f"i-{uuid}",
        "state": state,
        "received_at": NOW - age,
    }


def _server(uuid: str, status: str = "ACTIVE", created: str = OLD) -> ServerFacts:
    return ServerFacts(
        uuid=uuid,
        name=uuid,
        flavor_id="1",
        flavor_name="m1.tiny",
        host="h",
        image_ref="",
        az="aws-az",
        project_id="p",
        user_id="u",
        status=status,
        created_at=created,
        metadata={},
    )


def _kinds(reported: list[dict[str, Any]], servers: list[ServerFacts]) -> set[tuple[str, str]]:
    return {(o.kind, o.instance_uuid) for o in find_orphans(reported, servers, NOW, GRACE)}


def test_a_reported_instance_nova_does_not_know_is_a_public_orphan() -> None:
    """A live public instance tagged with a UUID Nova lacks costs money: it is reported."""
    assert _kinds([_reported("a")], []) == {("public_without_nova", "a")}


def test_a_terminated_or_long_silent_public_instance_is_not_an_orphan() -> None:
    """Terminated instances cost nothing; one not reported within the grace period is stale
    news, not evidence."""
    assert _kinds([_reported("a", "terminated"), _reported("b", age=GRACE + 1)], []) == set()


def test_an_old_nova_instance_in_a_public_az_that_no_agent_reports_is_an_orphan() -> None:
    """Nova thinks it runs in the public AZ, no agent has seen it: reported."""
    assert _kinds([], [_server("n")]) == {("nova_without_public", "n")}


def test_young_failed_or_reported_nova_instances_are_not_orphans() -> None:
    """A boot in progress, an ERROR instance (failed burst) and a reported one are fine."""
    young = "2023-11-14T22:10:00Z"  # NOW is 22:13:20Z: younger than the grace period
    servers = [_server("b", created=young), _server("e", "ERROR"), _server("r")]
    assert _kinds([_reported("r")], servers) == set()


def test_a_live_nova_instance_whose_public_instance_was_terminated_is_reported() -> None:
    """Terminated behind Nova's back (the public cloud's console): Nova's instance is a husk."""
    found = find_orphans([_reported("t", "terminated")], [_server("t")], NOW, GRACE)
    assert [(o.kind, o.instance_uuid, o.remote_id) for o in found] == [("public_gone", "t", "i-t")]
    assert "terminated" in found[0].reason


def test_a_stopped_nova_instance_whose_public_instance_is_gone_is_still_reported() -> None:
    """SHUTOFF in Nova does not make a terminated public instance come back."""
    assert _kinds([_reported("t", "shutting-down")], [_server("t", "SHUTOFF")]) == {
        ("public_gone", "t")
    }


def test_a_deleted_nova_instance_with_a_terminated_public_instance_is_consistent() -> None:
    assert _kinds([_reported("d", "terminated")], [_server("d", "DELETED")]) == set()
