"""The wire contract between the public-cloud agent and the local receiver (version 2).

Both sides import this module, and so does the Nova venv, so it depends on the standard
library and jsonschema only and does no I/O.

One report is one `POST /v1/reports` whose body is JSON (optionally `Content-Encoding: gzip`):

    {"version": 2, "agent_id": str, "seq": int >= 0, "sent_at": RFC3339,
     "instances": [{"instance_uuid", "provider", "remote_id", "state", "ips": {"private": [],
                    "public": []}, "instance_type", "az", "launched_at", "status_checks",
                    "observed_at"}],
     "samples": [{"instance_uuid", "resource_type", "device"?, "meter", "unit", "type",
                  "volume", "timestamp"}]}

A sample is one of Ceilometer's meters (`METERS`) of an instance, or of one of its vNICs or
disks: `resource_type` is the Gnocchi resource type the meter sits on in Ceilometer, and
`device` names the vNIC or disk (its resource id is `resource_id(instance_uuid, device)`).

Version 1 (agents before 2) had samples `{"resource_id", "meter", "unit", "type", "volume",
"timestamp"}` of other meters (`V1_METERS`: cpu_util, instance-wide network and disk totals). A
receiver still reads it, as agents in the public cloud are upgraded after the receiver:
`upgrade_v1` converts what it honestly can and says why not for the rest.

The body is I-JSON (RFC 7493), checked by `loads`: UTF-8, no NaN or Infinity, no number
beyond a double's range nor an integer of more than MAX_INT_DIGITS digits, no member name twice
in one object, and nested at most MAX_DEPTH deep.

Rules beyond the JSON Schema (checked by `validate_report`):
- no string (member names included) holds a control character (U+0000-U+001F, U+007F-U+009F)
  or a lone surrogate (U+D800-U+DFFF), which no database or HTTP header takes safely;
- `version` and `seq` are written as integers: `12345.0` and `1e18` are numbers the schema's
  "integer" would admit, but they are not the agent's key;
- every IP address is one (`ipaddress`: IPv4 without leading zeros, or IPv6 without a zone);
- every timestamp is a real RFC 3339 date-time with a zone (`Z` or `+hh:mm`), not before
  1970; a receiver also bounds them by its clock (`Window`: `[receiver] max_age_s`,
  `max_future_s`): `sent_at`, `observed_at` and sample timestamps within both horizons,
  `launched_at` (an instance may run for years) only not in the future;
- a sample's (unit, type) is the one `METERS` gives for its meter, as Ceilometer names them
  (`V1_METERS` in version 1), and in version 2 so is its resource type; a sample of a vNIC or
  disk meter names its device, one of an instance meter none;
- a volume is finite and not negative (every meter here counts or measures something >= 0);
- every sample's instance (`instance_uuid`; `resource_id` in version 1) is one of the same
  report, so a report is self-contained: the receiver can create the Gnocchi resources from it
  without another lookup;
- an `instance_uuid` appears at most once per report.

An agent may add `"epoch"`, a random id it made with its spool (`EPOCH_PATTERN`); a report
without one (agents before epochs) is still accepted.

Headers: `Idempotency-Key: <agent_id>:<epoch>:<seq>` (`<agent_id>:<seq>` without an
epoch), `X-Azfed-Agent`, `X-Azfed-Timestamp` (unix
seconds) and `X-Azfed-Signature: v1=<hex>`, an HMAC-SHA256 over
`METHOD\\npath\\ntimestamp\\nsha256_hex(body as sent)`. The receiver accepts a timestamp within
its replay window of its own clock, and dedupes by the key: a retry of a report must send the
same body bytes (after gzip decoding), which `encode_body` guarantees for the same dict.
A key already used for another body is answered 422 `key_conflict` (permanent: the agent
renumbers the report under a new epoch); a key still being written, 409 `in_flight` (retry).
"""

from __future__ import annotations

import functools
import gzip as _gzip
import hashlib
import hmac
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple, get_args

from azfed.errors import InputError, Problem

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator, FormatChecker

CONTRACT_VERSION: Final = 2
# the versions a receiver reads: 1 from agents not yet upgraded (see `upgrade_v1`)
CONTRACT_VERSIONS: Final = (1, 2)
REPORTS_PATH: Final = "/v1/reports"
INSTANCES_PATH: Final = "/v1/instances"

# Bounds the schema enforces. A 10,000-instance fleet fits in one report; the agent's
# `[push] batch_max_samples` cannot exceed MAX_SAMPLES.
MAX_INSTANCES: Final = 10_000
MAX_SAMPLES: Final = 100_000
MAX_IPS: Final = 32
# `seq` stays within what every JSON parser reads exactly (I-JSON: 2**53 - 1); a volume within
# a signed 64-bit counter. No integer in a report needs more digits than MAX_INT_DIGITS.
MAX_SEQ: Final = 2**53 - 1
MAX_VOLUME: Final = 2**63 - 1
MAX_INT_DIGITS: Final = 20
# The contract nests 5 deep (report, instances, instance, ips, list); deeper is never valid,
# and is refused before anything recurses into it.
MAX_DEPTH: Final = 8

