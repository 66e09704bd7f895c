"""A snapshot of a burst instance (an AMI behind a placeholder Glance image) boots only in the
public AZ: its image requires BURST_TRAIT, which only the proxy hosts carry in Placement, and
the filter takes such a boot as preferring the public AZ, whatever the local load, so it does
not decide "local" for a boot Placement gave no local host for."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from azfed.policy.decide import BURST_TRAIT, HINT
from azfed.policy.engine import PolicyEngine, request_from_spec

from testbed.policies import Host, policy_doc
from tests.policy.test_who_may_burst import Spec


@dataclass
class Props:
    """nova.objects.ImageMetaProps as the filter reads it: `trait:X=required` properties
    become `traits_required`."""

    traits_required: list[str] = field(default_factory=list)


class UnsetProps:
    """ImageMetaProps whose traits_required Nova left unset: reading it raises, as Nova's
    objects do for an unset field."""

    @property
    def traits_required(self) -> list[str]:
        raise NotImplementedError("Cannot load 'traits_required' in the base class")


@dataclass
class Image:
    properties: Props | UnsetProps


@dataclass
class ImageSpec(Spec):
    image: Image | None = None


def _spec(props: Props | UnsetProps | None, **kw: object) -> ImageSpec:
    return ImageSpec(image=None if props is None else Image(props), **kw)  # type: ignore[arg-type]


def test_an_image_requiring_the_burst_trait_prefers_the_public_az() -> None:
    assert request_from_spec(_spec(Props([BURST_TRAIT]))).burst_hint == "prefer"


def test_other_images_and_none_keep_the_default_hint() -> None:
    for props in (None, Props([]), Props(["CUSTOM_GPU"]), UnsetProps()):
        assert request_from_spec(_spec(props)).burst_hint == "allowed"


def test_the_users_own_hint_is_kept_even_for_a_snapshot_image() -> None:
    """`never` on a burst-only image: the filter keeps local hosts, Placement offered none,
    and the boot fails with no valid host, as the user asked."""
    spec = _spec(Props([BURST_TRAIT]), scheduler_hints={HINT: ["never"]})
    assert request_from_spec(spec).burst_hint == "never"


def test_the_filter_keeps_the_public_hosts_for_a_snapshot_image_at_low_load(
    tmp_path: Path,
) -> None:
    """At a load where an ordinary boot stays local, the snapshot's boot goes public."""
    (tmp_path / "p.json").write_text(json.dumps(policy_doc()))
    engine = PolicyEngine(tmp_path / "p.json")
    hosts = [Host("l1", "local"), Host("p1", "aws")]

    ordinary, _ = engine.filter(hosts, request_from_spec(_spec(None)))
    snapshot, decision = engine.filter(hosts, request_from_spec(_spec(Props([BURST_TRAIT]))))

    assert ([h.host for h in ordinary], [h.host for h in snapshot]) == (["l1"], ["p1"])
    assert decision is not None
    assert decision.rule == "burst_hint_prefer"
