"""Faster paths through botocore for the collector's two hot calls, same answers.

At 10k instances most of a cycle's CPU was botocore's, not azfed's (bench/bench_agent.py):
walking the API model node by node to turn each XML answer into dicts, and url-encoding each
GetMetricData body twice (SigV4 prepares the request to hash its body, then the endpoint
prepares it again). This module changes neither what is sent nor what is returned:

- `FastParserFactory` answers a successful (below 301, as botocore
  reads it) query/ec2-protocol response with a parser
  compiled once per output shape from the same model, giving the dict botocore's own parser
  gives (tested equal on moto's answers). Errors, and anything the compiled parser does not
  cover (maps, flattened lists, XML attributes, a repeated element where one is expected, XML
  it cannot read), go to botocore's parser, so error codes, retries and `ClientError` are
  botocore's own.
- `encode_body_once` url-encodes a query body when the request is created, before SigV4
  signs it, so both later preparations take the string as is.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus
from xml.etree import ElementTree as ETree

from azfed.errors import AzfedError

Parse = Callable[[Any], Any]

# botocore's parsers skip members read from headers, the status code or the URI
KNOWN_LOCATIONS = frozenset({"header", "headers", "statusCode", "uri", "querystring"})
# urllib's quote_plus leaves these as they are: a string of them only needs no quoting
_UNQUOTED = re.compile(r"[A-Za-z0-9_.~-]*")


class Unsupported(AzfedError):
    """A shape the compiled parser does not cover: botocore's parser takes it."""


class Fallback(AzfedError):
    """A document the compiled parser cannot read as botocore would: botocore's parser reads it."""


_local_names: dict[str, str] = {}


def local_name(tag: str) -> str:
    """`{namespace}name` -> `name` (botocore strips the namespace the same way)."""
    name = _local_names.get(tag)
    if name is None:
        name = _local_names[tag] = tag.rpartition("}")[2]
    return name


def _text(node: Any) -> str:
    return node.text or ""


class ShapeCompiler:
    """Compiles an output shape into a function of an XML element, as botocore's
    `BaseXMLResponseParser` would parse it with the given timestamp and blob parsers."""

    def __init__(self, timestamp_parser: Parse, blob_parser: Parse) -> None:
        self._scalars: dict[str, Parse] = {
            "string": _text,
            "character": _text,
            "integer": lambda n: int(_text(n)),
            "long": lambda n: int(_text(n)),
            "float": lambda n: float(_text(n)),
            "double": lambda n: float(_text(n)),
            "boolean": lambda n: _text(n) == "true",
            "timestamp": lambda n: timestamp_parser(_text(n)),
            "blob": lambda n: blob_parser(_text(n)),
        }
        self._depth = 0

    def compile(self, shape: Any) -> Parse:
        if shape.type_name in self._scalars:
            return self._scalars[shape.type_name]
        self._depth += 1
        try:
            if self._depth > 32:  # a recursive shape: left to botocore
                raise Unsupported(shape.name)
            if shape.type_name == "list":
                return self._list(shape)
            if shape.type_name == "structure":
                return self._structure(shape)
            raise Unsupported(f"{shape.name}: {shape.type_name}")
        finally:
            self._depth -= 1

    def _list(self, shape: Any) -> Parse:
        if shape.serialization.get("flattened"):
            raise Unsupported(f"{shape.name}: flattened list")
        item = self.compile(shape.member)
        return lambda node: [item(child) for child in node]

    def _structure(self, shape: Any) -> Parse:
        if shape.metadata.get("exception") or shape.is_tagged_union:
            raise Unsupported(f"{shape.name}: exception or union")
        fields: dict[str, tuple[str, Parse]] = {}
        for name, member in shape.members.items():
            ser = member.serialization
            if ser.get("location") in KNOWN_LOCATIONS or ser.get("eventheader"):
                continue
            if ser.get("xmlAttribute"):
                raise Unsupported(f"{shape.name}.{name}: XML attribute")
            fields[ser.get("name", name)] = (name, self.compile(member))

        # the same fields by the tags as they come, namespace included (a few per document)
        by_tag: dict[str, tuple[str, Parse] | None] = {}

        def parse(node: Any) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for child in node:
                tag = child.tag
                try:
                    field = by_tag[tag]
                except KeyError:
                    field = by_tag[tag] = fields.get(local_name(tag))
                if field is None:
                    continue
                name, value = field
                if name in out:  # botocore makes a list of the repeats: its rules, not ours
                    raise Fallback(name)
                out[name] = value(child)
            return out

        return parse


