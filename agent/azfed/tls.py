"""TLS contexts for the report channel: the receiver serves HTTPS, the agent verifies it.

Both sides insist on TLS 1.2 or later. The paths come from config, which has already checked
that they are readable (`azfed config check`); what can still fail here is a file that is not
a certificate or key, which raises `TlsError` naming the file.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from azfed.errors import AzfedError


class TlsError(AzfedError):
    """A certificate, key or CA bundle could not be loaded: the message names the file; fix
    it (PEM, the key matching the certificate) and restart."""


def server_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """The receiver's HTTPS context; with `client_ca`, clients must present a certificate
    signed by it (mutual TLS)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(ctx, cert, key)
    if client_ca is not None:
        _load_ca(ctx, client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(
    ca_file: Path | None = None, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    """The agent's context: the receiver's certificate checked against `ca_file` (absent: the
    system's CAs) and its host name; `cert` and `key` are presented when the receiver asks."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file is not None:
        _load_ca(ctx, ca_file)
    if cert is not None and key is not None:
        _load_chain(ctx, cert, key)
    return ctx


def _load_chain(ctx: ssl.SSLContext, cert: Path, key: Path) -> None:
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as err:
        raise TlsError(
            f"cannot load the certificate {cert} with the key {key}: {err} (both must be PEM, "
            "and the key must be the certificate's)"
        ) from None


def _load_ca(ctx: ssl.SSLContext, ca_file: Path) -> None:
    try:
        ctx.load_verify_locations(cafile=ca_file)
    except (OSError, ssl.SSLError) as err:
        raise TlsError(f"cannot load the CA bundle {ca_file}: {err} (it must be PEM)") from None
