"""On the EC2 instance, at boot: refuse IMDSv1, then fetch the signing secret from SSM.

Run as root by the rendered boot script (`azfed cloud-init fetch-secret`). The secret goes
from SSM straight into a root-only file; it is never printed, logged or put in an exception.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

import aiohttp
from azfed.aws import AWS_CLIENT_DEFAULTS
from azfed.errors import AzfedError
from azfed.files import write_atomic

# botocore reads the same variable, so a test points both the check and the SDK at one place
IMDS_ENV = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
IMDS_DEFAULT = "http://169.254.169.254"


class SecretFetchError(AzfedError):
    """The secret could not be fetched safely; the message says what to change."""


async def require_imdsv2(timeout_s: float = 2.0) -> None:
    """Raise unless the metadata service refuses a request without a session token.

    A 401 to a token-less request is how IMDS says HttpTokens=required. With IMDSv1 on, any
    process that can be tricked into an HTTP GET (SSRF) can read the role's credentials.
    """
    endpoint = os.environ.get(IMDS_ENV, IMDS_DEFAULT).rstrip("/")
    url = f"{endpoint}/latest/meta-data/"
    try:
        status = await _status_of(url, timeout_s)
    except (aiohttp.ClientError, TimeoutError) as err:
        raise SecretFetchError(
            f"the instance metadata service at {endpoint} is unreachable ({err!r}): "
            "the instance role cannot be used; launch with the metadata service enabled"
        ) from None
    if status != 401:
        raise SecretFetchError(
            f"the instance metadata service at {endpoint} answers without a token "
            f"(HTTP {status}): IMDSv1 is on. Require IMDSv2: aws ec2 "
            "modify-instance-metadata-options --http-tokens required --instance-id <id>"
        )


async def _status_of(url: str, timeout_s: float) -> int:
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as resp:
        return resp.status


async def fetch_secret(parameter: str, region: str, out: Path) -> int:
    """Write the SecureString `parameter` to `out` (mode 0600); return its length in bytes."""
    import aioboto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    # at boot, a short read timeout: GetParameter answers fast or not at all
    config = Config(**replace(AWS_CLIENT_DEFAULTS, read_timeout_s=10.0).botocore_kwargs())
    try:
        async with aioboto3.Session().client("ssm", region_name=region, config=config) as ssm:
            answer = await ssm.get_parameter(Name=parameter, WithDecryption=True)
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "Unknown")
        raise SecretFetchError(
            f"SSM GetParameter {parameter} in {region} failed ({code}): check the parameter "
            "exists and the instance role allows ssm:GetParameter (and kms:Decrypt) on it"
        ) from None
    except BotoCoreError as err:
        raise SecretFetchError(f"SSM GetParameter {parameter} in {region}: {err}") from None
    return _write_secret(answer["Parameter"], parameter, out)


def _write_secret(param: dict[str, str], name: str, out: Path) -> int:
    if param.get("Type") != "SecureString":
        raise SecretFetchError(
            f"SSM parameter {name} is a {param.get('Type')}, not a SecureString: "
            "store the secret encrypted (aws ssm put-parameter --type SecureString)"
        )
    data = param["Value"].encode()
    if not data:
        raise SecretFetchError(f"SSM parameter {name} is empty")
    out.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    # 0600 from the first byte: the secret is never readable by anyone else
    write_atomic(out, data)
    return len(data)


def run(parameter: str, region: str, out: Path) -> int:
    """The CLI's entry: the IMDS check, then the fetch, in one event loop."""

    async def both() -> int:
        await require_imdsv2()
        return await fetch_secret(parameter, region, out)

    return asyncio.run(both())
