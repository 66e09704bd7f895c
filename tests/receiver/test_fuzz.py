"""A signed fuzz of POST /v1/reports (issue 16, item 2). Hypothesis makes validly signed
requests: reports generated whole (around the receiver's horizons, two agents sharing a few
instances, seqs that collide) and mutations of the contract's examples (tests/data/wire: a value
replaced by any JSON, a member dropped or added, the body's text cut or edited). Each goes to the
real app (create_app with the in-memory sink, a SQLite store). No answer is a 5xx, every answer
is a documented one, and a 4xx leaves the sink and the store exactly as they were.

The budget is fixed and the run derandomized, so `make test` runs the same cases every time."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from azfed import wire
from azfed.receiver import openapi
from azfed.receiver.app import RUNNER_KWARGS, STORE, create_app
from azfed.receiver.store import agents, instances, reports
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tests.receiver.conftest import (
    AGENT,
    DATA,
    NOW,
    OTHER_AGENT,
    OTHER_SECRET,
    SECRET,
    example,
    make_config,
)
from tests.receiver.memory_sink import MemorySink

SECRETS = {AGENT: SECRET, OTHER_AGENT: OTHER_SECRET}
EXAMPLES = sorted(p.stem for p in DATA.glob("*.json"))
# What POST /v1/reports may answer a validly signed request: what openapi.json documents
# below 500, but 401 (the signature is right) and 408/429 (one request at a time, sent at once).
_RESPONSES = openapi.document()["paths"][wire.REPORTS_PATH]["post"]["responses"]
DOCUMENTED = {int(code) for code in _RESPONSES if int(code) < 500} - {401, 408, 429}
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

NASTY_STRINGS = [
    "",
    "\ud800",
    "\udfff",
    "\x00",
    "\n",
    "\x1b[2J",
    "\x85",
    "\u2028",
    "é😀",
    "x" * 300,
    "6f1c7a52-3b1e-4c2a-9d1e-0a5b8e2f4c11\n",
    "6F1C7A52-3B1E-4C2A-9D1E-0A5B8E2F4C11",
    "10.0.0.1/24",
    "010.0.0.1",
    "fe80::1%eth0",
    "::1",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "2025-02-30T00:00:00Z",
    "2025-01-15T12:00:00+14:00",
]
NASTY_NUMBERS = [
    10**400,
    -(10**400),
    2**53,
    2**63,
    2**64,
    -1,
    0,
    12345.0,
    1e18,
    1e308,
    -0.0,
    5e-324,
]

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**25), max_value=10**25),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(NASTY_STRINGS),
    st.sampled_from(NASTY_NUMBERS),
)
json_values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def _iso(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.timezone.utc).isoformat().replace("+00:00", "Z")


# --- reports generated whole ---------------------------------------------------------------

# each agent's own instances, and one both report (403 for the second)
POOL = {
    agent: [f"00000000-0000-4000-8000-0000000000{n}{i}" for i in range(3)]
    for n, agent in enumerate(SECRETS)
}
SHARED = "00000000-0000-4000-8000-000000000099"
DAY = 86400


def _mostly(
    usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any], one_in: int = 20
) -> st.SearchStrategy[Any]:
    """`rare` once in `one_in` draws: a generated report should often be a valid one."""
    # hypothesis leans to a range's ends: the middle value is the rare one
    pick = st.integers(0, one_in - 1)
    return st.tuples(pick, usual, rare).map(lambda t: t[2] if t[0] == one_in // 2 else t[1])


# mostly within the last hour; now and then either side of either horizon (7 days, 300 s)
EDGES = [-7 * DAY - 1, -7 * DAY + 1, 299, 301, -30 * 365 * DAY]
times = _mostly(st.integers(-3600, 0), st.sampled_from(EDGES)).map(lambda d: _iso(NOW + d))
ips = _mostly(st.ip_addresses().map(str), st.sampled_from(NASTY_STRINGS))
ids = _mostly(st.from_regex(r"[a-z0-9-]{1,20}", fullmatch=True), st.sampled_from(NASTY_STRINGS))


@st.composite
def instance_dicts(draw: st.DrawFn, uuid: str) -> dict[str, Any]:
    return {
        "instance_uuid": uuid,
        "provider": draw(st.sampled_from(wire.PROVIDERS)),
        "remote_id": draw(ids),
        "state": draw(st.sampled_from(wire.STATES)),
        "ips": {
            "private": draw(st.lists(ips, max_size=2)),
            "public": draw(st.lists(ips, max_size=2)),
        },
        "instance_type": draw(st.none() | ids),
        "az": draw(st.none() | ids),
        "launched_at": draw(st.none() | times),
        "status_checks": draw(st.sampled_from([*wire.STATUS_CHECKS, None])),
        "observed_at": draw(times),
    }


@st.composite
def sample_dicts(draw: st.DrawFn, uuids: list[str]) -> dict[str, Any]:
    """A contract version 2 sample: mostly right, sometimes the wrong unit, type, resource
    type or device."""
    meter = draw(st.sampled_from(wire.ALL_METERS))
    fact = wire.METERS[meter]
    usual = st.floats(min_value=0, max_value=1e12) | st.integers(0, wire.MAX_VOLUME)
    volume = draw(_mostly(usual, st.sampled_from(NASTY_NUMBERS)))
    out = {
        "instance_uuid": draw(st.sampled_from(uuids)),
        "resource_type": draw(_mostly(st.just(fact.resource_type),
                                      st.sampled_from(wire.RESOURCE_TYPES))),
        "meter": meter,
        "unit": draw(_mostly(st.just(fact.unit), st.sampled_from(["B", "%", "ns"]))),
        "type": draw(_mostly(st.just(fact.type), st.sampled_from(["gauge", "delta"]))),
        "volume": volume,
        "timestamp": draw(times),
    }  # fmt: skip
    if draw(_mostly(st.just(fact.resource_type != "instance"), st.booleans())):
        out["device"] = draw(_mostly(st.sampled_from(["vda", "eni-0a1b2c"]), st.text(max_size=70)))
    return out


@st.composite
def v1_sample_dicts(draw: st.DrawFn, uuids: list[str]) -> dict[str, Any]:
    """A contract version 1 sample, as agents not yet upgraded send them."""
    meter = draw(st.sampled_from(sorted(wire.V1_METERS)))
    unit, kind = wire.V1_METERS[meter]
    return {
        "resource_id": draw(st.sampled_from(uuids)),
        "meter": meter,
        "unit": unit,
        "type": kind,
        "volume": draw(st.floats(min_value=0, max_value=1e12)),
        "timestamp": draw(times),
    }


@st.composite
def generated_reports(draw: st.DrawFn) -> dict[str, Any]:
    agent = draw(st.sampled_from(sorted(SECRETS)))
    uuid = _mostly(st.sampled_from(POOL[agent]), st.just(SHARED), one_in=10)
    uuids = draw(st.lists(uuid, min_size=1, max_size=3, unique=True))
    insts = [draw(instance_dicts(u)) for u in uuids]
    version = draw(_mostly(st.just(wire.CONTRACT_VERSION), st.just(1)))
    samples = v1_sample_dicts if version == 1 else sample_dicts
    report = {
        "version": version,
        "agent_id": agent,
        "seq": _UNSET,
        "sent_at": draw(times),
        "instances": insts,
        "samples": draw(st.lists(samples(uuids), max_size=4)),
    }
    _set_seq(draw, report)
    return report


_UNSET = -987_654_321


def _set_seq(draw: st.DrawFn, report: dict[str, Any]) -> None:
    """Mostly a seq of its own (from the body: one body, one key); one time in ten, one of
    0-3, which other bodies take too (a repeat, or a key conflict)."""
    digest = hashlib.sha256(json.dumps(report).encode()).hexdigest()
    report["seq"] = draw(_mostly(st.just(int(digest[:12], 16)), st.integers(0, 3), one_in=10))


# --- mutations of the examples -------------------------------------------------------------


def _slots(obj: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) of `obj`, the root's members first."""
    out: list[tuple[Any, Any]] = []
    stack = [obj]
    while stack:
        node = stack.pop()
        keys = list(node) if isinstance(node, dict) else range(len(node))
        for k in keys:
            out.append((node, k))
            if isinstance(node[k], dict | list):
                stack.append(node[k])
    return out


