"""Checks of one `POST /v1/reports` request, cheapest first, each refusing with a `Reject`.

Nothing here writes anything: a request that fails a check leaves no trace but a counter.
Authentication (who, when, signature) comes before parsing, so an unsigned body is never
decompressed or parsed.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from azfed import wire
from azfed.errors import AzfedError, InputError, Problem
from azfed.receiver import typed
from azfed.receiver.sinks import UNCONVERTED
from azfed.receiver.store import RELEASED, Store
from sqlalchemy.exc import SQLAlchemyError

log = structlog.get_logger(__name__)

_AGENT_ID = re.compile(wire.AGENT_ID_PATTERN)


@dataclass
class Reject(AzfedError):
    """A request refused with `status`; `reason` is the metrics label, `message` tells the
    sender what to change (or when to retry: `retry_after`)."""

    status: int
    reason: str
    message: str
    problems: list[Problem] = field(default_factory=list)
    retry_after: int | None = None
    # for the receiver's log only, never the answer: what the sender must not learn
    cause: str = ""

    def body(self) -> dict[str, Any]:
        """The JSON error answer: what was wrong, key by key, bounded in size (at most
        MAX_ANSWER_PROBLEMS problems, each value and text cut at MAX_ECHO characters)."""
        problems = [_problem(p) for p in self.problems[:MAX_ANSWER_PROBLEMS]]
        message = _cut(self.message, 2 * MAX_ECHO)
        return {"error": self.reason, "message": message, "problems": problems}

    def __str__(self) -> str:
        return f"{self.status} {self.reason}: {self.message}"


# An error answer must never be the bigger body: a 20 KB request once got a 16 MB answer.
MAX_ANSWER_PROBLEMS = 20
MAX_ECHO = 200


def _problem(p: Problem) -> dict[str, Any]:
    # jsonschema's reasons start with the value's repr ("'xxx...' is too long"): echo it once.
    text = _repr(p.value)
    reason = p.reason.replace(text, "the value", 1) if p.value is not None and text else p.reason
    return {
        "key": _cut(p.key, MAX_ECHO),
        "value": _short(p.value),
        "reason": _cut(reason, MAX_ECHO),
    }


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _repr(value: object) -> str:
    try:
        return repr(value)
    except ValueError:  # an integer past Python's 4300-digit str() limit
        return ""


def _short(value: object) -> object:
    # Echoing a whole 100,000-sample array back would make the error answer the bigger body.
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**15:
        return f"<an integer of {value.bit_length()} bits>"
    if isinstance(value, (dict, list)):
        return _cut(_repr(value), MAX_ECHO)
    if isinstance(value, str):
        return _cut(value, MAX_ECHO)
    return value


@dataclass(frozen=True)
class Auth:
    """Who signed a request, and when, once the headers are checked (not yet the body)."""

    agent_id: str
    timestamp: int
    signature: str
    key: str
    secret: bytes


def _header(headers: Any, name: str, status: int) -> str:
    value = headers.get(name)
    if not value:
        raise Reject(status, "missing_header", f"the {name} header is required")
    return str(value)


def read_secret(secrets_dir: Path, agent_id: str, prefix: str = "") -> bytes | None:
    """The agent's shared secret, or None for an agent this receiver does not know (or whose
    secret is shorter than wire.MIN_SECRET_BYTES, which is logged: `azfed config check`
    names the file)."""
    # The pattern keeps agent_id a plain file name: no "..", no "/".
    if not _AGENT_ID.match(agent_id) or agent_id in {".", ".."}:
        return None
    try:
        secret = (secrets_dir / f"{prefix}{agent_id}").read_bytes().strip()
    except OSError:
        return None
    if len(secret) < wire.MIN_SECRET_BYTES:
        log.error("receiver.secret_too_short", agent_id=agent_id, bytes=len(secret),
                  minimum=wire.MIN_SECRET_BYTES, then="the agent is refused",
                  hint="write a longer secret (openssl rand -hex 32) on both sides")  # fmt: skip
        return None
    return secret


def check_auth_headers(
    headers: Any, secrets_dir: Path, now: float, window: float, prefix: str = ""
) -> Auth:
    """Refuse a request with no or bad credentials, an unknown agent or a stale timestamp."""
    agent_id = _header(headers, wire.HEADER_AGENT, 401)
    raw_ts = _header(headers, wire.HEADER_TIMESTAMP, 401)
    signature = _header(headers, wire.HEADER_SIGNATURE, 401)
    key = _header(headers, wire.HEADER_KEY, 400)
    secret = read_secret(secrets_dir, agent_id, prefix)
    if secret is None:
        # Answered exactly as a bad signature: a sender must not learn which agent ids exist.
        raise _bad_signature(f"unknown agent {agent_id[:64]!r}: no secret file for it")
    if not raw_ts.isascii() or not raw_ts.isdigit() or len(raw_ts) > 12:
        raise Reject(401, "bad_timestamp", f"{wire.HEADER_TIMESTAMP} must be unix seconds")
    timestamp = int(raw_ts)
    if abs(now - timestamp) > window:
        msg = f"timestamp {timestamp} is outside the replay window of {window:.0f}s: check clocks"
        raise Reject(401, "stale_timestamp", msg)
    return Auth(agent_id, timestamp, signature, key, secret)


def check_signature(auth: Auth, method: str, path: str, body: bytes) -> None:
    """Refuse a body whose signature is not the agent's."""
    if not wire.verify(auth.secret, method, path, auth.timestamp, body, auth.signature):
        raise _bad_signature("the signature does not match the agent's secret")


