"""The receiver's typed check of a parsed report: wire's JSON Schemas stated as TypedDicts, which
pydantic-core compiles once into validators.

jsonschema walks a report's dicts in Python, about 55 ms per 1,000 samples; the compiled
validator says the same in under 2 ms. Its verdict is all it gives: `wire.validate_report` asks
jsonschema only to explain a refusal, so every answer still names the path, the value and the
reason exactly as the published schema does (tests/receiver/test_typed.py holds the two to
the same verdict). Every bound, pattern and name comes from wire: this module states no fact
of its own. It checks a parsed report (`wire.loads` has made it I-JSON) and runs after
wire's checks of sizes, nesting and characters, so it never sees an oversized array, a deep tree
or a control character it would have to describe.
"""

# No `from __future__ import annotations`: pydantic reads these annotations at class creation,
# and the report's class, made per version inside `_report`, names that function's locals.
import math
from collections.abc import Callable, Collection
from typing import Annotated, Any, Final, Literal

from azfed import wire
from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, ValidationError, with_config
from typing_extensions import NotRequired, TypedDict

# Strict, as JSON Schema's types are: "42" is no integer and true no number. Patterns run on
# pydantic's Rust engine (0.7 ms less per 1,000 samples than Python's `re`). It reads `$` as the
# end of the text, where jsonschema's `re.search` also matches before a final newline: stricter
# only for a string ending in "\n", a control character `wire` refuses before asking this check.
_CONFIG: Final = ConfigDict(strict=True, extra="forbid")


def _check(ok: Callable[[str], bool], why: str) -> AfterValidator:
    def validate(value: str) -> str:
        if not ok(value):
            raise ValueError(why)
        return value

    return AfterValidator(validate)


def _one_of(names: Collection[str]) -> AfterValidator:
    return _check(lambda value: value in names, "not one of the contract's names")


def _is_ip(value: str) -> bool:
    # the schema's own format checker, so "010.0.0.1" and "fe80::1%eth0" are refused alike
    return wire.formats().conforms(value, "ipv4") or wire.formats().conforms(value, "ipv6")


# The schema says "not pattern" of free text, which no validator's constraints state.
_NO_CONTROL: Final = _check(lambda value: wire.FORBIDDEN.search(value) is None, "control char")
_Uuid = Annotated[str, Field(pattern=wire.UUID_PATTERN, min_length=36, max_length=36)]
_Time = Annotated[str, Field(pattern=wire.RFC3339_PATTERN, max_length=40)]
_Text = Annotated[str, Field(max_length=255), _NO_CONTROL]
_Ip = Annotated[str, Field(min_length=1, max_length=45), _check(_is_ip, "not an IP address")]
_IpList = Annotated[list[_Ip], Field(max_length=wire.MAX_IPS)]
_Unit = Annotated[str, Field(max_length=32)]
# JSON Schema's bounds compare exactly; a float bound of 2**63 - 1 would round up to 2**63 and
# let 9.223372036854775808e18 through, so floats get the largest double within the bound.
_Volume = (
    Annotated[int, Field(ge=0, le=wire.MAX_VOLUME)]
    | Annotated[float, Field(ge=0, le=math.nextafter(wire.MAX_VOLUME, 0))]
)
# JSON Schema's "integer" is any number without a fraction: 12345.0 fits the schema, and
# `validate_report` refuses it afterwards (as it does today) for not being written as one.
_Seq = (
    Annotated[int, Field(ge=0, le=wire.MAX_SEQ)]
    | Annotated[float, Field(ge=0, le=wire.MAX_SEQ), _check(float.is_integer, "has a fraction")]
)


@with_config(_CONFIG)
class _Ips(TypedDict):
    private: _IpList
    public: _IpList


@with_config(_CONFIG)
class _Instance(TypedDict):
    instance_uuid: _Uuid
    provider: wire.Provider
    remote_id: Annotated[_Text, Field(min_length=1)]
    state: wire.State
    ips: _Ips
    instance_type: NotRequired[_Text | None]
    az: NotRequired[_Text | None]
    launched_at: NotRequired[_Time | None]
    status_checks: NotRequired[wire.StatusChecks | None]
    observed_at: _Time


@with_config(_CONFIG)
class _Sample(TypedDict):
    instance_uuid: _Uuid
    resource_type: wire.ResourceType
    device: NotRequired[Annotated[str, Field(pattern=wire.DEVICE_PATTERN, max_length=64)]]
    meter: wire.Meter
    unit: _Unit
    type: wire.MeterType
    volume: _Volume
    timestamp: _Time


