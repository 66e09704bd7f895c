"""TOML configuration, validated at load into frozen typed objects.

One file configures one process; it holds only the tables that process needs (`[agent]`,
`[push]`... for the agent, `[receiver]`, `[gnocchi]`... for the receiver). Every table is
optional at the file level, and each process asks for the tables it requires with
`AzfedConfig.require`. Unknown keys are refused: a typo must not silently fall back to a default.

Validation never opens a connection, so `azfed config check` is safe to run anywhere.
Secrets never sit in the file: only the path of a file that holds them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from azfed.aws import AWS_CLIENT_DEFAULTS, AwsClient
from azfed.errors import ConfigError, Problem
from azfed.wire import ALL_METERS, MIN_SECRET_BYTES, UUID_PATTERN, Meter, Provider
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, model_validator
from pydantic_core import PydanticCustomError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

PositiveFloat = Annotated[float, Field(gt=0)]
Port = Annotated[int, Field(ge=0, le=65535)]
# TOML has no path type: paths arrive as strings, so these fields alone accept a str.
FsPath = Annotated[Path, Field(strict=False)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class AgentSection(_Section):
    """`[agent]`: who this agent is."""

    id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
    provider: Provider = "ec2"
    # guest mode reports the host it runs on: it must be told its own Nova instance UUID
    instance_uuid: Annotated[str, Field(pattern=UUID_PATTERN)] | None = None
    # SIGTERM: stop collecting, then push what is left; what is not sent by then stays spooled
    shutdown_deadline_s: Annotated[float, Field(gt=0, le=600)] = 20.0


class AwsSection(_Section):
    """`[aws]`: how to reach AWS. Credentials come from the instance role or the AWS chain."""

    region: Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")]
    endpoint_url: HttpUrl | None = None
    vpc_id: Annotated[str, Field(pattern=r"^vpc-[0-9a-f]+$")] | None = None
    connect_timeout_s: PositiveFloat = AWS_CLIENT_DEFAULTS.connect_timeout_s
    read_timeout_s: PositiveFloat = AWS_CLIENT_DEFAULTS.read_timeout_s
    max_attempts: Annotated[int, Field(ge=1, le=20)] = AWS_CLIENT_DEFAULTS.max_attempts

    def client(self) -> AwsClient:
        """These timeouts and retries, as every AWS client of azfed takes them."""
        return AwsClient(self.connect_timeout_s, self.read_timeout_s, self.max_attempts)


class OpenStackSection(_Section):
    """`[openstack]`: a public OpenStack cloud, by its name in clouds.yaml."""

    cloud: Annotated[str, Field(min_length=1)]
    region: str | None = None
    timeout_s: PositiveFloat = 30.0


# What the CloudWatch agent's `append_dimensions` can add to its metrics.
CwDimension = Literal["InstanceId", "ImageId", "InstanceType", "AutoScalingGroupName"]


class CollectSection(_Section):
    """`[collect]`: how often and how hard the agent polls the cloud."""

    # 1 s is allowed for tests and the guest collector; EC2 metrics do not change faster than 60 s
    interval_s: Annotated[float, Field(ge=1)] = 60.0
    jitter_s: Annotated[float, Field(ge=0)] = 5.0
    metrics_period_s: Annotated[int, Field(ge=60, multiple_of=60)] = 300
    concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    # AWS meters requests per account and region in token buckets: EC2's non-mutating
    # Describe* bucket holds 100 tokens and refills 20/s; GetMetricData allows 50/s.
    describe_rate_per_s: PositiveFloat = 20.0
    describe_burst: Annotated[int, Field(ge=1, le=1000)] = 100
    metrics_rate_per_s: PositiveFloat = 10.0
    metrics_burst: Annotated[int, Field(ge=1, le=1000)] = 50
    # TOML arrays arrive as lists, hence strict=False
    meters: Annotated[tuple[Meter, ...], Field(min_length=1, strict=False)] = ALL_METERS
    # The dimensions the CloudWatch agent publishes mem_used (memory.usage) under: CloudWatch
    # matches a metric by its whole dimension set, and the agent's usual `append_dimensions`
    # gives ImageId, InstanceId, InstanceType (and AutoScalingGroupName), never InstanceId alone.
    cwagent_dimensions: Annotated[tuple[CwDimension, ...], Field(min_length=1, strict=False)] = (
        "InstanceId",
    )
    status_checks: bool = True
    # each cycle reads the newest complete period and this many before it, so a failed cycle
    # or a short restart loses no period
    lookback_periods: Annotated[int, Field(ge=1, le=24)] = 2
    # a period is complete, and emitted once with CloudWatch's statistic over all of it, this
    # long after it ends: CloudWatch publishes EC2 datapoints minutes late (Telegraf's
    # cloudwatch input waits 5 minutes too). A datapoint later than that is not counted.
    publication_delay_s: Annotated[int, Field(ge=0, le=3600)] = 300


class PushSection(_Section):
    """`[push]`: where and how reports go to the receiver."""

    url: HttpUrl
    secret_file: FsPath
    batch_max_samples: Annotated[int, Field(ge=1, le=100_000)] = 5000
    batch_max_bytes: Annotated[int, Field(ge=1024)] = 1_000_000
    flush_interval_s: PositiveFloat = 10.0
    timeout_s: PositiveFloat = 15.0
    max_backoff_s: PositiveFloat = 300.0
    gzip: bool = True
    # https:// only: the CA bundle the receiver's certificate is checked against (absent: the
    # system's); a client certificate and key when the receiver asks for one (mutual TLS)
    ca_file: FsPath | None = None
    client_cert_file: FsPath | None = None
    client_key_file: FsPath | None = None


class SpoolSection(_Section):
    """`[spool]`: the durable disk queue used while the receiver is unreachable."""

    path: FsPath
    max_bytes: Annotated[int, Field(ge=1024)] = 256 * 1024 * 1024
    max_age_s: PositiveFloat = 7 * 86400.0


class HealthSection(_Section):
    """`[health]`: the agent's /healthz, /readyz and /metrics listener."""

    host: str = "127.0.0.1"
    port: Port = 9810


