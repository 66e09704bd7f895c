"""What the proxy host tells the receiver about its boots: one that failed for lack of capacity
(or a limit, or throttling) in its public AZ, so the scheduler's policy backs that AZ off for
the flavor (POST /v1/capacity-events; docs/policy.md, "Capacity fallback").

Nova-free (the stdlib and azfed.wire), so it is tested against the real receiver outside Nova.
The POST is signed as the agents sign their reports, with this host's writer id and secret. It
runs in the driver's spawn, on Nova's thread: a short timeout, and a receiver that does not
take it costs a log line, never the boot (it is rescheduled whatever the receiver says).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from azfed import wire
from azfed.errors import ConfigError, Problem
from azfed.policy.capacity_source import CAPACITY_EVENTS_PATH

TIMEOUT_S = 2.0
REASON_MAX = 1000  # the receiver's limit


def read_secret(path: str | Path) -> bytes:
    """The writer's secret, or ConfigError naming the file and what to do."""
    try:
        secret = Path(path).read_bytes().strip()
    except OSError as err:
        raise ConfigError(
            "[azfed]", [Problem("receiver_secret_file", str(path), f"unreadable: {err}")]
        ) from None
    if len(secret) < wire.MIN_SECRET_BYTES:
        why = f"shorter than {wire.MIN_SECRET_BYTES} bytes: write one with openssl rand -hex 32"
        raise ConfigError("[azfed]", [Problem("receiver_secret_file", str(path), why)])
    return secret


class CapacityReporter:
    """`failed(...)` / `launched(...)`: report one boot's outcome; True once the receiver
    kept it."""

    def __init__(  # noqa: PLR0917 - where, who, the secret, and the two knobs
        self,
        base_url: str,
        writer_id: str,
        secret: bytes,
        log: Any,
        timeout_s: float = TIMEOUT_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = base_url.rstrip("/") + CAPACITY_EVENTS_PATH
        self.writer_id, self.secret, self.log = writer_id, secret, log
        self.timeout_s, self.clock = timeout_s, clock

    def failed(
        self, instance_uuid: str, az: str, flavor: str, instance_type: str, reason: str
    ) -> bool:
        """Report a boot that failed for lack of capacity (a limit, throttling): `reason`."""
        return self._report(instance_uuid, az, flavor, instance_type, "failed", reason)

    def launched(self, instance_uuid: str, az: str, flavor: str, instance_type: str) -> bool:
        """Report a boot that launched: the AZ's failure streak for the flavor is over."""
        return self._report(instance_uuid, az, flavor, instance_type, "launched", None)

    def _report(  # noqa: PLR0917 - the event's fields
        self,
        instance_uuid: str,
        az: str,
        flavor: str,
        instance_type: str,
        outcome: str,
        reason: str | None,
    ) -> bool:
        now = self.clock()
        event: dict[str, Any] = {
            "instance_uuid": instance_uuid,
            "az": az,
            "flavor": flavor,
            "instance_type": instance_type[:64],
            "outcome": outcome,
            "at": now,
        }
        if reason is not None:
            event["reason"] = reason[:REASON_MAX]
        return self._post(event, f"{instance_uuid}:{az}:{outcome}", now)

    def _post(self, event: dict[str, Any], key: str, now: float) -> bool:
        body = json.dumps(event).encode()
        ts = int(now)
        headers = {
            "Content-Type": "application/json",
            wire.HEADER_KEY: key,
            wire.HEADER_AGENT: self.writer_id,
            wire.HEADER_TIMESTAMP: str(ts),
            wire.HEADER_SIGNATURE: wire.sign(self.secret, "POST", CAPACITY_EVENTS_PATH, ts, body),
        }
        # the URL is the operator's [azfed] receiver_url: http(s), as for get_info
        request = urllib.request.Request(  # noqa: S310
            self.url, data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:  # noqa: S310
                answer = json.load(resp)
        except urllib.error.HTTPError as err:
            detail = err.read()[:500].decode("utf-8", "replace")
            self._failed(event, f"HTTP {err.code}: {detail}")
            return False
        except (OSError, ValueError) as err:  # unreachable, timed out, or not JSON
            self._failed(event, str(err))
            return False
        self.log.info("capacity.reported", url=self.url, id=answer.get("id"), az=event["az"],
                      flavor=event["flavor"], instance_uuid=event["instance_uuid"])  # fmt: skip
        return True

    def _failed(self, event: dict[str, Any], error: str) -> None:
        # the boot is rescheduled anyway; the next boots may try the AZ again too soon
        self.log.warning("capacity.report_failed", url=self.url, error=error, az=event["az"],
                         flavor=event["flavor"], instance_uuid=event["instance_uuid"])  # fmt: skip
