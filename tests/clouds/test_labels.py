"""The labels every backend puts on what it creates (EC2 tags, OpenStack metadata)."""

from __future__ import annotations

from azfed.clouds import NAME_TAG, PROJECT_TAG, UUID_TAG, SpawnRequest

UUID = "5e0c2a8e-8f43-4c1e-9a57-0d7b6f3e2c11"


def _request(**kw: object) -> SpawnRequest:
    base: dict[str, object] = {
        "instance_uuid": UUID,
        "project_id": "p1",
        "name": "web",
        "instance_type": "t3.micro",
        "image": "ami-1",
    }
    return SpawnRequest(**{**base, **kw})  # type: ignore[arg-type]


def test_a_request_labels_its_nova_uuid_project_and_nova_name() -> None:
    labels = _request(instance_name="instance-0000002a").labels()
    assert labels == {UUID_TAG: UUID, PROJECT_TAG: "p1", NAME_TAG: "instance-0000002a"}


def test_a_missing_project_or_nova_name_is_left_out_never_sent_as_none() -> None:
    assert _request(project_id=None).labels() == {UUID_TAG: UUID}


def test_extra_tags_are_added_to_the_labels() -> None:
    labels = _request(extra_tags={"team": "web"}).labels()
    assert labels["team"] == "web"
    assert labels[UUID_TAG] == UUID
