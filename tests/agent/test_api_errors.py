"""azfed_agent_api_errors counts the EC2 collector's API calls that failed for good.

A call that botocore retried into success is not an error; one that was refused, throttled
past every attempt, or never answered is counted once, under its API and action.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from azfed.agent.collect.ec2 import Ec2Collector
from azfed.agent.health import AgentMetrics
from azfed.config import AzfedConfig
from botocore.exceptions import ClientError, EndpointConnectionError

from testbed.aws import MotoServer
from tests.agent.helpers import agent_config, launch

ERRORS = "azfed_agent_api_errors_total"


async def one_cycle(cfg: AzfedConfig) -> tuple[Ec2Collector, BaseException | None]:
    assert cfg.aws is not None
    col = Ec2Collector(cfg.aws, cfg.collect, AgentMetrics())
    await col.open()
    try:
        await col.collect()
    except Exception as err:  # the test inspects which error ended the cycle
        return col, cause(err)
    finally:
        await col.close()
    return col, None


def with_aws(cfg: AzfedConfig, **changes: Any) -> AzfedConfig:
    assert cfg.aws is not None
    return cfg.model_copy(update={"aws": cfg.aws.model_copy(update=changes)})


def cause(err: BaseException) -> BaseException:
    """The one error inside the cycle's TaskGroup."""
    inner: tuple[BaseException, ...] = getattr(err, "exceptions", ())
    return cause(inner[0]) if len(inner) == 1 else err


def errors(col: Ec2Collector, api: str, action: str) -> float:
    return col.metrics.registry.get_sample_value(ERRORS, {"api": api, "action": action}) or 0.0


async def test_a_refused_call_is_counted_once(aws: MotoServer, tmp_path: Path) -> None:
    """An UnauthorizedOperation (not retried) ends the cycle and counts one error."""
    aws.fault("DescribeInstances", "UnauthorizedOperation", status=403, times=1)
    col, err = await one_cycle(agent_config(aws, tmp_path, meters=["network.incoming.bytes"]))
    assert isinstance(err, ClientError)
    assert errors(col, "ec2", "DescribeInstances") == 1


async def test_throttling_past_every_attempt_is_an_error_throttling_retried_into_success_is_not(
    aws: MotoServer, ec2: Any, tmp_path: Path
) -> None:
    """With max_attempts = 2, one throttle is absorbed by the retry; two are not."""
    await launch(ec2, 3)  # instances to query metrics for; no datapoints needed
    cfg = with_aws(agent_config(aws, tmp_path, meters=["network.incoming.bytes"]), max_attempts=2)

    aws.fault("GetMetricData", "Throttling", status=400, times=1)
    col, err = await one_cycle(cfg)
    assert err is None
    assert errors(col, "cloudwatch", "GetMetricData") == 0

    aws.fault("GetMetricData", "Throttling", status=400, times=2)
    col, err = await one_cycle(cfg)
    assert isinstance(err, ClientError)
    assert errors(col, "cloudwatch", "GetMetricData") == 1
    throttles = col.metrics.registry.get_sample_value(
        "azfed_agent_api_throttles_total", {"api": "cloudwatch", "action": "GetMetricData"}
    )
    assert throttles == 2


async def test_an_endpoint_that_never_answers_is_counted(aws: MotoServer, tmp_path: Path) -> None:
    """No HTTP answer at all (connection refused) is an error of the call that was attempted."""
    cfg = agent_config(aws, tmp_path, meters=["network.incoming.bytes"])
    col, err = await one_cycle(with_aws(cfg, endpoint_url="http://127.0.0.1:9", max_attempts=1))
    assert isinstance(err, EndpointConnectionError)
    assert errors(col, "ec2", "DescribeInstances") == 1