# The shortest signing secret either side accepts (bytes, as read from its file, stripped):
# HMAC-SHA256's own output length. `openssl rand -hex 32` makes a good one.
MIN_SECRET_BYTES: Final = 32

HEADER_KEY: Final = "Idempotency-Key"
HEADER_AGENT: Final = "X-Azfed-Agent"
HEADER_TIMESTAMP: Final = "X-Azfed-Timestamp"
HEADER_SIGNATURE: Final = "X-Azfed-Signature"
SIGNATURE_SCHEME: Final = "v1="

# Ceilometer's meters (27.0.0: compute/pollsters/, publisher/data/gnocchi_resources.yaml), so
# Gnocchi, Aodh and CloudKitty treat burst VMs' usage like local VMs'. `Meter` is the list (the
# config's `[collect] meters` takes these names); `METERS` gives each its unit, type, the Gnocchi
# resource type it sits on and the archive policy gnocchi_resources.yaml names for it, and must
# name every one (tests/test_facts.py).
Meter = Literal[
    "cpu",
    "vcpus",
    "memory",
    "memory.usage",
    "power.state",
    "network.incoming.bytes",
    "network.outgoing.bytes",
    "network.incoming.packets",
    "network.outgoing.packets",
    "disk.device.read.bytes",
    "disk.device.write.bytes",
    "disk.device.read.requests",
    "disk.device.write.requests",
]
MeterType = Literal["gauge", "cumulative", "delta"]
ResourceType = Literal["instance", "instance_network_interface", "instance_disk"]
RESOURCE_TYPES: Final[tuple[ResourceType, ...]] = get_args(ResourceType)
# gnocchi_resources.yaml's archive_policy_default, and its policy for counters Aodh and
# CloudKitty read as rates
LOW: Final = "ceilometer-low"
LOW_RATE: Final = "ceilometer-low-rate"


class MeterFact(NamedTuple):
    """One meter as Ceilometer defines it."""

    unit: str
    type: MeterType
    resource_type: ResourceType
    archive_policy: str


_VNIC: Final = "instance_network_interface"
_DISK: Final = "instance_disk"
METERS: Final[Mapping[Meter, MeterFact]] = {
    "cpu": MeterFact("ns", "cumulative", "instance", LOW_RATE),
    "vcpus": MeterFact("vcpu", "gauge", "instance", LOW),
    "memory": MeterFact("MiB", "gauge", "instance", LOW),
    "memory.usage": MeterFact("MiB", "gauge", "instance", LOW),
    # Ceilometer's power.state has no unit: the libvirt domain state (POWER_STATES)
    "power.state": MeterFact("", "gauge", "instance", LOW),
    "network.incoming.bytes": MeterFact("B", "cumulative", _VNIC, LOW_RATE),
    "network.outgoing.bytes": MeterFact("B", "cumulative", _VNIC, LOW_RATE),
    "network.incoming.packets": MeterFact("packet", "cumulative", _VNIC, LOW_RATE),
    "network.outgoing.packets": MeterFact("packet", "cumulative", _VNIC, LOW_RATE),
    "disk.device.read.bytes": MeterFact("B", "cumulative", _DISK, LOW_RATE),
    "disk.device.write.bytes": MeterFact("B", "cumulative", _DISK, LOW_RATE),
    "disk.device.read.requests": MeterFact("request", "cumulative", _DISK, LOW_RATE),
    "disk.device.write.requests": MeterFact("request", "cumulative", _DISK, LOW_RATE),
}
ALL_METERS: Final[tuple[Meter, ...]] = get_args(Meter)

# Contract version 1's meters and their (unit, type): what agents before version 2 send. The
# receiver still reads them (`upgrade_v1`) while the agents in the public cloud are upgraded.
V1_METERS: Final[Mapping[str, tuple[str, MeterType]]] = {
    "cpu_util": ("%", "gauge"),
    "network.incoming.bytes": ("B", "cumulative"),
    "network.outgoing.bytes": ("B", "cumulative"),
    "disk.read.bytes": ("B", "cumulative"),
    "disk.write.bytes": ("B", "cumulative"),
    "disk.read.requests": ("request", "cumulative"),
    "disk.write.requests": ("request", "cumulative"),
    "memory.usage": ("MB", "gauge"),
}

