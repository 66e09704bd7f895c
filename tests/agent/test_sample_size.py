"""The batcher sizes each sample without encoding it: the size must be json.dumps's."""

from __future__ import annotations

import datetime as dt

from azfed.agent.collect.sample import Sample, rfc3339
from azfed.agent.push.batcher import sample_size, wire_size
from azfed.wire import METERS
from hypothesis import given
from hypothesis import strategies as st

volumes = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.booleans())
texts = st.one_of(st.text(max_size=12), st.sampled_from(["eni-0abc", "vda", 'a"b', "a\\b"]))


@given(
    meter=st.sampled_from(sorted(METERS)),
    volume=volumes,
    device=st.one_of(st.none(), texts),
    uuid=st.one_of(st.uuids().map(str), texts),
    stamp=st.one_of(st.just("2026-12-03T15:55:00Z"), texts),
)
def test_a_samples_size_is_the_size_json_dumps_gives(
    meter: str, volume: float, device: str | None, uuid: str, stamp: str
) -> None:
    """Any meter, volume (NaN, infinities, ints, bools), device, UUID and timestamp text,
    escapes included: sample_size equals the encoded length (plus the separator)."""
    fact = METERS[meter]  # type: ignore[index]
    at = dt.datetime(2026, 12, 3, 15, 55, tzinfo=dt.timezone.utc)
    wire = Sample(uuid, meter, fact.unit, fact.type, volume, at, device).as_wire()  # type: ignore[arg-type]
    wire["timestamp"] = stamp
    assert sample_size(wire) == wire_size(wire)


def test_a_timestamp_is_rendered_the_same_from_the_cache() -> None:
    """rfc3339 keeps what it rendered: the same datetime, or an equal one in another zone,
    gives the same text; a naive one is read as UTC."""
    utc = dt.datetime(2026, 12, 3, 15, 55, 0, 500, tzinfo=dt.timezone.utc)
    paris = utc.astimezone(dt.timezone(dt.timedelta(hours=1)))
    assert rfc3339(utc) == rfc3339(utc) == rfc3339(paris) == "2026-12-03T15:55:00.000500Z"
    assert rfc3339(utc.replace(tzinfo=None)) == "2026-12-03T15:55:00.000500Z"
