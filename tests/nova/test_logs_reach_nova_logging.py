"""Inside Nova, azfed's structlog events become stdlib log records, which oslo.log's handlers on
the root logger write to Nova's file with Nova's format and request id.

oslo.log is not in this venv: a plain stdlib handler stands in for oslo.log's, which is all
oslo.log needs (it formats stdlib records). The bed's nova-compute and nova-scheduler logs show
the real thing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog
from azfed.nova import logs

UUID = "0b9e3f1c-4d2a-4c55-9d1e-2b7f6a0c8e11"


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """azfed's Nova set-up, with a handler on the root logger as oslo.log puts its own."""
    saved = structlog.get_config()
    root = logging.getLogger()
    level = root.level
    handler = Records()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logs.configure()
    try:
        yield handler.records
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        structlog.configure(**saved)


def test_an_event_is_one_record_of_the_modules_logger_with_its_fields(
    records: list[logging.LogRecord],
) -> None:
    structlog.get_logger("azfed.nova.proxy").warning(
        "receiver.unavailable", url="http://10.0.0.11:8790", error="timed out", attempts=3
    )
    [rec] = records
    assert rec.name == "azfed.nova.proxy"
    assert rec.levelno == logging.WARNING
    assert rec.getMessage() == (
        'receiver.unavailable url=http://10.0.0.11:8790 error="timed out" attempts=3'
    )


def test_an_instance_uuid_also_reaches_the_record_for_oslo_logs_instance_prefix(
    records: list[logging.LogRecord],
) -> None:
    structlog.get_logger("azfed.nova.driver").info("spawn.finished", instance_uuid=UUID)
    [rec] = records
    assert rec.__dict__["instance_uuid"] == UUID
    assert rec.getMessage() == f"spawn.finished instance_uuid={UUID}"


def test_an_exception_carries_its_traceback_to_the_handler(
    records: list[logging.LogRecord],
) -> None:
    try:
        raise ValueError("no such flavor")
    except ValueError:
        structlog.get_logger("azfed.nova.driver").exception("spawn.failed", instance_uuid=UUID)
    [rec] = records
    assert rec.levelno == logging.ERROR
    assert rec.exc_info is not None
    assert rec.exc_info[0] is ValueError
    assert rec.getMessage() == f"spawn.failed instance_uuid={UUID}"


def test_the_stdlib_level_nova_set_decides_what_is_logged(
    records: list[logging.LogRecord],
) -> None:
    log = structlog.get_logger("azfed.policy")
    log.debug("policy.loaded")
    log.info("placement.decided", rule="below_burst")
    assert [r.getMessage() for r in records] == ["placement.decided rule=below_burst"]