def _bad_signature(cause: str) -> Reject:
    msg = "the signature does not match the request: check the agent's secret and its id"
    return Reject(401, "bad_signature", msg, cause=cause)


def decode_body(body: bytes, encoding: str | None, content_type: str, limit: int) -> bytes:
    """The JSON bytes of the body: gunzipped if it says gzip, never more than `limit` bytes."""
    if content_type != "application/json":
        raise Reject(
            400, "bad_content_type", f"Content-Type {content_type!r}: send application/json"
        )
    enc = (encoding or "identity").strip().lower()
    if enc == "identity":
        return body
    if enc != "gzip":
        raise Reject(400, "bad_encoding", f"Content-Encoding {enc!r}: only gzip is accepted")
    return _gunzip(body, limit)


def _gunzip(body: bytes, limit: int) -> bytes:
    # Bounded output: a few KiB of gzip can expand to gigabytes (a "gzip bomb").
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as err:
        raise Reject(400, "bad_gzip", f"the body is not valid gzip: {err}") from None
    if len(out) > limit:
        raise Reject(413, "too_large", f"the body decompresses to more than {limit} bytes")
    if not inflater.eof or inflater.unused_data:
        raise Reject(400, "bad_gzip", "the gzip stream is truncated or has trailing data")
    return out


def parse_report(data: bytes, auth: Auth, window: wire.Window | None = None) -> dict[str, Any]:
    """The validated report; its agent and seq must be the ones the headers named, and its
    timestamps within `window` (the receiver's horizons)."""
    obj, fits = _parsed(data)
    try:
        report = wire.validate_report(obj, window=window, fits=fits, text=data)
    except InputError as err:
        raise Reject(400, "bad_schema", "the report breaks the contract", err.problems) from None
    _check_identity(report, auth)
    return _upgraded(report)


def _parsed(data: bytes) -> tuple[Any, Callable[[Any], bool]]:
    """The body parsed, and the typed check to ask of it. An agent's report is parsed and
    held to the schema in one pass; anything else (or anything that pass cannot vouch for)
    is parsed as I-JSON and checked step by step, which says what is wrong."""
    fitting = typed.parse_fitting(data)
    if fitting is not None:
        return fitting, _fitted
    try:
        return wire.loads(data), typed.fits
    except (UnicodeDecodeError, ValueError) as err:
        raise Reject(400, "bad_json", f"the body is not valid JSON: {err}") from None


def _fitted(report: Any) -> bool:
    """The typed check's verdict on a report `typed.parse_fitting` gave: made already."""
    return True


def _upgraded(report: dict[str, Any]) -> dict[str, Any]:
    """A version 1 report (an agent not yet upgraded) read as version 2; the samples that
    cannot be converted ride along under UNCONVERTED, to be counted with the batch."""
    upgraded, unconverted = wire.upgrade_v1(report)
    if unconverted:
        upgraded[UNCONVERTED] = unconverted
        log.info("report.v1_converted", agent_id=report["agent_id"], seq=report["seq"],
                 dropped=sum(u.samples for u in unconverted),
                 meters=sorted({u.meter for u in unconverted}))  # fmt: skip
    return upgraded


def _check_identity(report: dict[str, Any], auth: Auth) -> None:
    problems = []
    if report["agent_id"] != auth.agent_id:
        problems.append(Problem("agent_id", report["agent_id"], f"signed by {auth.agent_id!r}"))
    want_key = wire.idempotency_key(report["agent_id"], report["seq"], report.get("epoch"))
    if auth.key != want_key:
        problems.append(Problem(wire.HEADER_KEY, auth.key, f"must be {want_key!r}"))
    if problems:
        raise Reject(400, "identity_mismatch", "the headers and the report disagree", problems)


async def check_owners(store: Store, report: dict[str, Any]) -> None:
    """Refuse (403) a report that restates an instance another agent owns: the first agent
    to report an instance owns it, until it reports it `terminated` (store.RELEASED) or an
    operator releases it (`azfed receiver release-instance`); then the next agent to report it
    owns it. Read-only: run before anything is written."""
    uuids = [inst["instance_uuid"].lower() for inst in report["instances"]]
    try:
        owners = await store.owners(uuids)
    except SQLAlchemyError as err:
        msg = f"state store: {type(err).__name__}: retry later"
        raise Reject(503, "store_failed", msg, retry_after=10, cause=str(err)) from None
    foreign = [
        Problem(f"instances[{i}].instance_uuid", uuid, f"owned by agent {owner!r}")
        for i, uuid in enumerate(uuids)
        if (found := owners.get(uuid)) is not None
        and (owner := found[0]) != report["agent_id"]
        and found[1] != RELEASED
    ]
    if foreign:
        msg = (
            f"{len(foreign)} instance(s) belong to another agent: an agent reports only its own; "
            f"ownership passes on once the owner reports the instance {RELEASED!r}, or an "
            "operator runs `azfed receiver release-instance UUID`"
        )
        raise Reject(403, "foreign_instance", msg, foreign)