# Where an instance runs: "guest" is an agent reporting the host it runs on.
Provider = Literal["ec2", "openstack", "guest"]
PROVIDERS: Final[tuple[Provider, ...]] = get_args(Provider)
# An instance's state, in EC2's words (the OpenStack side maps Nova's status onto them).
State = Literal[
    "pending",
    "running",
    "stopping",
    "stopped",
    "shutting-down",
    "terminated",
    "error",
    "unknown",
]
STATES: Final[tuple[State, ...]] = get_args(State)
# Ceilometer's power.state is the libvirt domain state (virDomainState): 0 no state, 1 running,
# 4 being shut down, 5 shut off, 6 crashed. Each wire state maps onto the one it means.
POWER_STATES: Final[Mapping[State, int]] = {
    "pending": 0,
    "running": 1,
    "stopping": 4,
    "stopped": 5,
    "shutting-down": 4,
    "terminated": 5,
    "error": 6,
    "unknown": 0,
}
StatusChecks = Literal["ok", "impaired", "initializing", "unknown"]
STATUS_CHECKS: Final[tuple[StatusChecks, ...]] = get_args(StatusChecks)

AGENT_ID_PATTERN: Final = r"^[A-Za-z0-9._-]{1,64}$"
# An agent's epoch: a random id made with its spool. Keys of a new spool (a lost disk, a fresh
# instance) start again at seq 0 under a new epoch, so they never meet an old key.
EPOCH_PATTERN: Final = r"^[A-Za-z0-9]{1,32}$"
# A Nova instance UUID, any case. In JSON Schema (ECMA-262 regex) `$` is the end of the
# string, but in Python's `re` it also matches before a final newline: Python callers use
# `is_uuid` (fullmatch), and the schema also pins the length, so "<uuid>\n" is refused by both.
UUID_PATTERN: Final = r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$"
_UUID = re.compile(UUID_PATTERN)
UUID_SCHEMA: Final[dict[str, Any]] = {
    "type": "string",
    "pattern": UUID_PATTERN,
    "minLength": 36,
    "maxLength": 36,
}


def is_uuid(value: object) -> bool:
    """True if `value` is a UUID string, exactly: no surrounding space, no trailing newline."""
    return isinstance(value, str) and _UUID.fullmatch(value) is not None


# The shape only; `validate_report` also parses each one (a month 13 matches this pattern).
RFC3339_PATTERN: Final = (
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
_RFC3339 = re.compile(RFC3339_PATTERN)

_TIME: Final = {"type": "string", "pattern": RFC3339_PATTERN, "maxLength": 40}
_NULLABLE_TIME: Final = {"anyOf": [{"type": "null"}, _TIME]}
# Control characters (C0, DEL, C1) and lone surrogates; the schema says it of each free string
# (an unanchored search, so it means the same in ECMA-262 and Python), `validate_report` of
# every string in the report.
_FORBIDDEN_CHARS: Final = r"[\u0000-\u001f\u007f-\u009f\ud800-\udfff]"
FORBIDDEN = re.compile(_FORBIDDEN_CHARS)
_NO_CONTROL: Final = {"not": {"pattern": _FORBIDDEN_CHARS}}
_TEXT: Final = {"type": "string", "maxLength": 255, **_NO_CONTROL}
# Checked with `ipaddress` (the validator's FormatChecker), not only described.
_IP: Final = {
    "type": "string",
    "minLength": 1,
    "maxLength": 45,
    "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}],
}
_IP_LIST: Final = {"type": "array", "items": _IP, "maxItems": MAX_IPS}

INSTANCE_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["instance_uuid", "provider", "remote_id", "state", "ips", "observed_at"],
    "properties": {
        "instance_uuid": UUID_SCHEMA,
        "provider": {"enum": list(PROVIDERS)},
        "remote_id": {**_TEXT, "minLength": 1},
        "state": {"enum": list(STATES)},
        "ips": {
            "type": "object",
            "additionalProperties": False,
            "required": ["private", "public"],
            "properties": {"private": _IP_LIST, "public": _IP_LIST},
        },
        "instance_type": {"anyOf": [{"type": "null"}, _TEXT]},
        "az": {"anyOf": [{"type": "null"}, _TEXT]},
        "launched_at": _NULLABLE_TIME,
        "status_checks": {"enum": [*STATUS_CHECKS, None]},
        "observed_at": _TIME,
    },
}

# A device (a vNIC, a disk) as its resource id ends: Gnocchi forbids "/" in resource ids.
DEVICE_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
_DEVICE = re.compile(DEVICE_PATTERN)


def is_device(value: object) -> bool:
    """True if `value` can name a device in a report (`DEVICE_PATTERN`, whole)."""
    return isinstance(value, str) and _DEVICE.fullmatch(value) is not None


