"""azfed's log lines inside nova-compute and nova-scheduler: Nova's lines.

There the process is Nova's, and so is logging: oslo.log has put its handlers on the root logger
(Nova's log file, journald, syslog) with Nova's format, which adds the request id of the
request being served. So structlog renders each event as one `event key=value ...` message and
hands it to the stdlib logger named after the module that logged; oslo.log does the rest.
An `instance_uuid` field also goes on the record, where oslo.log's format shows it as
`[instance: <uuid>]`, like Nova's own lines about an instance.

`configure()` is called when the driver or the filter module is imported, which only Nova
does; the CLI configures its own rendering (azfed.logs) and never imports either module.
This module imports neither nova nor oslo, so it is tested without them.
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

import structlog


def configure() -> None:
    """Route every structlog logger of this process to the stdlib logger of its name."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.contextvars.merge_contextvars,
            structlog.processors.StackInfoRenderer(),
            render_to_stdlib,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # not cached: module-level loggers must follow a later configure() (the CLI
        # configures from its flags, then again from the config file's [logging])
        cache_logger_on_first_use=False,
    )


def render_to_stdlib(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> tuple[tuple[str], dict[str, Any]]:
    """The stdlib call for one event: `(message,)` and the `exc_info`/`extra` keywords."""
    fields = dict(event_dict)
    message = str(fields.pop("event", ""))
    kwargs: dict[str, Any] = {}
    exc_info = fields.pop("exc_info", None)
    if exc_info:
        kwargs["exc_info"] = exc_info
    if fields.get("instance_uuid"):
        kwargs["extra"] = {"instance_uuid": str(fields["instance_uuid"])}
    rendered = " ".join(f"{key}={_value(value)}" for key, value in fields.items())
    return ((f"{message} {rendered}" if rendered else message),), kwargs


def _value(value: Any) -> str:
    # bare when unambiguous, so `grep instance_uuid=<uuid>` works; JSON otherwise
    if isinstance(value, str) and value and not any(c.isspace() or c in "\"'=" for c in value):
        return value
    return json.dumps(value, default=str)
