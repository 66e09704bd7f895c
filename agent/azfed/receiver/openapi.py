"""The receiver's OpenAPI 3.1 document, shipped as `openapi.json` beside this module and
served at /openapi.json. The report schemas inside it are `wire.SCHEMAS` themselves (version 2,
what agents send, and version 1, still read from agents not yet upgraded): a test
checks the shipped file is what `build()` makes, and `python -m azfed.receiver.openapi`
rewrites it after a contract change.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

from azfed import __version__, wire
from azfed.policy.capacity_source import CAPACITY_EVENTS_PATH
from azfed.receiver import capacity
from azfed.receiver.history import KEEP_S

PATH = Path(__file__).with_name("openapi.json")


def _error_response(description: str, retry: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if retry:
        out["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
    return out


def _header(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": True,
        "schema": schema,
        "description": description,
    }


def _report_schema(version: int) -> dict[str, Any]:
    schema = copy.deepcopy(wire.SCHEMAS[version])
    schema.pop("$schema", None)
    schema.pop("$id", None)
    return schema


_V1_NOTE = (
    "Contract version 1, still read from agents not yet upgraded: its samples are converted "
    "to version 2 where that is honest (memory.usage, whose MB were MiB) and otherwise "
    "dropped and counted (reason v1_not_convertible, shown by `azfed status`): cpu_util "
    "cannot become cumulative CPU time, and the instance-wide network and disk totals cannot "
    "become Ceilometer's per-vNIC and per-disk meters. The report is accepted."
)


_ERROR = {
    "type": "object",
    "required": ["error", "message", "problems"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "problems": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["key", "reason"],
                "properties": {
                    "key": {"type": "string"},
                    "value": {},
                    "reason": {"type": "string"},
                },
            },
        },
    },
}

_ACCEPTED = {
    "type": "object",
    "required": ["accepted", "key", "instances", "samples"],
    "properties": {
        "accepted": {"const": True},
        "key": {"type": "string"},
        "instances": {"type": "integer", "minimum": 0},
        "samples": {"type": "integer", "minimum": 0},
    },
}

# what GET /v1/instances/{uuid} answers; the handler serves exactly these fields
INSTANCE_FIELDS = (
    "instance_uuid",
    "provider",
    "remote_id",
    "state",
    "ips",
    "observed_at",
    "received_at",
    "status_checks",
)

_INSTANCE_STATE = {
    "type": "object",
    "required": list(INSTANCE_FIELDS),
    "properties": {
        "instance_uuid": {"type": "string"},
        "provider": {"enum": list(wire.PROVIDERS)},
        "remote_id": {"type": "string"},
        "state": {"enum": list(wire.STATES)},
        "ips": wire.INSTANCE_SCHEMA["properties"]["ips"],
        "observed_at": {"type": "string"},
        "received_at": {"type": "number", "description": "unix seconds, receiver's clock"},
        "status_checks": {
            "enum": [*wire.STATUS_CHECKS, None],
            "description": "EC2's instance and system status checks as of observed_at, the "
            "worse of the two; null when that report had none (not running, or checks off)",
        },
    },
}


def _post_reports() -> dict[str, Any]:
    return {
        "summary": "Ingest one signed agent report",
        "operationId": "postReport",
        "parameters": [
            _header(
                wire.HEADER_KEY,
                {"type": "string"},
                "<agent_id>:<epoch>:<seq>, or <agent_id>:<seq> for a report without an epoch",
            ),
            _header(wire.HEADER_AGENT, {"type": "string"}, "the agent's id"),
            _header(
                wire.HEADER_TIMESTAMP, {"type": "string", "pattern": "^[0-9]+$"}, "unix seconds"
            ),
            _header(wire.HEADER_SIGNATURE, {"type": "string"}, "v1=<hex HMAC-SHA256>"),
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Report"}}},
        },
        "responses": {
            "200": {
                "description": "accepted (a repeat of a finished key gets the same answer)",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}
                },
            },
            "400": _error_response("bad schema, JSON, encoding or headers: never retried"),
            "401": _error_response(
                "bad signature or unknown agent (one answer for both), or outside the replay window"
            ),
            "403": _error_response(
                "an instance of the report belongs to another agent (foreign_instance): the "
                "first agent to report an instance owns it until it reports it terminated or "
                "an operator runs `azfed receiver release-instance UUID`; never retried"
            ),
            "408": _error_response("the body did not arrive within [receiver] body_timeout_s"),
            "409": _error_response(
                "in_flight: the same key is being written now; retry after Retry-After",
                retry=True,
            ),
            "413": _error_response("body too large"),
            "422": _error_response(
                "key_conflict: the key was already used for another body; permanent, never "
                "retried as is (the agent renumbers the report under a new epoch)"
            ),
            "429": _error_response("too many reports in flight", retry=True),
            "503": _error_response("a backend failed: retry", retry=True),
        },
    }


def _post_capacity_event() -> dict[str, Any]:
    post = _post_reports()
    return {
        "summary": "A proxy host's driver reports a boot that failed in its public AZ for lack "
        "of capacity, a limit or throttling (or one that launched); the scheduler's filter "
        "reads it back and backs the AZ off for that flavor. Signed as a report is, with the "
        "writer's own id and secret ([receiver] secrets_dir)",
        "operationId": "postCapacityEvent",
        "parameters": [
            _header(
                wire.HEADER_KEY,
                {"type": "string", "maxLength": capacity.KEY_MAX},
                "<instance uuid>:<az>:<outcome>: a retried POST adds nothing",
            ),
            *post["parameters"][1:],
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": capacity.EVENT_SCHEMA}},
        },
        "responses": {
            "200": _json_ok(
                "kept (a repeat of a key gets the first id, duplicate: true)",
                {
                    "type": "object",
                    "required": ["accepted", "id", "duplicate"],
                    "properties": {
                        "accepted": {"const": True},
                        "id": {"type": "integer", "minimum": 1},
                        "duplicate": {"type": "boolean"},
                    },
                },
            ),
            "400": _error_response("bad JSON, event, encoding or headers: never retried"),
            "401": _error_response(
                "bad signature or unknown writer (one answer for both), or outside the replay "
                "window"
            ),
            "408": _error_response("the body did not arrive within [receiver] body_timeout_s"),
            "413": _error_response(f"body larger than {capacity.MAX_BODY_BYTES} bytes"),
            "422": _error_response("key_conflict: the key was already used for another event"),
            "503": _error_response("the store failed: retry", retry=True),
        },
    }


def _get_capacity_events() -> dict[str, Any]:
    event = {
        "type": "object",
        "required": list(capacity.EVENT_FIELDS),
        "properties": {
            **capacity.EVENT_SCHEMA["properties"],
            "id": {"type": "integer", "minimum": 1},
            "writer_id": {"type": "string"},
            "received_at": {"type": "number", "description": "unix seconds, receiver's clock"},
        },
    }
    answer = {
        "type": "object",
        "required": ["events", "last_id"],
        "properties": {
            "events": {"type": "array", "items": event},
            "last_id": {
                "type": "integer",
                "minimum": 0,
                "description": "the highest id kept: lower than `after` means a new store",
            },
        },
    }
    get = _get(
        "The capacity events with an id above `after`, oldest first (the scheduler's filter "
        f"reads the ones it has not seen); kept {capacity.KEEP_S / 86400:g} days",
        "getCapacityEvents",
        _json_ok("{events: [...], last_id}", answer),
        {"400": "after or limit out of range", "503": "the store failed"},
    )
    get["parameters"] = [
        {"name": "after", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 0}},
        {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": capacity.LIMIT_MAX}},
    ]  # fmt: skip
    return get


def _get(summary: str, op: str, ok: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": ok}
    responses.update({code: _error_response(text) for code, text in errors.items()})
    return {"summary": summary, "operationId": op, "responses": responses}


def _json_ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def build() -> dict[str, Any]:
    """The OpenAPI document, from the wire contract."""
    uuid_param = {"name": "uuid", "in": "path", "required": True, "schema": {"type": "string"}}
    instance = _get(
        "The state an agent last reported for a Nova instance",
        "getInstance",
        _json_ok("the state", {"$ref": "#/components/schemas/InstanceState"}),
        {"400": "not an instance UUID", "404": "no agent has reported it"},
    )
    instance["parameters"] = [uuid_param]
    usage = _get(
        "The newest value of each of a Nova instance's meters (and its vNICs' and disks'), "
        "read back from Gnocchi",
        "getInstanceUsage",
        _json_ok("{instance_uuid, usage: [{resource_type, device, meter, unit, timestamp, "
                 "value}]}", {"type": "object"}),
        {"400": "not an instance UUID", "404": "no usage recorded",
         "503": "no Gnocchi sink configured, or Gnocchi does not answer"},
    )  # fmt: skip
    usage["parameters"] = [uuid_param]
    obj = {"type": "object"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "azfed receiver",
            "version": __version__,
            "description": f"Wire contract version {wire.CONTRACT_VERSION}; version 1 is "
            "still accepted from agents not yet upgraded (see ReportV1).",
        },
        "paths": {
            wire.REPORTS_PATH: {"post": _post_reports()},
            wire.INSTANCES_PATH + "/{uuid}": {"get": instance},
            wire.INSTANCES_PATH + "/{uuid}/usage": {"get": usage},
            "/v1/placement": {
                "get": {
                    **_get(
                        "What the next boot of a flavor would get, and why",
                        "getPlacement",
                        _json_ok("the explanation", obj),
                        {
                            "400": "no flavor given",
                            "404": "no such flavor in the local cloud",
                            "503": "policy not configured, or the policy file is invalid",
                        },
                    ),
                    "parameters": [
                        {
                            "name": "flavor",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string", "minLength": 1},
                        }
                    ],
                }
            },
            "/v1/spend": {
                "get": _get(
                    "What burst instances cost so far this day and this month, against the "
                    "policy's spend budgets (from Nova's launch and termination times)",
                    "getSpend",
                    _json_ok(
                        "spent, budget and left per period; the periods at the warning level", obj
                    ),
                    {"503": "policy not configured, or the policy file is invalid"},
                )
            },
            "/v1/decisions": {
                "get": {
                    **_get(
                        "The scheduler filter's decisions, newest first: each boot's "
                        "flavor, the AZ, the rule, the reason and the load it compared. Read "
                        "from the filter's state file into the receiver's store and kept there "
                        f"for {KEEP_S / 86400:g} days, across restarts of the filter and of the "
                        "receiver",
                        "getDecisions",
                        _json_ok("{decisions: [...], kept_s: seconds a decision is kept}", obj),
                        {
                            "400": "limit or since out of range",
                            "503": "no policy_state_file configured, it is unreadable, or the "
                            "store failed",
                        },
                    ),
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                        },
                        {
                            "name": "since",
                            "in": "query",
                            "required": False,
                            "description": "only decisions at or after this time (unix seconds)",
                            "schema": {"type": "number", "minimum": 0},
                        },
                    ],
                }
            },
            "/v1/status": {
                "get": _get(
                    "What `azfed status` shows: each agent's last report and its age, burst "
                    "instances by state, orphans, resources a backend refused",
                    "getStatus",
                    _json_ok("the status", obj),
                    {},
                )
            },
            CAPACITY_EVENTS_PATH: {
                "post": _post_capacity_event(),
                "get": _get_capacity_events(),
            },
            "/healthz": {"get": _get("Alive", "healthz", _json_ok("alive", obj), {})},
            "/readyz": {
                "get": _get(
                    "Store, Nova and Gnocchi reachable",
                    "readyz",
                    _json_ok("ready", obj),
                    {"503": "a dependency is down"},
                )
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "operationId": "metrics",
                    "responses": {
                        "200": {
                            "description": "text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": _get("This document", "openapi", _json_ok("OpenAPI 3.1", obj), {})
            },
        },
        "components": {
            "schemas": {
                "Report": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/ReportV2"},
                        {"$ref": "#/components/schemas/ReportV1"},
                    ]
                },
                "ReportV2": _report_schema(2),
                "ReportV1": {**_report_schema(1), "description": _V1_NOTE},
                "Accepted": _ACCEPTED,
                "InstanceState": _INSTANCE_STATE,
                "Error": _ERROR,
            }
        },
    }


@functools.cache
def document() -> dict[str, Any]:
    """The shipped document (read once)."""
    loaded: dict[str, Any] = json.loads(PATH.read_text())
    return loaded


if __name__ == "__main__":  # pragma: no cover - a maintainer's tool
    PATH.write_text(json.dumps(build(), indent=1) + "\n")