@st.composite
def mutated_reports(draw: st.DrawFn) -> dict[str, Any]:
    data = example(draw(st.sampled_from(EXAMPLES)))
    report = data.get("report", data)  # a bad-*.json wraps its report with the expected problem
    if "seq" in report:  # else every mutation of one example would reuse its key
        report["seq"] = _UNSET
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        slots = _slots(report)
        if not slots:
            break
        container, key = draw(st.sampled_from(slots))
        op = draw(st.sampled_from(["set", "set", "drop", "add"]))
        if op == "set":
            container[key] = draw(json_values)
        elif op == "drop" and isinstance(container, dict):
            del container[key]
        elif op == "drop":
            container.pop(key)
        elif isinstance(container, dict):
            container[draw(st.text(max_size=6) | st.sampled_from(NASTY_STRINGS))] = draw(
                json_values
            )
        else:
            container.append(draw(json_values))
    if report.get("seq") == _UNSET:
        _set_seq(draw, report)
    return report


TEXT_EDITS: dict[str, Callable[[str, int], str]] = {
    "cut": lambda text, at: text[:at],
    "drop_char": lambda text, at: text[:at] + text[at + 1 :],
    "dup_member": lambda text, at: text.replace('"seq": ', '"seq": 1, "seq": ', 1),
    "nan": lambda text, at: text[:at] + "NaN" + text[at:],
    "deep": lambda text, at: text.replace('"samples": ', '"samples": ' + "[" * 5000, 1),
    "big_int": lambda text, at: text.replace('"seq": ', '"seq": 1' + "0" * 30 + "+", 1),
    "surrogate": lambda text, at: text.replace('"i-', '"\\udc00i-', 1),
}