SAMPLE_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["instance_uuid", "resource_type", "meter", "unit", "type", "volume", "timestamp"],
    "properties": {
        "instance_uuid": UUID_SCHEMA,
        # the resource type and device must be the meter's (METERS), checked after the schema
        "resource_type": {"enum": list(RESOURCE_TYPES)},
        "device": {
            "type": "string",
            "pattern": DEVICE_PATTERN,
            "maxLength": 64,
            "description": "the vNIC or disk, for meters of instance_network_interface and "
            "instance_disk only: the resource id is <instance_uuid>-<device>",
        },
        "meter": {"enum": sorted(METERS)},
        # no _NO_CONTROL: the unit must be its meter's (METERS), checked after the schema
        "unit": {"type": "string", "maxLength": 32},
        "type": {"enum": list(get_args(MeterType))},
        "volume": {"type": "number", "minimum": 0, "maximum": MAX_VOLUME},
        "timestamp": _TIME,
    },
}

SAMPLE_SCHEMA_V1: Final[dict[str, Any]] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["resource_id", "meter", "unit", "type", "volume", "timestamp"],
    "properties": {
        "resource_id": UUID_SCHEMA,
        "meter": {"enum": sorted(V1_METERS)},
        "unit": {"type": "string", "maxLength": 32},
        "type": {"enum": list(get_args(MeterType))},
        "volume": {"type": "number", "minimum": 0, "maximum": MAX_VOLUME},
        "timestamp": _TIME,
    },
}


def _report_schema(version: int, sample: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://azfed.dev/schemas/report-v{version}.json",
        "title": f"azfed agent report, contract version {version}",
        "type": "object",
        "additionalProperties": False,
        "required": ["version", "agent_id", "seq", "sent_at", "instances", "samples"],
        "properties": {
            "version": {
                "const": version,
                "description": f"written as an integer: {version}.0 is refused",
            },
            "agent_id": {"type": "string", "pattern": AGENT_ID_PATTERN},
            "seq": {
                "type": "integer",
                "minimum": 0,
                "maximum": MAX_SEQ,
                "description": "written as an integer: 12345.0 and 1e18 are refused",
            },
            "sent_at": _TIME,
            "epoch": {
                "type": "string",
                "pattern": EPOCH_PATTERN,
                "maxLength": 32,
                "description": "the agent's spool epoch; part of the Idempotency-Key when present",
            },
            "instances": {"type": "array", "items": INSTANCE_SCHEMA, "maxItems": MAX_INSTANCES},
            "samples": {"type": "array", "items": sample, "maxItems": MAX_SAMPLES},
        },
    }


# What agents send now, and what agents before version 2 sent (read until they are upgraded).
REPORT_SCHEMA: Final[dict[str, Any]] = _report_schema(CONTRACT_VERSION, SAMPLE_SCHEMA)
REPORT_SCHEMA_V1: Final[dict[str, Any]] = _report_schema(1, SAMPLE_SCHEMA_V1)
SCHEMAS: Final[Mapping[int, dict[str, Any]]] = {1: REPORT_SCHEMA_V1, 2: REPORT_SCHEMA}


# jsonschema is imported when first asked: the agent, which does not check its own reports,
# does not hold it (3.6 MiB of its memory, bench/bench_agent.py).
@functools.cache
def formats() -> FormatChecker:
    """The schema's format checker: ipv4 and ipv6 checked with `ipaddress`."""
    from jsonschema import FormatChecker

    return FormatChecker(formats=("ipv4", "ipv6"))


@functools.cache
def _validators() -> dict[int, Draft202012Validator]:
    from jsonschema import Draft202012Validator

    return {
        version: Draft202012Validator(schema, format_checker=formats())
        for version, schema in SCHEMAS.items()
    }


# Past this many problems the rest are noise to the operator and cost CPU to the receiver.
_MAX_PROBLEMS = 50


def sha256_hex(body: bytes) -> str:
    """The body hash that goes into the signed string."""
    return hashlib.sha256(body).hexdigest()


def signing_string(method: str, path: str, timestamp: int, body: bytes) -> bytes:
    """What is signed: method, path, timestamp and body hash, one per line."""
    return f"{method.upper()}\n{path}\n{timestamp}\n{sha256_hex(body)}".encode()


def sign(secret: bytes, method: str, path: str, timestamp: int, body: bytes) -> str:
    """The `X-Azfed-Signature` value for a request: `v1=<hex HMAC-SHA256>`."""
    digest = hmac.new(secret, signing_string(method, path, timestamp, body), hashlib.sha256)
    return SIGNATURE_SCHEME + digest.hexdigest()


def verify(  # noqa: PLR0917 - the agreed contract signature mirrors sign()
    secret: bytes, method: str, path: str, timestamp: int, body: bytes, signature: str
) -> bool:
    """True if `signature` is this request's; constant-time so it leaks nothing by timing."""
    expected = sign(secret, method, path, timestamp, body)
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