class ReceiverSection(_Section):
    """`[receiver]`: the local receiver's listener, limits and state store."""

    host: str = "127.0.0.1"
    port: Port = 8790
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 8 * 1024 * 1024
    replay_window_s: Annotated[float, Field(ge=10, le=3600)] = 300.0
    database_url: str = "sqlite:////var/lib/azfed-receiver/state.db"
    secrets_dir: FsPath
    # Only files named <prefix><agent id> are secrets: a credential directory also holds
    # clouds.yaml, which must never pass for an agent's key. systemd's LoadCredential= of a
    # directory names each file "<credential>_<file name>": the shipped unit's is "agents".
    # "" only for a directory that holds nothing but agents' secrets.
    secrets_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]*$")] = "agents_"
    policy_file: FsPath | None = None
    # the scheduler filter's [azfed_filter] state_file, when this host can read it: GET
    # /v1/placement then accounts for the filter's current mode and cooldowns
    policy_state_file: FsPath | None = None
    # TOML arrays arrive as lists, hence strict=False
    sinks: Annotated[tuple[Literal["gnocchi", "nova", "null"], ...], Field(strict=False)] = (
        "gnocchi",
        "nova",
    )
    max_inflight: Annotated[int, Field(ge=1, le=1024)] = 16
    write_timeout_s: PositiveFloat = 60.0
    dedupe_retention_s: Annotated[float, Field(ge=3600)] = 8 * 86400.0
    # Horizons of a report's timestamps around the receiver's clock. Older than max_age_s (the
    # agent's [spool] max_age_s by default) is refused; at most dedupe_retention_s, so no
    # report outlives the memory of its key and is applied twice. Past max_future_s ahead is
    # refused: a far-future observed_at would otherwise freeze an instance's cached state.
    max_age_s: Annotated[float, Field(ge=60)] = 7 * 86400.0
    max_future_s: Annotated[float, Field(ge=0, le=86400)] = 300.0
    shutdown_timeout_s: PositiveFloat = 30.0
    # a request's body must arrive within this; a sender trickling bytes is answered 408
    body_timeout_s: Annotated[float, Field(gt=0, le=600)] = 30.0
    # an idle keep-alive connection is closed after this
    idle_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 75.0
    # HTTPS (TLS 1.2+): both or neither; with client_ca_file, agents must present a
    # certificate signed by it (mutual TLS)
    tls_cert_file: FsPath | None = None
    tls_key_file: FsPath | None = None
    tls_client_ca_file: FsPath | None = None


