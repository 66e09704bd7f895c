"""The collector's faster paths through botocore (azfed.agent.collect.awsfast) against moto's
server: the same bodies sent, the same answers read, botocore's errors kept."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aioboto3
import pytest
from aiobotocore.parsers import AioResponseParserFactory
from azfed.agent.collect.awsfast import (
    EncodedQueries,
    FastParser,
    FastParserFactory,
    encode_metric_queries,
    urlencode_query,
)
from azfed.agent.collect.ec2 import Ec2Collector, fast_timestamp
from azfed.agent.health import AgentMetrics
from botocore.exceptions import ClientError
from botocore.parsers import ResponseParserError

from testbed.aws import MotoServer
from tests.agent.helpers import agent_config, launch, newest_complete, seed

Captured = list[tuple[dict[str, Any], Any]]


@pytest.fixture
async def collector(aws: MotoServer, tmp_path: Path) -> AsyncIterator[Ec2Collector]:
    """An open EC2 collector on moto: its clients are the ones with the fast paths."""
    cfg = agent_config(aws, tmp_path, meters=["cpu"])
    assert cfg.aws is not None
    col = Ec2Collector(cfg.aws, cfg.collect, AgentMetrics())
    await col.open()
    yield col
    await col.close()


def capture_responses(client: Any) -> Captured:
    """Every raw response the client gets, with the shape it is parsed as."""
    seen: Captured = []

    def keep(operation_model: Any, response_dict: dict[str, Any], **_: Any) -> None:
        seen.append((copy.deepcopy(response_dict), operation_model.output_shape))

    client.meta.events.register("before-parse", keep)
    return seen


def capture_bodies(client: Any) -> list[bytes]:
    """The body of every request the client sends, as sent."""
    bodies: list[bytes] = []

    def keep(request: Any, **_: Any) -> None:
        body = request.body
        bodies.append(body.encode() if isinstance(body, str) else body)

    client.meta.events.register("before-send", keep)
    return bodies


async def botocore_and_fast(protocol: str, response: dict[str, Any], shape: Any) -> tuple[Any, Any]:
    """The same response parsed by botocore's own parser and by the compiled one."""
    factory = AioResponseParserFactory()
    factory.set_parser_defaults(timestamp_parser=fast_timestamp)
    fast = FastParserFactory(AioResponseParserFactory())
    fast.set_parser_defaults(timestamp_parser=fast_timestamp)
    parser = fast.create_parser(protocol)
    assert isinstance(parser, FastParser)
    return (
        await factory.create_parser(protocol).parse(copy.deepcopy(response), shape),
        await parser.parse(copy.deepcopy(response), shape),
    )


async def test_ec2_answers_parse_as_botocore_parses_them(ec2: Any, collector: Ec2Collector) -> None:
    """DescribeInstances (tags, ENIs, volumes, one instance per reservation, a next
    page), DescribeInstanceStatus and DescribeInstanceTypes answers from moto read by the
    compiled parser are equal to botocore's reading, ResponseMetadata included."""
    await launch(ec2, 7, per_reservation=1)  # moto pages by reservation
    seen = capture_responses(collector._ec2)
    page = await collector._ec2.describe_instances(MaxResults=5)
    await collector._ec2.describe_instances(NextToken=page["NextToken"], MaxResults=5)
    await collector._ec2.describe_instance_status(MaxResults=5)
    await collector._ec2.describe_instance_types(InstanceTypes=["m5.large", "t3.micro"])
    assert [s.name for _, s in seen] == [
        "DescribeInstancesResult",
        "DescribeInstancesResult",
        "DescribeInstanceStatusResult",
        "DescribeInstanceTypesResult",
    ]
    for response, shape in seen:
        assert response["status_code"] == 200
        expected, got = await botocore_and_fast("ec2", response, shape)
        assert got == expected
    first, _ = seen[0]
    expected, _ = await botocore_and_fast("ec2", first, seen[0][1])
    instances = [i for r in expected["Reservations"] for i in r["Instances"]]
    # the answer compared has the parts the collector reads
    assert len(instances) == 5
    assert all(i["NetworkInterfaces"] and i["Tags"] for i in instances)
    assert "NextToken" in expected
    assert expected["ResponseMetadata"]["RequestId"]


async def test_the_compiled_parser_is_the_one_used_for_the_collectors_two_calls(
    ec2: Any, collector: Ec2Collector
) -> None:
    """DescribeInstances and GetMetricData compile (else the fast path would silently be
    botocore's and the test above would compare botocore with itself)."""
    await launch(ec2, 1)
    seen_ec2, seen_cw = capture_responses(collector._ec2), capture_responses(collector._cw)
    await collector._ec2.describe_instances()
    await collector._cw.get_metric_data(
        MetricDataQueries=[], StartTime=dt.datetime(2026, 1, 1), EndTime=dt.datetime(2026, 1, 2)
    )
    for protocol, (_, shape) in zip(("ec2", "query"), seen_ec2 + seen_cw, strict=True):
        fast = FastParserFactory(AioResponseParserFactory()).create_parser(protocol)
        assert fast._parse_of(shape) is not None, shape.name


def metric_queries(ids: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "Id": f"q{k}",
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/EC2",
                    "MetricName": "NetworkIn",
                    "Dimensions": [{"Name": "InstanceId", "Value": i}],
                },
                "Period": 300,
                "Stat": "Sum",
            },
            "ReturnData": True,
        }
        for k, i in enumerate(ids)
    ]