def idempotency_key(agent_id: str, seq: int, epoch: str | None = None) -> str:
    """The dedupe key of report `seq` of `agent_id`: `<agent_id>:<epoch>:<seq>`, or
    `<agent_id>:<seq>` for a report without an epoch (agents before epochs)."""
    return f"{agent_id}:{epoch}:{seq}" if epoch else f"{agent_id}:{seq}"


def _reject_constant(name: str) -> float:
    # json accepts NaN/Infinity by default, which JSON itself does not allow.
    raise ValueError(f"{name} is not valid JSON")


def _parse_int(text: str) -> int:
    # Before int(): 10**400 would later overflow every float conversion (a 500, once).
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits: at most {MAX_INT_DIGITS}")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is beyond a double's range")
    return value


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers of one body must not see two reports: `{"seq": 1, "seq": 2}` is refused.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise ValueError(f"the member name {name[:64]!r} appears twice in one object")
            seen.add(name)
    return obj


def loads(body: bytes) -> Any:
    """Parse a (decoded) report body as I-JSON (RFC 7493): UTF-8, no NaN or Infinity, numbers
    within range, no member name twice in one object. Raises ValueError saying what is wrong."""
    try:
        return json.loads(
            body.decode("utf-8"),
            parse_constant=_reject_constant,
            parse_int=_parse_int,
            parse_float=_parse_float,
            object_pairs_hook=_unique_members,
        )
    except RecursionError:
        raise ValueError(f"nested far deeper than the contract's {MAX_DEPTH} levels") from None


def dumps(report: Mapping[str, Any]) -> bytes:
    """The canonical bytes of a report: the same dict always gives the same bytes."""
    return json.dumps(report, separators=(",", ":"), allow_nan=False).encode()


def _path_of(error_path: Any) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error_path).lstrip(".")


def _escaped(text: str) -> str:
    # An answer never carries what it refuses: each forbidden character is shown as \uXXXX.
    return FORBIDDEN.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


def _string_problem(path: tuple[Any, ...], text: str) -> Problem:
    found = FORBIDDEN.search(text)
    code = ord(found[0]) if found else 0
    reason = f"holds the control character or lone surrogate U+{code:04X}"
    return Problem(_escaped(_path_of(path)) or "<report>", _escaped(text), reason)


def _tree_problems(obj: Any) -> list[Problem]:
    """Strings (member names too) free of control characters and lone surrogates, and no
    nesting past MAX_DEPTH. Before the schema, without recursion: jsonschema recurses, and
    its messages repr the values it refuses."""
    problems: list[Problem] = []
    stack: list[tuple[Any, tuple[Any, ...]]] = [(obj, ())] if isinstance(obj, dict | list) else []
    while stack and len(problems) < _MAX_PROBLEMS:
        container, path = stack.pop()
        if len(path) > MAX_DEPTH:
            where = _path_of(path)
            problems.append(Problem(where, "...", f"nested deeper than {MAX_DEPTH} levels"))
            continue
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, value in items:
            # the path is built only for a problem: this loop sees every value of the report
            if isinstance(key, str) and FORBIDDEN.search(key):
                problems.append(_string_problem((*path, key), key))
            if isinstance(value, str):
                if FORBIDDEN.search(value):
                    problems.append(_string_problem((*path, key), value))
            elif isinstance(value, dict | list):
                stack.append((value, (*path, key)))
    return problems[:_MAX_PROBLEMS]


def _size_problems(obj: Any) -> list[Problem]:
    # Checked before the schema: jsonschema would validate every item of an oversized array
    # before reporting maxItems, seconds of CPU an attacker could make us spend per request.
    if not isinstance(obj, dict):
        return []
    bounds = (("instances", MAX_INSTANCES), ("samples", MAX_SAMPLES))
    return [
        Problem(key, f"{len(obj[key])} items", f"at most {bound} items per report")
        for key, bound in bounds
        if isinstance(obj.get(key), list) and len(obj[key]) > bound
    ]


def _version_problems(obj: Any) -> list[Problem]:
    # Before the schema: each version has its own, and one that names no known version would
    # otherwise be refused for every field the schemas disagree on. A body that is no object,
    # or names no version, is left to the current schema to describe.
    if not isinstance(obj, dict) or "version" not in obj:
        return []
    version = obj["version"]
    if type(version) is int and version in CONTRACT_VERSIONS:
        return []
    if isinstance(version, float) and version in CONTRACT_VERSIONS:
        return []  # the schema says it: written as an integer
    known = " and ".join(map(str, CONTRACT_VERSIONS))
    reason = f"this receiver reads contract versions {known}: upgrade the receiver, or the agent"
    return [Problem("version", _short_version(version), reason)]


