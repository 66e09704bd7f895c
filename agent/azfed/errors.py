"""The small error hierarchy every part of azfed raises.

Callers catch the narrowest class they can act on. The cloud backends retry `ThrottledError`
(and the OpenStack one `CloudUnavailableError`) with backoff inside each call, beyond botocore's
own retries; what still fails reaches the proxy host's driver. A spawn that fails with one of
`RESCHEDULABLE` (the AZ has no room for this type now) asks Nova for a reschedule: the boot's
next alternate host, which the scheduler's FederationWeigher put in the policy's fallback
order, gets it (another AZ); any other error aborts the build with the message as the
instance's fault. Outside spawn a `NotFoundError` becomes Nova's InstanceNotFound and any
other a NovaException carrying the message.
Messages are written for operators: they say what happened and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass


class AzfedError(Exception):
    """Base class of every error azfed raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: where it is, what was there, and why it is refused."""

    key: str
    value: object
    reason: str

    def __str__(self) -> str:
        return f"{self.key} = {self.value!r}: {self.reason}"


class InputError(AzfedError):
    """A file or document the operator wrote is invalid; lists every problem found."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s):\n{lines}")


class ConfigError(InputError):
    """An azfed TOML config file is invalid."""


class PolicyError(InputError):
    """A policy.json file is invalid."""


class CloudError(AzfedError):
    """A public-cloud call failed; the subclass says why (and its docstring what to do)."""

    def __init__(self, message: str, *, provider: str = "", code: str = "") -> None:
        self.provider = provider
        self.code = code
        super().__init__(message)


class CapacityError(CloudError):
    """The provider has no capacity for this instance type here now: try another AZ or type."""


class QuotaError(CloudError):
    """An account quota or limit is reached: raise it with the provider or free resources."""


class ThrottledError(CloudError):
    """The provider rate-limited us, and kept doing so through our retries: try again later."""


class NotFoundError(CloudError):
    """The remote resource does not exist (any more)."""


class PermanentError(CloudError):
    """The request is wrong and will keep failing (bad AMI, bad subnet, no permission)."""


# What another AZ may well not have: no capacity for the type, a limit reached, throttling that
# outlasted the retries. A spawn failing with one of these is rescheduled to the boot's next
# alternate (azfed.nova.driver); the others fail the same way anywhere.
RESCHEDULABLE: tuple[type[CloudError], ...] = (CapacityError, QuotaError, ThrottledError)