@with_config(_CONFIG)
class _SampleV1(TypedDict):
    resource_id: _Uuid
    meter: Annotated[str, _one_of(wire.V1_METERS)]
    unit: _Unit
    type: wire.MeterType
    volume: _Volume
    timestamp: _Time


def _version(number: int) -> Any:
    # JSON Schema's const compares numbers by value: 2.0 fits `"const": 2` (and is refused
    # afterwards for not being written as an integer).
    return Literal[number] | Annotated[float, Field(ge=number, le=number)]


def _report(number: int, sample_type: type, version_type: Any = None) -> TypeAdapter[Any]:
    # the parameters are not named `version` or `sample`: in the class body those names are
    # the fields', and an annotation would not see the function's
    @with_config(_CONFIG)
    class Report(TypedDict):
        version: version_type or _version(number)  # type: ignore[valid-type]
        agent_id: Annotated[str, Field(pattern=wire.AGENT_ID_PATTERN)]
        seq: _Seq
        sent_at: _Time
        epoch: NotRequired[Annotated[str, Field(pattern=wire.EPOCH_PATTERN, max_length=32)]]
        instances: Annotated[list[_Instance], Field(max_length=wire.MAX_INSTANCES)]
        samples: Annotated[list[sample_type], Field(max_length=wire.MAX_SAMPLES)]  # type: ignore[valid-type]

    return TypeAdapter(Report)


# Compiled once, at import: one per contract version, as wire.SCHEMAS has (a test holds each
# to its schema).
_ADAPTERS: Final[dict[int, TypeAdapter[Any]]] = {1: _report(1, _SampleV1), 2: _report(2, _Sample)}
# parse_fitting's: the current version written as an integer, and nothing else. A Literal
# reads JSON's 2.0 as 2, where wire.loads keeps the float that validate_report refuses.
_ONE_PASS: Final = _report(
    wire.CONTRACT_VERSION,
    _Sample,
    Annotated[int, Field(ge=wire.CONTRACT_VERSION, le=wire.CONTRACT_VERSION)],
)


# JSON's whitespace: a text with none writes every member as `"name":`, nothing in between
_WHITESPACE: Final = (b" ", b"\t", b"\n", b"\r")


def parse_fitting(data: bytes) -> dict[str, Any] | None:
    """The report in `data`, parsed and held to the current version's schema in one pass of
    pydantic-core's JSON parser (1.3 ms per 1,000 samples, where `wire.loads` and `fits`
    took 2.8), when that gives exactly what they would: `data` is plain text
    (`wire.plain_text`) with no whitespace, fits the schema, and names no member twice. None
    otherwise: the caller parses it with `wire.loads`, which says what is wrong. Every value
    comes out of the type it was written in (the version an integer: `_ONE_PASS`).

    pydantic-core keeps the last of a member named twice, where `wire.loads` refuses it: in a
    plain text without whitespace every member is written `"name":` and a string holds no
    quote, so `":` occurs once per member written (and once more per string value starting
    with a colon); the count equals the members parsed only if none was named twice. A
    report that fits holds only bounded numbers, so no NaN, infinity or oversized integer
    `wire.loads` would refuse gets through either."""
    if not wire.plain_text(data) or any(ws in data for ws in _WHITESPACE):
        return None
    try:
        report: dict[str, Any] = _ONE_PASS.validate_json(data)
    except ValidationError:
        return None
    return report if data.count(b'":') == _members(report) else None


def _members(report: dict[str, Any]) -> int:
    """How many members the objects of a report that fits have: itself, each instance and its
    ips, each sample (the schema allows no other object)."""
    instances = report["instances"]
    return (
        len(report)
        + sum(map(len, instances))
        + sum(len(i["ips"]) for i in instances)
        + sum(map(len, report["samples"]))
    )


def fits(report: Any) -> bool:
    """True if `report` (parsed) is valid under wire's JSON Schema of the version it names
    (the current one if it names none); False says nothing of why: ask the schema."""
    version = report.get("version") if isinstance(report, dict) else None
    key = int(version) if type(version) in (int, float) and version in _ADAPTERS else None
    adapter = _ADAPTERS[wire.CONTRACT_VERSION if key is None else key]
    try:
        adapter.validate_python(report)
    except ValidationError:
        return False
    return True