def _validator(obj: Any) -> Draft202012Validator:
    version = obj.get("version", CONTRACT_VERSION) if isinstance(obj, dict) else CONTRACT_VERSION
    return _validators()[int(version)]


def _short_version(version: Any) -> Any:
    return version if isinstance(version, int | float | None) else str(version)[:32]


def plain_text(body: bytes) -> bool:
    """True if no string `loads` parses from `body` can hold a FORBIDDEN character: it
    refuses raw C0 characters inside strings, C1 characters and surrogates are not ASCII,
    every escape starts with a backslash, and DEL (ASCII, passed by the parser) is looked
    for. Three scans in C, where looking at each string of a parsed report takes ms."""
    return body.isascii() and b"\\" not in body and b"\x7f" not in body


def _schema_problems(
    obj: Any, fits: Callable[[Any], bool] | None, plain: bool = False
) -> list[Problem]:
    problems = _size_problems(obj)
    if problems:
        return problems
    if plain and fits is not None and fits(obj):
        # What the schema passes names a known version and nests no deeper than the schema
        # (4 < MAX_DEPTH); a plain text's strings hold no forbidden character: the checks
        # made before the schema would find nothing, so the walk over every value is skipped.
        return []
    problems = _tree_problems(obj) or _version_problems(obj)
    # jsonschema costs ~55 ms per 1,000 samples: past a faster verdict of the same schema, it
    # runs only to describe a refusal, in its own words
    if problems or (fits is not None and fits(obj)):
        return problems
    for err in _validator(obj).iter_errors(obj):
        problems.append(
            Problem(_path_of(err.absolute_path) or "<report>", err.instance, err.message)
        )
        if len(problems) >= _MAX_PROBLEMS:
            break
    return problems


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Window:
    """The times a receiver accepts, from its clock and its horizons: no timestamp after
    `latest`; none but `launched_at` before `earliest`. Pure: the caller reads the clock."""

    earliest: datetime
    latest: datetime

    @classmethod
    def around(cls, now: float, max_age_s: float, max_future_s: float) -> Window:
        at = datetime.fromtimestamp(now, timezone.utc)
        return cls(at - timedelta(seconds=max_age_s), at + timedelta(seconds=max_future_s))


def _time_problem(value: str, window: Window | None, old_ok: bool) -> str | None:
    try:
        when = datetime.fromisoformat(value.upper())
    except ValueError as err:
        return f"not a valid date-time: {err}"
    if when < _EPOCH:
        return "before 1970"
    if window is not None and when > window.latest:
        return f"after {window.latest.isoformat()}, the receiver's clock plus its max_future_s"
    if window is not None and not old_ok and when < window.earliest:
        return f"before {window.earliest.isoformat()}, the receiver's clock minus its max_age_s"
    return None


def _time_reason(value: Any, window: Window | None, old_ok: bool = False) -> str | None:
    # a value that is no RFC 3339 time is the schema's to refuse
    if isinstance(value, str) and _RFC3339.match(value):
        return _time_problem(value, window, old_ok)
    return None


def _check_time(
    key: str, value: Any, problems: list[Problem], window: Window | None, old_ok: bool = False
) -> None:
    reason = _time_reason(value, window, old_ok)
    if reason is not None:
        problems.append(Problem(key, value, reason))


def _instance_problems(
    instances: list[dict[str, Any]], problems: list[Problem], window: Window | None
) -> set[str]:
    seen: set[str] = set()
    for i, inst in enumerate(instances):
        uuid = inst["instance_uuid"].lower()
        if uuid in seen:
            problems.append(Problem(f"instances[{i}].instance_uuid", uuid, "listed twice"))
        seen.add(uuid)
        _check_time(f"instances[{i}].observed_at", inst["observed_at"], problems, window)
        launched = inst.get("launched_at")
        _check_time(f"instances[{i}].launched_at", launched, problems, window, old_ok=True)
    return seen


def _integer_problems(obj: dict[str, Any]) -> list[Problem]:
    # JSON Schema's "integer" admits 12345.0 and 1e18 (floats with no fraction): as keys they
    # would be distinct from 12345 and 1000000000000000000, so they are refused.
    return [
        Problem(key, obj[key], "must be written as an integer: no fraction, no exponent")
        for key in ("version", "seq")
        if type(obj[key]) is not int
    ]


def _volume_problem(i: int, volume: Any, problems: list[Problem]) -> None:
    if isinstance(volume, bool) or not math.isfinite(volume) or volume < 0:
        problems.append(Problem(f"samples[{i}].volume", volume, "must be finite and >= 0"))


def _unit_problem(
    i: int, s: dict[str, Any], want: tuple[str, str], problems: list[Problem]
) -> None:
    if (s["unit"], s["type"]) != want:
        got = f"unit {s['unit']!r}, type {s['type']!r}"
        reason = f"{s['meter']} is measured in unit {want[0]!r}, type {want[1]!r}"
        problems.append(Problem(f"samples[{i}]", got, reason))


