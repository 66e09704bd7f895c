"""Running the receiver as a service: listen, tell systemd, feed the watchdog, and on stop
finish the reports in flight before closing sinks and store. Signals are the CLI's business:
it sets `stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

import structlog
from aiohttp import web
from azfed import systemd
from azfed.config import AzfedConfig, ReceiverSection
from azfed.heap import settle_heap
from azfed.receiver.app import RUNNER_KWARGS, create_app
from azfed.tls import server_context

log = structlog.get_logger(__name__)


def runner_kwargs(rcfg: ReceiverSection) -> dict[str, Any]:
    """aiohttp's server options for this receiver: an idle keep-alive connection is closed
    after `idle_timeout_s` (aiohttp has no header timeout: the body deadline is the app's)."""
    return {**RUNNER_KWARGS, "keepalive_timeout": rcfg.idle_timeout_s}


def ssl_context(rcfg: ReceiverSection) -> ssl.SSLContext | None:
    """The HTTPS context of `[receiver] tls_*`, or None for plain HTTP."""
    if rcfg.tls_cert_file is None or rcfg.tls_key_file is None:
        return None
    return server_context(rcfg.tls_cert_file, rcfg.tls_key_file, rcfg.tls_client_ca_file)


async def serve(config: AzfedConfig, stop: asyncio.Event) -> None:
    """Serve until `stop` is set, then shut down in stages within the configured deadline."""
    config.require("receiver")
    assert config.receiver is not None
    rcfg = config.receiver
    tls = ssl_context(rcfg)  # before anything opens: a bad certificate file stops us here
    runner = web.AppRunner(
        create_app(config),
        shutdown_timeout=rcfg.shutdown_timeout_s,
        **runner_kwargs(rcfg),
    )
    await runner.setup()  # runs cleanup_ctx: store open, sinks started
    # What exists now (modules, the app) lives as long as the process: keep the garbage
    # collector from scanning it on every full collection. Full collections happen while big
    # reports are parsed and hold the GIL: without this, /healthz stalls past 100 ms.
    settle_heap()
    site = web.TCPSite(runner, rcfg.host, rcfg.port, ssl_context=tls)
    await site.start()
    log.info("receiver.listening", host=rcfg.host, port=rcfg.port, sinks=list(rcfg.sinks),
             tls=rcfg.tls_cert_file is not None)  # fmt: skip
    systemd.notify(f"READY=1\nSTATUS=listening on {rcfg.host}:{rcfg.port}")
    dog = asyncio.create_task(systemd.watchdog())
    try:
        await stop.wait()
    finally:
        systemd.notify("STOPPING=1")
        log.info("receiver.stopping", deadline_s=rcfg.shutdown_timeout_s)
        # Stops accepting, waits for in-flight reports (up to shutdown_timeout), then closes
        # the sinks and the store, in that order.
        await runner.cleanup()
        dog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await dog
        log.info("receiver.stopped")