class NovaSection(_Section):
    """`[nova]`: the local cloud, by its name in clouds.yaml (or OS_* variables if empty)."""

    cloud: str | None = None
    public_azs: Annotated[tuple[str, ...], Field(strict=False)] = ()
    timeout_s: PositiveFloat = 30.0
    concurrency: Annotated[int, Field(ge=1, le=64)] = 8
    last_seen_interval_s: Annotated[float, Field(ge=0)] = 300.0


class GnocchiSection(_Section):
    """`[gnocchi]`: where measures go. Keystone auth comes from `[nova]` unless basic."""

    endpoint: HttpUrl | None = None
    auth_mode: Literal["keystone", "basic"] = "keystone"
    basic_user: str = "admin"
    # unset: each metric under the archive policy Ceilometer's gnocchi_resources.yaml names for
    # it (ceilometer-low-rate for cpu and the counters, ceilometer-low for the rest); a name:
    # every metric under that one (Ceilometer's `archive_policy` publisher option)
    archive_policy: Annotated[str, Field(min_length=1)] | None = None
    timeout_s: PositiveFloat = 30.0
    concurrency: Annotated[int, Field(ge=1, le=64)] = 8


class ReconcileSection(_Section):
    """`[reconcile]`: how orphans are found and what is done about them."""

    interval_s: Annotated[float, Field(ge=30)] = 300.0
    action: Literal["report", "clean"] = "report"
    grace_s: Annotated[float, Field(ge=0)] = 600.0
    # With several receivers on one database, one runs reconciliation at a time: when it dies,
    # another takes over within this time (plus a third of it).
    lease_ttl_s: Annotated[float, Field(ge=3)] = 60.0


class LoggingSection(_Section):
    """`[logging]`: level and format (auto: console on a TTY, JSON otherwise)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "console", "json"] = "auto"


class AzfedConfig(_Section):
    """A whole azfed config file. Tables a process does not use may be absent."""

    agent: AgentSection | None = None
    aws: AwsSection | None = None
    openstack: OpenStackSection | None = None
    collect: CollectSection = CollectSection()
    push: PushSection | None = None
    spool: SpoolSection | None = None
    health: HealthSection = HealthSection()
    receiver: ReceiverSection | None = None
    nova: NovaSection = NovaSection()
    gnocchi: GnocchiSection = GnocchiSection()
    reconcile: ReconcileSection = ReconcileSection()
    logging: LoggingSection = LoggingSection()

    source: str = Field(default="<memory>", exclude=True)

    def require(self, *tables: str) -> None:
        """Refuse the file for a process that needs `tables` and does not find them."""
        missing = [t for t in tables if getattr(self, t) is None]
        if missing:
            problems = [Problem(f"[{t}]", None, "required table is missing") for t in missing]
            raise ConfigError(self.source, problems)

    @model_validator(mode="after")
    def _tables_agree(self) -> AzfedConfig:
        """Rules across tables, checked at load so `azfed config check` finds what a process
        would otherwise only find at start (or, worse, silently not do)."""
        problems = [
            *_agent_problems(self),
            *_receiver_problems(self),
            *_tls_problems(self),
            *_secret_problems(self),
        ]
        if problems:
            summary = "; ".join(str(p) for p in problems)
            raise PydanticCustomError(
                CROSS_TABLE, "{summary}", {"summary": summary, "problems": problems}
            )
        return self


# the pydantic error type of a broken cross-table rule; its context carries the Problems
CROSS_TABLE = "azfed_cross_table"


def _agent_problems(cfg: AzfedConfig) -> list[Problem]:
    """An [agent] table makes the file an agent's: what `azfed agent run` needs besides."""
    if cfg.agent is None:
        return []
    out = [
        Problem(f"[{t}]", None, "an [agent] file needs this table: add it")
        for t in ("push", "spool")
        if getattr(cfg, t) is None
    ]
    provider = cfg.agent.provider
    if provider == "ec2" and cfg.aws is None:
        out.append(Problem("[aws]", None, 'required with [agent] provider = "ec2": add it with '
                           "the region, or set provider to where the instances run"))  # fmt: skip
    if provider == "openstack" and cfg.openstack is None:
        out.append(Problem("[openstack]", None, 'required with [agent] provider = "openstack": '
                           "add it with the cloud's name in clouds.yaml"))  # fmt: skip
    if "InstanceId" not in cfg.collect.cwagent_dimensions:
        out.append(Problem("[collect] cwagent_dimensions", list(cfg.collect.cwagent_dimensions),
                           "must include InstanceId: without it one instance's memory cannot "
                           "be told from another's"))  # fmt: skip
    if provider == "guest" and cfg.agent.instance_uuid is None:
        out.append(Problem("[agent] instance_uuid", None, 'required with provider = "guest": '
                           "set it to this host's Nova instance UUID"))  # fmt: skip
    return out