def _resource_problem(i: int, s: dict[str, Any], problems: list[Problem]) -> None:
    want = METERS[s["meter"]].resource_type
    if s["resource_type"] != want:
        reason = f"{s['meter']} sits on resource type {want!r}, as in Ceilometer"
        problems.append(Problem(f"samples[{i}].resource_type", s["resource_type"], reason))
    elif want == "instance" and "device" in s:
        reason = "an instance meter names no device"
        problems.append(Problem(f"samples[{i}].device", s["device"], reason))
    elif want != "instance" and "device" not in s:
        reason = f"a meter of {want} names its device (the vNIC or disk)"
        problems.append(Problem(f"samples[{i}].device", None, reason))


def _fact_problems(i: int, s: dict[str, Any], problems: list[Problem]) -> None:
    fact = METERS[s["meter"]]
    # most samples state their meter's facts: two calls per sample for nothing cost more
    # than all the comparisons, so they run only to describe a sample that does not
    if (
        s["unit"] == fact.unit
        and s["type"] == fact.type
        and s["resource_type"] == fact.resource_type
        and ("device" in s) is (fact.resource_type != "instance")
    ):
        return
    _unit_problem(i, s, (fact.unit, fact.type), problems)
    _resource_problem(i, s, problems)


def _sample_problems(
    report: dict[str, Any], known: set[str], problems: list[Problem], window: Window | None
) -> None:
    v1 = report["version"] == 1
    owner_key = "resource_id" if v1 else "instance_uuid"
    # a report's samples share a few timestamps (one per period): each is judged once
    times: dict[str, str | None] = {}
    for i, s in enumerate(report["samples"]):
        if len(problems) >= _MAX_PROBLEMS:
            return
        if v1:
            _unit_problem(i, s, V1_METERS[s["meter"]], problems)
        else:
            _fact_problems(i, s, problems)
        _volume_problem(i, s["volume"], problems)
        if s[owner_key].lower() not in known:
            reason = "unknown instance: no instance of this report has this instance_uuid"
            problems.append(Problem(f"samples[{i}].{owner_key}", s[owner_key], reason))
        stamp = s["timestamp"]
        if stamp not in times:
            times[stamp] = _time_reason(stamp, window)
        why = times[stamp]
        if why is not None:
            problems.append(Problem(f"samples[{i}].timestamp", stamp, why))


def validate_report(
    obj: Any,
    source: str = "report",
    *,
    window: Window | None = None,
    fits: Callable[[Any], bool] | None = None,
    text: bytes | None = None,
) -> dict[str, Any]:
    """Check a parsed report against the contract; return it or raise InputError listing
    every problem (key, value, reason), the schema's first and then the rules beyond it.
    With `window` (a receiver), its timestamps must also fall within it.

    `fits` is a faster verdict of the same JSON Schema (the receiver's compiled one,
    `azfed.receiver.typed.fits`, held to the schema by a test): a report it passes skips
    jsonschema, and one it fails is described by jsonschema, so the problems are the same.
    `text` is the JSON text `obj` was parsed from (by `loads`), where the caller has it: when
    it is `plain_text`, a report `fits` passes needs no walk for forbidden characters."""
    plain = text is not None and plain_text(text)
    problems = _schema_problems(obj, fits, plain)
    if problems:
        raise InputError(source, problems)
    problems = _integer_problems(obj)
    _check_time("sent_at", obj["sent_at"], problems, window)
    known = _instance_problems(obj["instances"], problems, window)
    _sample_problems(obj, known, problems, window)
    if problems:
        raise InputError(source, problems[:_MAX_PROBLEMS])
    return dict(obj)


def resource_id(instance_uuid: str, device: str | None = None) -> str:
    """The Gnocchi resource id of a sample's resource: the instance's UUID, or for a vNIC or a
    disk `<instance_uuid>-<device>` (Ceilometer's instance_disk id; its vNIC ids start with
    libvirt's domain name, which a public cloud has not). Gnocchi maps an id that is not a UUID
    to one (uuid5 of the id and its creator) and keeps the id as `original_resource_id`."""
    uuid = instance_uuid.lower()
    return uuid if device is None else f"{uuid}-{device}"


@dataclass(frozen=True)
class Unconverted:
    """Samples of a version 1 report that version 2 cannot carry honestly."""

    instance_uuid: str
    meter: str
    samples: int
    reason: str