def compile_output(
    shape: Any, protocol: str, timestamp_parser: Parse, blob_parser: Parse
) -> Callable[[bytes], dict[str, Any]]:
    """The whole-document parse of a 2xx answer of `shape`, with botocore's ResponseMetadata
    (RequestId) but without the HTTP status and headers, which the caller adds."""
    body = ShapeCompiler(timestamp_parser, blob_parser).compile(shape)
    wrapper = shape.serialization.get("resultWrapper")

    def parse(xml: bytes) -> dict[str, Any]:
        try:
            # the parser botocore itself builds for the same answers (expat: no external
            # entities; AWS over TLS is the source, as for botocore)
            parser = ETree.XMLParser(target=ETree.TreeBuilder(), encoding="utf-8")  # noqa: S314
            parser.feed(xml)
            root = parser.close()
        except ETree.ParseError as err:
            raise Fallback("not XML") from err
        children: dict[str, Any] = {}
        for child in root:
            name = local_name(child.tag)
            if name in children:
                raise Fallback(name)
            children[name] = child
        start: Any = root if wrapper is None else children.get(wrapper)
        if start is None:
            raise Fallback(f"no {wrapper}")
        parsed: dict[str, Any] = body(start)
        if protocol == "ec2":
            request_id = children.get("requestId")
            if request_id is not None:
                parsed["ResponseMetadata"] = {"RequestId": request_id.text}
        else:
            meta = children.get("ResponseMetadata")
            if meta is not None:
                parsed["ResponseMetadata"] = {local_name(c.tag): c.text for c in meta}
        return parsed

    return parse