def _receiver_problems(cfg: AzfedConfig) -> list[Problem]:
    """A [receiver] table makes the file a receiver's: what its sinks and cleaner need."""
    if cfg.receiver is None:
        return []
    out: list[Problem] = []
    if cfg.receiver.max_age_s > cfg.receiver.dedupe_retention_s:
        reason = (
            f"more than dedupe_retention_s ({cfg.receiver.dedupe_retention_s:.0f}): a report "
            "older than the receiver remembers keys could be applied twice; lower it"
        )
        out.append(Problem("[receiver] max_age_s", cfg.receiver.max_age_s, reason))
    if "gnocchi" in cfg.receiver.sinks and cfg.gnocchi.endpoint is None:
        out.append(Problem("[gnocchi] endpoint", None, 'required with "gnocchi" in [receiver] '
                           "sinks: set it to Gnocchi's API (the catalog's metric endpoint), "
                           'or drop "gnocchi" from sinks'))  # fmt: skip
    if cfg.reconcile.action == "clean" and cfg.aws is None:
        out.append(Problem("[aws]", None, 'required with [reconcile] action = "clean" (the '
                           'region to clean in): add it, or set action = "report"'))  # fmt: skip
    if cfg.reconcile.action == "clean" and not cfg.nova.public_azs:
        reason = (
            'required with [reconcile] action = "clean": set the AZs to look for orphans in, '
            'or set action = "report"'
        )
        out.append(Problem("[nova] public_azs", [], reason))
    return out


def _unreadable(key: str, path: Path | None) -> list[Problem]:
    if path is None:
        return []
    try:
        with path.open("rb") as f:
            f.read(1)
    except OSError as err:
        reason = f"cannot read it ({err.strerror or err}): fix the path or its permissions"
        return [Problem(key, str(path), reason)]
    return []


def _pair(
    table: str, cert: str, key: str, values: tuple[Path | None, Path | None]
) -> list[Problem]:
    if (values[0] is None) == (values[1] is None):
        return []
    missing, given = (cert, key) if values[0] is None else (key, cert)
    return [Problem(f"[{table}] {missing}", None, f"required with {given}: set both or neither")]


