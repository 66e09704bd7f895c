"""HTTPS between the agent and the receiver (issue 16): the real receiver served with the
certificate of [receiver] tls_cert_file/tls_key_file (made here, by a test CA), the agent's
real pusher verifying it against [push] ca_file, mutual TLS with tls_client_ca_file, and a
plain-HTTP client refused. Certificates are generated with `cryptography`."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from azfed.cli import main
from azfed.config import parse_config
from azfed.errors import ConfigError
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.agent.live_receiver import SECRET, LiveReceiver, serve_receiver
from tests.agent.test_epoch import observation
from tests.agent.test_push import AGENT, Pipeline


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)


_CA_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
    encipher_only=False, decipher_only=False,
)  # fmt: skip


def _ca(path: Path, cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _leaf(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    cn: str,
    usage: x509.ObjectIdentifier,
    cert_path: Path,
    key_path: Path,
) -> None:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        builder = builder.add_extension(san, critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca = _ca(d / "ca.crt", "azfed test CA")
    _ca(d / "other-ca.crt", "someone else's CA")
    _leaf(ca, "receiver", ExtendedKeyUsageOID.SERVER_AUTH, d / "server.crt", d / "server.key")
    _leaf(ca, AGENT, ExtendedKeyUsageOID.CLIENT_AUTH, d / "client.crt", d / "client.key")
    return Pki(
        d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key",
        d / "other-ca.crt",
    )  # fmt: skip


def _tls(pki: Pki, mutual: bool = False) -> dict[str, Any]:
    out = {"tls_cert_file": str(pki.server_cert), "tls_key_file": str(pki.server_key)}
    if mutual:
        out["tls_client_ca_file"] = str(pki.ca)
    return out


@pytest.fixture
async def https_receiver(tmp_path: Path, pki: Pki) -> AsyncIterator[LiveReceiver]:
    async with serve_receiver(tmp_path, {AGENT: SECRET}, **_tls(pki)) as rcv:
        yield rcv


async def _push_once(pipe: Pipeline, *, give_up_after: float | None = None) -> None:
    """Run the pusher until the spool is drained (or for `give_up_after` seconds of
    retrying), then stop it."""
    task = asyncio.create_task(pipe.pusher.run())
    try:
        await pipe.send(observation(3))
        if give_up_after is None:
            await pipe.until_drained()
        else:
            await asyncio.sleep(give_up_after)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_agent_delivers_over_https_verifying_the_receiver_against_its_ca_file(
    tmp_path: Path, pki: Pki, https_receiver: LiveReceiver
) -> None:
    """The pusher's session checks the receiver's certificate (signed by the test CA, for
    127.0.0.1) and its report is written."""
    assert https_receiver.url.startswith("https://127.0.0.1:")
    pipe = Pipeline(tmp_path / "agent", https_receiver.url, ca_file=str(pki.ca))
    await _push_once(pipe)
    assert https_receiver.faults.statuses() == [200]
    assert len(https_receiver.samples()) == 3


async def test_the_agent_refuses_a_receiver_its_ca_file_did_not_sign(
    tmp_path: Path, pki: Pki, https_receiver: LiveReceiver
) -> None:
    """Verification is on: with another CA the handshake fails, nothing is sent, the report
    stays spooled."""
    pipe = Pipeline(tmp_path / "agent", https_receiver.url, ca_file=str(pki.other_ca))
    await _push_once(pipe, give_up_after=1.0)
    assert https_receiver.faults.statuses() == []
    assert pipe.pusher.reachable is False
    assert len(pipe.spool) == 1


async def test_a_plain_http_client_is_refused(https_receiver: LiveReceiver) -> None:
    """The port speaks TLS only: a plain HTTP request gets no answer from the app."""
    plain = https_receiver.url.replace("https://", "http://")
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientError):
            async with http.get(plain + "/healthz") as resp:
                await resp.read()
    assert https_receiver.faults.statuses() == []


async def test_mutual_tls_needs_the_agents_client_certificate(tmp_path: Path, pki: Pki) -> None:
    """With tls_client_ca_file, an agent without a certificate signed by it cannot connect;
    with one ([push] client_cert_file/client_key_file) its report is accepted."""
    async with serve_receiver(tmp_path, {AGENT: SECRET}, **_tls(pki, mutual=True)) as rcv:
        anonymous = Pipeline(tmp_path / "anon", rcv.url, ca_file=str(pki.ca))
        await _push_once(anonymous, give_up_after=1.0)
        assert rcv.faults.statuses() == []
        assert anonymous.pusher.reachable is False
        signed = Pipeline(
            tmp_path / "cert", rcv.url, ca_file=str(pki.ca),
            client_cert_file=str(pki.client_cert), client_key_file=str(pki.client_key),
        )  # fmt: skip
        await _push_once(signed)
        assert rcv.faults.statuses() == [200]


def test_config_names_missing_tls_files_and_half_pairs(tmp_path: Path, pki: Pki) -> None:
    """`azfed config check` finds what TLS would fail on at start: the key and the file."""
    missing = tmp_path / "nope.crt"
    with pytest.raises(ConfigError) as err:
        parse_config({
            "receiver": {"secrets_dir": str(tmp_path), "sinks": ["null"],
                         "tls_cert_file": str(missing), "tls_client_ca_file": str(pki.ca)},
            "push": {"url": "http://r.example", "secret_file": "/x",
                     "ca_file": str(pki.ca), "client_cert_file": str(pki.client_cert)},
        })  # fmt: skip
    found = {(p.key, p.value) for p in err.value.problems}
    assert ("[receiver] tls_cert_file", str(missing)) in found  # unreadable
    assert ("[receiver] tls_key_file", None) in found  # half a pair
    assert ("[push] client_key_file", None) in found
    assert ("[push] ca_file", str(pki.ca)) in found  # with an http:// url
    reasons = " ".join(p.reason for p in err.value.problems)
    assert "cannot read it" in reasons


def test_a_certificate_that_is_not_pem_stops_either_process_at_start_naming_it(
    tmp_path: Path, pki: Pki
) -> None:
    """Readable, so `config check` passes; `azfed receiver run` and `azfed agent run` then
    exit with a message naming the file instead of a traceback."""
    bogus = tmp_path / "bogus.crt"
    bogus.write_text("not a certificate\n")
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    receiver = tmp_path / "receiver.toml"
    receiver.write_text(
        f'[receiver]\nsecrets_dir = "{tmp_path}"\nsinks = ["null"]\nport = 0\n'
        f'database_url = "sqlite:///{tmp_path / "state.db"}"\n'
        f'tls_cert_file = "{bogus}"\ntls_key_file = "{pki.server_key}"\n'
    )
    agent = tmp_path / "agent.toml"
    agent.write_text(
        f'[agent]\nid = "a1"\nprovider = "guest"\ninstance_uuid = "{uuid.uuid4()}"\n'
        f'[push]\nurl = "https://127.0.0.1:9"\nsecret_file = "{secret}"\nca_file = "{bogus}"\n'
        f'[spool]\npath = "{tmp_path / "spool"}"\n[health]\nport = 0\n'
    )
    runner = CliRunner()
    for args in (["receiver", "run", "--config", str(receiver)],
                 ["agent", "run", "--config", str(agent)]):  # fmt: skip
        result = runner.invoke(main, args)
        assert result.exit_code in {1, 3}, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert str(bogus) in result.stderr