async def test_encoded_metric_queries_send_botocores_body_and_get_the_same_samples(
    aws: MotoServer, ec2: Any, collector: Ec2Collector
) -> None:
    """GetMetricData with the queries encoded by azfed sends the very bytes a plain aioboto3
    client sends for the same queries, and moto answers both with the same datapoints,
    parsed (by the compiled parser) as botocore parses them."""
    ids = list(await launch(ec2, 3))
    seed(aws, ids, ["NetworkIn"], points=2, period_s=300)
    end = dt.datetime.fromtimestamp(newest_complete(300) + 300, dt.timezone.utc)
    window = {"StartTime": end - dt.timedelta(hours=1), "EndTime": end}
    ours_sent = capture_bodies(collector._cw)
    ours_seen = capture_responses(collector._cw)
    encoded = encode_metric_queries(
        [(f"q{k}", "AWS/EC2", "NetworkIn", (("InstanceId", i),), 300, "Sum") for k, i in
         enumerate(ids)]
    )  # fmt: skip
    ours = await collector._cw.get_metric_data(MetricDataQueries=encoded, **window)
    async with aioboto3.Session().client("cloudwatch", **aws.client_kwargs()) as plain:
        theirs_sent = capture_bodies(plain)
        theirs = await plain.get_metric_data(MetricDataQueries=metric_queries(ids), **window)
    assert ours_sent == theirs_sent
    assert b"MetricDataQueries.member.3.MetricStat.Metric.Dimensions.member.1.Value" in ours_sent[0]
    assert [r["Values"] for r in ours["MetricDataResults"]] == [[1.0, 2.0]] * 3
    for key in ("Id", "Label", "StatusCode", "Values", "Timestamps"):
        assert [r[key] for r in ours["MetricDataResults"]] == [
            r[key] for r in theirs["MetricDataResults"]
        ]
    expected, got = await botocore_and_fast("query", *ours_seen[0])
    assert got == expected


async def test_a_refused_call_is_botocores_client_error(collector: Ec2Collector) -> None:
    """An error answer goes to botocore's parser: the ClientError, its code and message."""
    with pytest.raises(ClientError) as err:
        await collector._ec2.describe_instances(InstanceIds=["i-0123456789abcdef0"])
    assert err.value.response["Error"]["Code"] == "InvalidInstanceID.NotFound"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


async def test_a_2xx_answer_that_is_not_xml_is_botocores_parse_error(
    collector: Ec2Collector,
) -> None:
    """A success status with a body the compiled parser cannot read is botocore's to read,
    and botocore's error (which its retry handler knows) is what comes out."""
    shape = collector._ec2.meta.service_model.operation_model("DescribeInstances").output_shape
    response = {"status_code": 200, "headers": {}, "body": b"<html>proxy", "context": {}}
    fast = FastParserFactory(AioResponseParserFactory()).create_parser("ec2")
    with pytest.raises(ResponseParserError):
        await fast.parse(response, shape)


async def test_a_repeated_element_is_read_by_botocore() -> None:
    """Where botocore would gather a repeated element, the compiled parser hands the
    document to botocore rather than choose one itself: both answers are equal."""
    from botocore.session import get_session

    shape = (
        get_session().get_service_model("cloudwatch").operation_model("GetMetricData").output_shape
    )
    body = (
        b'<GetMetricDataResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/">'
        b"<GetMetricDataResult><MetricDataResults><member><Id>q0</Id><Id>q1</Id>"
        b"<Values><member>1.5</member></Values></member></MetricDataResults>"
        b"<NextToken>a</NextToken><NextToken>b</NextToken></GetMetricDataResult>"
        b"<ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></GetMetricDataResponse>"
    )
    response = {"status_code": 200, "headers": {"X-A": "b"}, "body": body, "context": {}}
    expected, got = await botocore_and_fast("query", response, shape)
    assert texts(got) == texts(expected)
    assert texts(got["NextToken"]) == ["a", "b"]  # botocore's reading: the elements


def texts(value: Any) -> Any:
    """botocore leaves the repeated elements as they are: compared by their text."""
    if isinstance(value, dict):
        return {k: texts(v) for k, v in value.items()}
    if isinstance(value, list):
        return [texts(v) for v in value]
    return getattr(value, "text", value)


@pytest.mark.parametrize(
    "params",
    [
        {"Action": "GetMetricData", "Version": "2010-08-01", "A.member.1": "AWS/EC2"},
        {"K": "a b+c&d=e", "Ü": "ü €", "N": 300, "F": 1.5, "T": "2026-01-01T00:00:00Z"},
        {"Empty": "", "Safe": "az-AZ_09.~"},
        {},
    ],
)
def test_a_query_body_is_encoded_as_urllib_encodes_it(params: dict[str, Any]) -> None:
    """botocore url-encodes a query body with urlencode(doseq=True); ours is the same text."""
    assert urlencode_query(params) == urlencode(params, doseq=True)


def test_encoded_queries_is_a_string_botocore_would_not_serialize() -> None:
    """The marker type the handlers look for, with an empty dimension list as botocore
    sends it (an empty value)."""
    encoded = encode_metric_queries([("q0", "CWAgent", "mem_used", (), 60, "Average")])
    assert isinstance(encoded, EncodedQueries)
    assert "MetricDataQueries.member.1.MetricStat.Metric.Dimensions=&" in encoded