def _tls_problems(cfg: AzfedConfig) -> list[Problem]:
    """Certificates, keys and CA bundles: given in pairs, readable, and only for HTTPS."""
    out: list[Problem] = []
    if (r := cfg.receiver) is not None:
        out += _pair("receiver", "tls_cert_file", "tls_key_file", (r.tls_cert_file, r.tls_key_file))
        if r.tls_client_ca_file is not None and r.tls_cert_file is None:
            reason = "mutual TLS needs TLS: set tls_cert_file and tls_key_file"
            out.append(Problem("[receiver] tls_client_ca_file", str(r.tls_client_ca_file), reason))
        for name in ("tls_cert_file", "tls_key_file", "tls_client_ca_file"):
            out += _unreadable(f"[receiver] {name}", getattr(r, name))
    if (push := cfg.push) is not None:
        files = (push.client_cert_file, push.client_key_file)
        out += _pair("push", "client_cert_file", "client_key_file", files)
        names = ("ca_file", "client_cert_file", "client_key_file")
        for name in names:
            value = getattr(push, name)
            if value is not None and push.url.scheme != "https":
                reason = "only used with an https:// url: set [push] url to https://... or drop it"
                out.append(Problem(f"[push] {name}", str(value), reason))
            out += _unreadable(f"[push] {name}", value)
    return out


def short_secret(path: Path) -> str | None:
    """Why the signing secret in `path` is too short, or None if it is long enough or cannot
    be read now (a systemd credential exists only inside the unit: the process checks again
    when it reads it)."""
    try:
        size = len(path.read_bytes().strip())
    except OSError:
        return None
    if size >= MIN_SECRET_BYTES:
        return None
    return (
        f"the secret is {size} bytes; at least {MIN_SECRET_BYTES} are required: set a longer "
        "one (openssl rand -hex 32) here and on the other side"
    )


def _secret_problems(cfg: AzfedConfig) -> list[Problem]:
    """Signing secrets shorter than wire.MIN_SECRET_BYTES, where they can be read now."""
    out: list[Problem] = []
    if cfg.push is not None and (why := short_secret(cfg.push.secret_file)) is not None:
        out.append(Problem("[push] secret_file", str(cfg.push.secret_file), why))
    if cfg.receiver is not None:
        r = cfg.receiver
        try:
            files = sorted(r.secrets_dir.glob(f"{r.secrets_prefix}*"))
        except OSError:
            files = []
        for path in files:
            if path.is_file() and (why := short_secret(path)) is not None:
                out.append(Problem("[receiver] secrets_dir", str(path), why))
    return out


def _key_of(loc: tuple[int | str, ...], value: object) -> str:
    """`[table] key.sub` as the operator wrote it in the file."""
    parts = [str(p) for p in loc]
    if not parts:
        return "<file>"
    if len(parts) == 1:
        # at the top level of our files everything is a table
        return (
            f"[{parts[0]}]"
            if isinstance(value, dict) or parts[0] in AzfedConfig.model_fields
            else parts[0]
        )
    return f"[{parts[0]}] " + ".".join(parts[1:])


def problems_from(err: ValidationError) -> list[Problem]:
    """Turn pydantic's errors into operator-facing problems: key, value, reason."""
    out = []
    for e in err.errors(include_url=False):
        if e["type"] == CROSS_TABLE:
            out.extend(e["ctx"]["problems"])
            continue
        value = e.get("input")
        reason = e["msg"]
        if e["type"] == "extra_forbidden":
            reason = "unknown key (check its spelling and the table it is in)"
        elif e["type"] == "missing":
            value = None
            reason = "required key is missing"
        out.append(Problem(_key_of(tuple(e["loc"]), value), value, reason))
    return out


def parse_config(data: dict[str, Any], source: str = "<memory>") -> AzfedConfig:
    """Validate an already parsed TOML document."""
    try:
        cfg = AzfedConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(source, problems_from(err)) from None
    return cfg.model_copy(update={"source": source})


def load_config(path: str | Path) -> AzfedConfig:
    """Read and validate a TOML config file; raise ConfigError naming every bad key."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise ConfigError(str(p), [Problem("<file>", str(p), err.strerror or str(err))]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(str(p), [Problem("<file>", str(p), f"not valid TOML: {err}")]) from None
    return parse_config(data, str(p))