class FastParser:
    """botocore's parser for one protocol, with compiled parses of 2xx answers in front."""

    def __init__(self, inner: Any, protocol: str, compiled: dict[int, Any]) -> None:
        self._inner = inner
        self._protocol = protocol
        self._compiled = compiled  # shared by the factory's parsers: id(shape) -> (shape, parse)

    def _parse_of(self, shape: Any) -> Callable[[bytes], dict[str, Any]] | None:
        entry = self._compiled.get(id(shape))
        if entry is None:
            try:
                parse = compile_output(
                    shape, self._protocol, self._inner._timestamp_parser, self._inner._blob_parser
                )
            except Unsupported:
                parse = None
            # the shape is kept with its parse so its id is never reused for another one
            entry = self._compiled[id(shape)] = (shape, parse)
        return entry[1]

    async def parse(self, response: dict[str, Any], shape: Any) -> Any:
        status = response["status_code"]
        body = response.get("body")
        # botocore reads anything below 301 as an answer, the rest as an error
        if shape is not None and status < 301 and isinstance(body, bytes):
            fast = self._parse_of(shape)
            if fast is not None:
                try:
                    parsed = fast(body)
                except Fallback:
                    pass
                else:
                    meta = parsed.setdefault("ResponseMetadata", {})
                    meta["HTTPStatusCode"] = status
                    meta["HTTPHeaders"] = {k.lower(): v for k, v in response["headers"].items()}
                    self._inner._add_checksum_response_metadata(response, meta)
                    return parsed
        return await self._inner.parse(response, shape)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class FastParserFactory:
    """A botocore parser factory (aiobotocore's, given) answering `FastParser`s for the query
    and ec2 protocols: the session's `response_parser_factory` component."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._compiled: dict[int, Any] = {}

    def set_parser_defaults(self, **kwargs: Any) -> None:
        self._inner.set_parser_defaults(**kwargs)

    def create_parser(self, protocol_name: str) -> Any:
        inner = self._inner.create_parser(protocol_name)
        if protocol_name not in ("query", "ec2"):
            return inner
        return FastParser(inner, protocol_name, self._compiled)


@functools.lru_cache(maxsize=4096)
def _quote_text(text: str) -> str:
    return text if _UNQUOTED.fullmatch(text) else quote_plus(text)


def _quote(value: object) -> str:
    return _quote_text(value if isinstance(value, str) else str(value))


def urlencode_query(params: dict[str, Any]) -> str:
    """`urllib.parse.urlencode(params, doseq=True)` for a query-protocol body (scalar values
    only, as botocore's query serializer makes them), quoting only what needs it."""
    return "&".join(f"{_quote(k)}={_quote(v)}" for k, v in params.items())


def encode_body_once(request: Any, **_: Any) -> None:
    """request-created handler, run before the signer: the body as the string botocore's
    preparer would make of it, so neither SigV4's read nor the send encodes it again."""
    if isinstance(request.data, dict) and all(
        not isinstance(v, list | tuple | bytes) for v in request.data.values()
    ):
        request.data = urlencode_query(request.data)


# --- GetMetricData's queries, encoded once --------------------------------------------------

# one metric query: Id, namespace, metric name, dimensions, period, statistic
MetricQuery = tuple[str, str, str, tuple[tuple[str, str], ...], int, str]
# where the queries wait, in botocore's per-call context, between the two handlers below
_QUERIES_KEY = "azfed_encoded_metric_queries"


class EncodedQueries(str):
    """GetMetricData's MetricDataQueries already in query-protocol form, as botocore's
    serializer and url-encoding would make them of the same queries (`encode_metric_queries`).
    Passed as `MetricDataQueries`, it is put into the body as it is."""


def encode_metric_queries(queries: list[MetricQuery]) -> EncodedQueries:
    """The body fragment of these queries, each `MetricStat` with `ReturnData` true.

    botocore walks the API model for every value of every query (16 values each), then
    url-encodes each: 500 queries cost more than parsing their answer."""
    parts = []
    for n, (qid, namespace, metric, dims, period, stat) in enumerate(queries, 1):
        p = f"MetricDataQueries.member.{n}."
        m = f"{p}MetricStat.Metric."
        parts.append(
            f"{p}Id={_quote(qid)}&{m}Namespace={_quote(namespace)}&{m}MetricName={_quote(metric)}"
        )
        if not dims:  # botocore sends an empty list as an empty value
            parts.append(f"{m}Dimensions=")
        for d, (name, value) in enumerate(dims, 1):
            parts.append(
                f"{m}Dimensions.member.{d}.Name={_quote(name)}&"
                f"{m}Dimensions.member.{d}.Value={_quote(value)}"
            )
        parts.append(
            f"{p}MetricStat.Period={period}&{p}MetricStat.Stat={_quote(stat)}&{p}ReturnData=true"
        )
    return EncodedQueries("&".join(parts))


def take_encoded_queries(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    """before-parameter-build handler: encoded queries skip the serializer (put back by
    `put_encoded_queries`); anything else is botocore's to serialize."""
    if isinstance(params.get("MetricDataQueries"), EncodedQueries):
        context[_QUERIES_KEY] = params.pop("MetricDataQueries")


def put_encoded_queries(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    """before-call handler: the serialized body with the encoded queries where botocore puts
    MetricDataQueries (after Action and Version, when they are the call's first argument)."""
    queries = context.pop(_QUERIES_KEY, None)
    if queries is None:
        return
    body = params["body"]
    head = {k: body.pop(k) for k in ("Action", "Version") if k in body}
    params["body"] = "&".join(
        part for part in (urlencode_query(head), queries, urlencode_query(body)) if part
    )


def register_fast_paths(client: Any) -> None:
    """Install this module's request handlers on one aiobotocore client."""
    events = client.meta.events
    service = client.meta.service_model.service_id.hyphenize()
    # before the signer, which is registered on the same event: the body is encoded once
    events.register_first(f"request-created.{service}", encode_body_once)
    events.register(f"before-parameter-build.{service}.GetMetricData", take_encoded_queries)
    events.register(f"before-call.{service}.GetMetricData", put_encoded_queries)