_UPGRADE_AGENT = "upgrade the agent to contract version 2"
# Why each version 1 meter cannot become a version 2 one. memory.usage alone converts: the
# version 1 agents computed MiB (bytes / 1048576, kB / 1024) and labelled it MB.
V1_UNCONVERTIBLE: Final[Mapping[str, str]] = {
    "cpu_util": "cpu_util is a percentage of an unreported number of vCPUs; Ceilometer's cpu "
    f"is cumulative CPU time in ns and cannot be rebuilt from it: {_UPGRADE_AGENT}",
    **dict.fromkeys(
        ("network.incoming.bytes", "network.outgoing.bytes"),
        "a version 1 network meter is the instance's total over all its interfaces; "
        f"Ceilometer's is per vNIC on instance_network_interface: {_UPGRADE_AGENT}",
    ),
    **{
        m: f"{m} is the instance's total over all its disks, a name Ceilometer dropped; "
        f"disk.device.* are per disk on instance_disk: {_UPGRADE_AGENT}"
        for m in ("disk.read.bytes", "disk.write.bytes", "disk.read.requests",
                  "disk.write.requests")
    },
}  # fmt: skip


def upgrade_v1(report: Mapping[str, Any]) -> tuple[dict[str, Any], list[Unconverted]]:
    """A valid version 1 report as version 2, and the samples that could not be converted (by
    instance and meter, with the reason). A version 2 report is returned as it is."""
    if report["version"] != 1:
        return dict(report), []
    samples: list[dict[str, Any]] = []
    dropped: dict[tuple[str, str], int] = {}
    for s in report["samples"]:
        uuid = s["resource_id"].lower()
        if s["meter"] in V1_UNCONVERTIBLE:
            dropped[uuid, s["meter"]] = dropped.get((uuid, s["meter"]), 0) + 1
            continue
        fact = METERS[s["meter"]]
        samples.append({
            "instance_uuid": uuid, "resource_type": fact.resource_type, "meter": s["meter"],
            "unit": fact.unit, "type": fact.type, "volume": s["volume"],
            "timestamp": s["timestamp"],
        })  # fmt: skip
    unconverted = [Unconverted(u, m, n, V1_UNCONVERTIBLE[m]) for (u, m), n in dropped.items()]
    return {**report, "version": CONTRACT_VERSION, "samples": samples}, unconverted


def encode_body(
    report_dict: Mapping[str, Any], *, agent_id: str, seq: int, gzip: bool, check: bool = True
) -> bytes:
    """The body bytes of report `seq`, as sent (gzip-compressed if `gzip`).

    `version`, `agent_id` and `seq` are filled in when the dict lacks them, and must agree
    with the arguments when it has them. With `check`, the report is validated first, so a
    bug on the sender's side fails there, loudly, instead of as a 400 from the receiver.
    The gzip stream has no timestamp (mtime=0): the same dict always gives the same bytes.
    """
    report = {"version": CONTRACT_VERSION, "agent_id": agent_id, "seq": seq, **report_dict}
    for key, want in (("agent_id", agent_id), ("seq", seq)):
        if report[key] != want:
            raise ValueError(f"report {key}={report[key]!r} but encode_body({key}={want!r})")
    if check:
        validate_report(report)
    body = dumps(report)
    return _gzip.compress(body, compresslevel=6, mtime=0) if gzip else body


def signed_headers(
    secret: bytes,
    *,
    agent_id: str,
    seq: int,
    body: bytes,
    gzip: bool,
    now: float,
    path: str = REPORTS_PATH,
    epoch: str | None = None,
) -> dict[str, str]:
    """The headers of one POST of `body` (as sent) to `path`, signed at `now`; `epoch` is the
    report's (absent from a report of an agent before epochs).

    Made afresh for every attempt: a retry resends the same body under a new timestamp and
    signature, so it is not refused as a replay and is still deduped by its key."""
    timestamp = int(now)
    headers = {"Content-Type": "application/json"}
    if gzip:
        headers["Content-Encoding"] = "gzip"
    headers[HEADER_KEY] = idempotency_key(agent_id, seq, epoch)
    headers[HEADER_AGENT] = agent_id
    headers[HEADER_TIMESTAMP] = str(timestamp)
    headers[HEADER_SIGNATURE] = sign(secret, "POST", path, timestamp, body)
    return headers


def encode_report(
    report_dict: Mapping[str, Any],
    *,
    secret: bytes,
    agent_id: str,
    seq: int,
    now: float,
    gzip: bool,
    check: bool = True,
) -> tuple[bytes, dict[str, str]]:
    """The body bytes and signed headers of one report, ready to POST to REPORTS_PATH once
    (a sender that retries keeps the body and calls `signed_headers` for each attempt)."""
    body = encode_body(report_dict, agent_id=agent_id, seq=seq, gzip=gzip, check=check)
    epoch = report_dict.get("epoch")
    return body, signed_headers(
        secret, agent_id=agent_id, seq=seq, body=body, gzip=gzip, now=now, epoch=epoch
    )