@dataclass
class Request:
    """One validly signed POST: the body as sent, whose agent and key the headers name."""

    body: bytes
    agent: str
    key: str
    gzip: bool


def _request(report: Any, text_edit: tuple[str, int] | None, gz: bool) -> Request:
    body = json.dumps(report).encode()
    if text_edit is not None:
        name, at = text_edit
        text = body.decode()
        body = TEXT_EDITS[name](text, at % max(len(text), 1)).encode("utf-8", "surrogatepass")
    named = report.get("agent_id") if isinstance(report, dict) else None
    agent = named if isinstance(named, str) and named in SECRETS else AGENT
    seq = report.get("seq") if isinstance(report, dict) else None
    key = f"{agent}:{seq}" if isinstance(seq, int) else f"{agent}:0"
    return Request(gzip.compress(body, mtime=0) if gz else body, agent, key, gz)


requests = st.builds(
    _request,
    generated_reports() | mutated_reports(),
    _mostly(st.none(), st.tuples(st.sampled_from(sorted(TEXT_EDITS)), st.integers(0, 10_000)), 4),
    st.booleans(),
)


# --- the real app --------------------------------------------------------------------------


@dataclass
class Fuzz:
    client: TestClient[Any, Any]
    app: web.Application
    sink: MemorySink
    statuses: dict[int, int]

    @classmethod
    async def start(cls, tmp_path: Path) -> Fuzz:
        sink = MemorySink()
        app = create_app(make_config(tmp_path), sinks=[sink], clock=lambda: NOW)
        server = TestServer(app)
        await server.start_server(**RUNNER_KWARGS)
        client: TestClient[Any, Any] = TestClient(server)
        await client.start_server()
        return cls(client, app, sink, {})

    async def state(self) -> tuple[Any, ...]:
        """What a refused request must not change: the sink's batches and every store row."""
        async with self.app[STORE].engine.connect() as conn:
            rows = [
                sorted(map(tuple, await conn.execute(select(table))), key=repr)
                for table in (reports, agents, instances)
            ]
        return (len(self.sink.batches), *map(tuple, rows))

    async def check(self, req: Request) -> None:
        before = await self.state()
        headers = wire.signed_headers(
            SECRETS[req.agent], agent_id=req.agent, seq=0, body=req.body, gzip=req.gzip, now=NOW
        )
        headers[wire.HEADER_KEY] = req.key
        resp = await self.client.post(wire.REPORTS_PATH, data=req.body, headers=headers)
        text = await resp.text()
        self.statuses[resp.status] = self.statuses.get(resp.status, 0) + 1
        assert resp.status in DOCUMENTED, (resp.status, text[:500])
        assert len(text) < 8192, (resp.status, len(text))
        if resp.status >= 400:
            assert await self.state() == before, (resp.status, text[:500])


def _fuzz(tmp_path: Path, max_examples: int) -> dict[int, int]:
    with asyncio.Runner() as runner:
        fuzz = runner.run(Fuzz.start(tmp_path))
        try:

            @settings(FUZZ, max_examples=max_examples)
            @given(req=requests)
            def run(req: Request) -> None:
                runner.run(fuzz.check(req))

            run()
        finally:
            runner.run(fuzz.client.close())
    return fuzz.statuses


def test_no_signed_request_gets_a_5xx_and_a_refused_one_writes_nothing(tmp_path: Path) -> None:
    """Hypothesis's fixed budget of signed requests, generated and mutated: every answer is a
    documented one (never a 5xx), and every 4xx leaves the sink and the store unchanged.
    Both kinds of answer must occur, or the fuzz would be testing only one path."""
    statuses = _fuzz(tmp_path, max_examples=600)
    assert statuses.get(200, 0) >= 10, statuses
    assert statuses.get(400, 0) >= 100, statuses
