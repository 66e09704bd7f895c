"""One TLS context per CA bundle for all of the collector's AWS clients, made at open.

aiobotocore builds a TLS context, and loads the whole CA bundle into it, for each client's
first request: twice (EC2, CloudWatch) in the agent's first cycle, 18 ms of CPU each, a tenth
of a 1,000-instance cycle (bench/bench_agent.py). `SharedTlsSession` is aiobotocore's aiohttp
session (`AioConfig(http_session_cls=...)`) with the same context made once per bundle and
shared; a proxy or a client certificate keeps aiobotocore's own way.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

import aiohttp
from aiobotocore.httpsession import AIOHTTPSession
from botocore.httpsession import create_urllib3_context, get_cert_path


@functools.cache
def tls_context(ca_certs: str | None) -> ssl.SSLContext:
    """The context aiobotocore would make for this CA bundle (None: the system's)."""
    context: ssl.SSLContext = create_urllib3_context()
    if ca_certs:
        context.load_verify_locations(ca_certs, None, None)
    return context


def warm(verify: bool | str = True) -> None:
    """Make the context now, at start, rather than in the first cycle."""
    tls_context(get_cert_path(verify))


class SharedTlsSession(AIOHTTPSession):  # type: ignore[misc]
    """aiobotocore's aiohttp session, its TLS context shared (see the module)."""

    def _create_connector(self, proxy_url: str | None) -> Any:
        if proxy_url or not self._verify or self._cert_file:
            return super()._create_connector(proxy_url)
        return aiohttp.TCPConnector(
            limit=self._max_pool_connections,
            ssl=tls_context(get_cert_path(self._verify)),
            **self._connector_args,
        )
