"""A sink that drops everything: the receiver's own overhead, for benchmarks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from azfed.receiver.sinks import Batch

if TYPE_CHECKING:
    from azfed.config import AzfedConfig
    from azfed.receiver.nova import NovaClient


class NullSink:
    name = "null"

    async def start(self) -> None:
        return None

    async def write(self, batch: Batch) -> None:
        return None

    async def check(self) -> None:
        return None

    async def close(self) -> None:
        return None


def from_config(config: AzfedConfig, nova: NovaClient | None) -> NullSink:
    return NullSink()
