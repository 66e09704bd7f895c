"""What every AWS client of azfed shares: its timeouts and retries, and AWS's throttle codes.

The agent's collectors (`[aws]` in its TOML), the proxy host's driver (nova.conf `[azfed]`), the
receiver's cleaner and the boot-time secret fetch all build their botocore `Config` from
`AwsClient`, so a default changed here changes everywhere. No boto import: `azfed.config` and
the Nova venv's option list read the defaults without loading botocore.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final


@dataclass(frozen=True)
class AwsClient:
    """Timeouts and retries of one AWS client, set explicitly rather than left to botocore.

    `max_attempts` counts every attempt (the first and its retries): botocore's
    `total_max_attempts`. Standard mode retries throttles, 5xx and connection errors with
    jittered backoff and a retry quota.
    """

    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    max_attempts: int = 5

    def botocore_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of botocore's (or aiobotocore's) `Config` for this client."""
        return {
            "connect_timeout": self.connect_timeout_s,
            "read_timeout": self.read_timeout_s,
            "retries": {"mode": "standard", "total_max_attempts": self.max_attempts},
        }


AWS_CLIENT_DEFAULTS: Final = AwsClient()

# Error codes AWS answers when it rate-limits a request (EC2 and CloudWatch).
THROTTLE_CODES: Final = frozenset(
    {"RequestLimitExceeded", "Throttling", "ThrottlingException", "TooManyRequestsException"}
)
