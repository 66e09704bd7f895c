"""The collector's clients share one TLS context per CA bundle (azfed.agent.collect.awstls)."""

from __future__ import annotations

from pathlib import Path

import certifi
from azfed.agent.collect.awstls import SharedTlsSession, tls_context, warm
from azfed.agent.collect.ec2 import Ec2Collector
from azfed.agent.health import AgentMetrics

from testbed.aws import MotoServer
from tests.agent.helpers import agent_config


async def test_two_sessions_share_the_context_warm_made() -> None:
    """Both clients' connectors get the very context made at start, with the CA bundle
    aiobotocore would load (certifi's, by default): no context is made in a cycle."""
    warm(True)
    made = tls_context(certifi.where())
    connectors = [SharedTlsSession(verify=True)._create_connector(None) for _ in range(2)]
    try:
        assert [c._ssl for c in connectors] == [made, made]
        assert made.cert_store_stats()["x509_ca"] > 0
    finally:
        for c in connectors:
            await c.close()


async def test_no_verification_and_a_proxy_keep_aiobotocores_own_way() -> None:
    """verify=False gives a connector without TLS verification, as aiobotocore's does."""
    connector = SharedTlsSession(verify=False)._create_connector(None)
    try:
        assert connector._ssl is False
    finally:
        await connector.close()


async def test_the_collectors_clients_use_the_shared_session(
    aws: MotoServer, tmp_path: Path
) -> None:
    """The EC2 collector's clients are built with SharedTlsSession and still answer."""
    cfg = agent_config(aws, tmp_path, meters=["cpu"])
    assert cfg.aws is not None
    col = Ec2Collector(cfg.aws, cfg.collect, AgentMetrics())
    await col.open()
    try:
        for client in (col._ec2, col._cw):
            assert isinstance(client._endpoint.http_session, SharedTlsSession)
        assert "Reservations" in await col._ec2.describe_instances()
    finally:
        await col.close()
