"""The public AZs' capacity events: what a proxy host's driver reports (POST
/v1/capacity-events) and what the scheduler's filter reads back (GET, by id).

A driver whose spawn failed for lack of capacity, a limit or throttling reports it here, signed
like an agent's report (its id names a secret in [receiver] secrets_dir); the filter reads the
events it has not seen and backs the AZ off for that flavor (azfed.policy.capacity_source). The
receiver is the hub because both already reach it and it keeps state in a database; see
docs/policy.md, "Capacity fallback". Events are kept KEEP_S, long past any back-off.
"""

from __future__ import annotations

import math
from typing import Any, Final

from azfed import wire
from azfed.errors import Problem
from azfed.policy.capacity_source import OUTCOMES
from azfed.receiver.validate import Reject
from jsonschema import Draft202012Validator

MAX_BODY_BYTES: Final = 4096
KEEP_S: Final = 7 * 86_400.0
LIMIT_MAX: Final = 500
KEY_MAX: Final = 200  # the store's key column

# the body of POST /v1/capacity-events (also in openapi.json)
EVENT_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["instance_uuid", "az", "flavor", "outcome", "at"],
    "properties": {
        "instance_uuid": {"type": "string", "pattern": wire.UUID_PATTERN},
        "az": {"type": "string", "minLength": 1, "maxLength": 255},
        "flavor": {"type": "string", "minLength": 1, "maxLength": 255},
        "instance_type": {"type": "string", "maxLength": 64},
        "outcome": {"enum": list(OUTCOMES)},
        "reason": {"type": "string", "maxLength": 1000},
        "at": {"type": "number", "minimum": 0, "description": "unix seconds, the writer's clock"},
    },
}
# the events GET /v1/capacity-events answers, each with these fields
EVENT_FIELDS: Final = (
    "id",
    "writer_id",
    "instance_uuid",
    "az",
    "flavor",
    "instance_type",
    "outcome",
    "reason",
    "at",
    "received_at",
)
_VALIDATOR = Draft202012Validator(EVENT_SCHEMA)


def parse_event(data: bytes) -> dict[str, Any]:
    """The event in `data` (JSON), or Reject(400) naming every key that is wrong."""
    try:
        obj = wire.loads(data)  # refuses NaN, Infinity and duplicate keys
    except (UnicodeDecodeError, ValueError) as err:
        raise Reject(400, "bad_json", f"the body is not valid JSON: {err}") from None
    problems = [
        Problem("$" + "".join(f".{p}" for p in e.absolute_path), e.instance, e.message)
        for e in _VALIDATOR.iter_errors(obj)
    ]
    if not problems and not math.isfinite(obj["at"]):  # 1e999 parses as infinity
        problems.append(Problem("$.at", str(obj["at"]), "not a finite number"))
    if problems:
        raise Reject(400, "bad_event", "the event breaks the contract", problems)
    return {
        "instance_uuid": obj["instance_uuid"].lower(),
        "az": obj["az"],
        "flavor": obj["flavor"],
        "instance_type": obj.get("instance_type", ""),
        "outcome": obj["outcome"],
        "reason": obj.get("reason", ""),
        "at": float(obj["at"]),
    }


def parse_range(query: Any) -> tuple[int, int]:
    """(after, limit) of a GET, or Reject(400) naming the parameter."""
    after, limit = query.get("after", "0"), query.get("limit", "100")
    if not after.isascii() or not after.isdigit() or len(after) > 18:
        raise Reject(400, "bad_after", f"after must be an event id >= 0, not {after[:32]!r}")
    if not limit.isascii() or not limit.isdigit() or not 1 <= int(limit) <= LIMIT_MAX:
        raise Reject(400, "bad_limit", f"limit must be 1 to {LIMIT_MAX}, not {limit[:32]!r}")
    return int(after), int(limit)
