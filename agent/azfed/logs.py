"""structlog set-up. Called once, by the CLI, and nowhere else.

Libraries and services only ever call `structlog.get_logger()`; what the lines look like is the
process's decision: a console renderer for a person at a TTY, one JSON object per line for
journald and log shippers.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

Format = Literal["auto", "console", "json"]


def configure(level: str = "info", fmt: Format = "auto") -> None:
    """Route structlog and the stdlib `logging` (aiohttp, botocore) through one renderer."""
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer()
        if use_console
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # not cached: module-level loggers must follow a later configure() (the CLI
        # configures from its flags, then again from the config file's [logging])
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *([] if use_console else [structlog.processors.format_exc_info]),
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # botocore logs every retry at DEBUG and credentials lookups at INFO, and alembic each of
    # its plugins as it is imported: too chatty for info (alembic's migration steps still show)
    noisy_loggers = ("botocore", "aiobotocore", "urllib3", "keystoneauth", "stevedore")
    for noisy in (*noisy_loggers, "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
