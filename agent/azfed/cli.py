"""The `azfed` command.

This is the only module that configures logging and the only place signal handlers are
installed (by the `run` subcommands). Subcommands import their implementation lazily, so
`azfed config check` on a controller never imports aioboto3 and the agent never imports Nova.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
from azfed import __version__, logs
from azfed.errors import AzfedError, InputError, Problem
from click.core import ParameterSource

if TYPE_CHECKING:
    from azfed.config import AzfedConfig

# Exit codes: 0 ok, 1 runtime failure, 2 usage (click's own), 3 invalid input file.
EXIT_FAILED = 1
EXIT_INVALID = 3

T = TypeVar("T")


def _fail_input(err: InputError, as_json: bool) -> NoReturn:
    if as_json:
        problems = [
            {"key": p.key, "value": _jsonable(p.value), "reason": p.reason} for p in err.problems
        ]
        click.echo(json.dumps({"source": err.source, "valid": False, "problems": problems}))
    else:
        click.echo(f"azfed: {err}", err=True)
    sys.exit(EXIT_INVALID)


def _jsonable(value: object) -> object:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="azfed")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    envvar="AZFED_LOG_LEVEL",
)
@click.option(
    "--log-format",
    type=click.Choice(["auto", "console", "json"]),
    default="auto",
    show_default=True,
    envvar="AZFED_LOG_FORMAT",
    help="auto: console on a TTY, JSON lines otherwise.",
)
def main(log_level: str, log_format: logs.Format) -> None:
    """azfed: burst a private OpenStack into a public cloud through an availability zone."""
    # `run` subcommands configure again once they have read their file's [logging] table
    logs.configure(log_level, log_format)


def _configure_logs(cfg: AzfedConfig) -> None:
    """Flag > environment > the file's [logging] > default, for a process's own config file.

    The group's options always have a value (their default); only their source says whether the
    operator gave one, so the file wins over a default but never over a flag or a variable.
    """
    root = click.get_current_context().find_root()
    given = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    level: str = cfg.logging.level
    fmt: logs.Format = cfg.logging.format
    if root.get_parameter_source("log_level") in given:
        level = root.params["log_level"]
    if root.get_parameter_source("log_format") in given:
        fmt = root.params["log_format"]
    logs.configure(level, fmt)


def _run_or_explain(serve: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a process; an error the operator can fix ends it with its message, not a traceback."""
    import asyncio

    try:
        asyncio.run(serve())
    except AzfedError as err:
        click.echo(f"azfed: {err}", err=True)
        sys.exit(EXIT_FAILED)


# --- config -----------------------------------------------------------------------------------


@main.group()
def config() -> None:
    """Validate azfed configuration files."""


@config.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def config_check(file: Path, as_json: bool) -> None:
    """Validate FILE without opening any connection; name every bad key."""
    from azfed.config import load_config

    try:
        cfg = load_config(file)
    except InputError as err:
        _fail_input(err, as_json)
    tables = sorted(k for k in cfg.model_fields_set if k != "source")
    if as_json:
        click.echo(json.dumps({"source": str(file), "valid": True, "tables": tables}))
    else:
        click.echo(f"{file}: valid ({', '.join(tables) or 'defaults only'})")


@main.group()
def agent() -> None:
    """The public-cloud agent: collect instance state and usage, push it home."""


@agent.command("run")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("/etc/azfed/agent.toml"),
    show_default=True,
)
def agent_run(config_file: Path) -> None:
    """Run the agent in the foreground (systemd Type=notify)."""
    import asyncio
    import signal

    from azfed.agent.app import Agent
    from azfed.config import load_config

    try:
        cfg = load_config(config_file)
        cfg.require("agent", "push", "spool")
        _configure_logs(cfg)
        agent_proc = Agent(cfg)
    except InputError as err:
        _fail_input(err, as_json=False)
    except OSError as err:  # the secret file: unreadable is an operator's fix, say which
        click.echo(f"azfed: cannot read {err.filename}: {err.strerror}", err=True)
        sys.exit(EXIT_INVALID)
    except AzfedError as err:  # a certificate or CA bundle that is not PEM: names the file
        click.echo(f"azfed: {err}", err=True)
        sys.exit(EXIT_INVALID)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # signals can only be handled in the main thread: here, not in the agent
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await agent_proc.run(stop)

    _run_or_explain(run)


@main.group()
def receiver() -> None:
    """The local receiver: ingest agent reports into Nova and Gnocchi."""


@receiver.command("run")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path))
def receiver_run(config_file: Path | None) -> None:
    """Run the receiver in the foreground (systemd Type=notify)."""

    cfg = _receiver_config(config_file)
    _configure_logs(cfg)
    _run_or_explain(lambda: _serve_receiver(cfg))


@receiver.command("release-instance")
@click.argument("uuid")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path))
def receiver_release_instance(uuid: str, config_file: Path | None) -> None:
    """Hand an instance over: forget the agent that owns UUID, so the next agent to report
    it owns it (for an owner gone for good; an owner that reports it terminated needs none)."""
    import asyncio
    import time

    from azfed import wire
    from azfed.receiver.store import Store

    if not wire.is_uuid(uuid):
        raise click.BadParameter(f"{uuid[:64]!r} is not an instance UUID", param_hint="UUID")
    url = _receiver_database_url(config_file)

    async def release() -> str | None:
        store = Store(url)
        await store.open()
        try:
            return await store.release_instance(uuid, time.time())
        finally:
            await store.close()

    try:
        owner = asyncio.run(release())
    except AzfedError as err:  # e.g. the state database cannot be reached: its reason, no traceback
        click.echo(f"azfed: {err}", err=True)
        sys.exit(EXIT_FAILED)
    if owner is None:
        click.echo(f"no agent has reported {uuid}: nothing to release")
    else:
        click.echo(f"released {uuid} from agent {owner}: the next agent to report it owns it")


@receiver.group("db")
def receiver_db() -> None:
    """The receiver's database schema (Alembic migrations shipped with azfed)."""


def _receiver_config(config_file: Path | None, as_json: bool = False) -> AzfedConfig:
    """The receiver's config from --config, or the command ends naming what is wrong."""
    from azfed.config import load_config

    if config_file is None:
        raise click.UsageError("--config FILE (the receiver's) is required")
    try:
        cfg = load_config(config_file)
        cfg.require("receiver")
    except InputError as err:
        _fail_input(err, as_json)
    return cfg


def _receiver_database_url(config_file: Path | None) -> str:
    receiver = _receiver_config(config_file).receiver
    assert receiver is not None  # required above
    return receiver.database_url


def _on_database(url: str, work: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    """Run `work(engine)` on the receiver's database; a database that cannot be reached or
    used ends the command with the reason, not a traceback."""
    import asyncio

    from azfed.receiver.store import async_url, require_driver
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.ext.asyncio import create_async_engine

    async def run() -> T:
        require_driver(async_url(url))
        engine = create_async_engine(async_url(url))
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except (AzfedError, SQLAlchemyError) as err:
        click.echo(f"azfed: {err}", err=True)
        sys.exit(EXIT_FAILED)


@receiver_db.command("upgrade")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path))
def receiver_db_upgrade(config_file: Path | None) -> None:
    """Bring the database to this azfed's schema. Migrations are expand-then-contract: the
    receivers still running the previous version keep working on the upgraded database."""
    from azfed.receiver import migrate

    before, after = _on_database(_receiver_database_url(config_file), migrate.upgrade)
    if after != migrate.head():
        click.echo(
            f"the database is at {after}, newer than this azfed's {migrate.head()}: left as is"
        )
    elif before == after:
        click.echo(f"the database is at {after}: nothing to do")
    else:
        click.echo(f"upgraded the database from {before or 'empty'} to {after}")


@receiver_db.command("current")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path))
def receiver_db_current(config_file: Path | None) -> None:
    """Show the database's schema revision and this azfed's head."""
    from azfed.receiver import migrate

    rev = _on_database(_receiver_database_url(config_file), migrate.current)
    head = migrate.head()
    if rev == head:
        state = "at head"
    elif rev is None or migrate.known(rev):
        state = "behind: run `azfed receiver db upgrade`"
    else:
        state = "newer than this azfed"
    click.echo(f"database: {rev or 'none'}\nhead: {head}\n{state}")


async def _serve_receiver(cfg: object) -> None:
    import asyncio
    import signal

    from azfed.config import AzfedConfig
    from azfed.receiver.run import serve

    assert isinstance(cfg, AzfedConfig)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(cfg, stop)


@main.group()
def policy() -> None:
    """Check, explain and simulate the placement policy (policy.json)."""


@policy.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def policy_check(file: Path, as_json: bool) -> None:
    """Validate a policy.json file and list every error (exit 3 if invalid)."""
    from azfed.policy import commands

    try:
        summary = commands.check_summary(commands.check(file))
    except InputError as err:
        _fail_input(err, as_json)
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(f"{file}: valid (local {summary['local_az']}, public {summary['public_azs']})")
        for w in summary["warnings"]:
            click.echo(f"  warning: {w['key']} = {w['value']!r}: {w['reason']}")


@policy.command("explain")
@click.option("--policy", "policy_file", required=True, type=click.Path(path_type=Path))
@click.option("--flavor", default="m1.small", show_default=True, help="Flavor of the next boot.")
@click.option("--cloud", default=None, help="Cloud name in clouds.yaml (default: OS_* vars).")
@click.option(
    "--state-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The filter's [azfed_filter] state_file: its mode and cooldown clocks.",
)
@click.option(
    "--project", "project_id", default="", help="Keystone project ID of the boot (projects.*)."
)
@click.option(
    "--hint",
    "burst_hint",
    default="allowed",
    show_default=True,
    help="The boot's azfed:burst scheduler hint: never, allowed or prefer.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON.")
def policy_explain(  # noqa: PLR0917 - click passes every option
    policy_file: Path,
    flavor: str,
    cloud: str | None,
    state_file: Path | None,
    project_id: str,
    burst_hint: str,
    as_json: bool,
) -> None:
    """Show the local load, thresholds, caps used and what the next boot would get, and why."""
    import openstack
    from azfed.policy import commands

    try:
        pol = commands.check(policy_file)
        conn = openstack.connect(cloud=cloud)
        try:
            doc = commands.explain_cloud(
                pol, conn, flavor, state_file, project_id=project_id, burst_hint=burst_hint
            )
        finally:
            conn.close()
    except InputError as err:
        _fail_input(err, as_json)
    click.echo(json.dumps(doc, indent=2) if as_json else commands.render_explain(doc))


@main.group()
def network() -> None:
    """Neutron networks that mirror public subnets (burst VMs' ports and addresses)."""


@network.command("mirror")
@click.option(
    "--subnet",
    "subnet_id",
    required=True,
    help="The public subnet to mirror: a VPC subnet (subnet-...), or with --provider openstack "
    "the public cloud's subnet (name or id).",
)
@click.option(
    "--provider",
    type=click.Choice(["ec2", "openstack"]),
    default="ec2",
    show_default=True,
    help="The public cloud the subnet is in.",
)
@click.option(
    "--name", default=None, help="Neutron network and subnet name [default: azfed-SUBNET]."
)
@click.option("--cloud", default=None, help="Local cloud in clouds.yaml (default: OS_* vars).")
@click.option(
    "--public-cloud",
    default=None,
    help="With --provider openstack: the public cloud's entry in clouds.yaml (the proxy "
    "host's [azfed] cloud).",
)
@click.option(
    "--availability-zone",
    "availability_zone",
    required=True,
    help="The public AZ whose proxy host launches in that subnet: servers on the network go there.",
)
@click.option("--region", default="us-east-1", show_default=True, help="AWS region.")
@click.option("--endpoint-url", default=None, help="EC2 endpoint override (a VPC endpoint).")
@click.option(
    "--shared/--not-shared", default=True, show_default=True, help="Every project may boot on it."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def network_mirror(  # noqa: PLR0917 - click passes every option
    subnet_id: str,
    provider: str,
    name: str | None,
    cloud: str | None,
    public_cloud: str | None,
    availability_zone: str,
    region: str,
    endpoint_url: str | None,
    shared: bool,
    as_json: bool,
) -> None:
    """Make (once) the Neutron network and subnet that mirror a public subnet: the same CIDR,
    no DHCP, and only addresses the public subnet can give (for a VPC subnet: the VPC router
    as gateway, AWS's five reserved addresses outside the pool; for a public OpenStack's
    subnet: its gateway and allocation pools)."""
    import openstack
    import openstack.exceptions
    from azfed.neutron.subnets import mirror

    if provider == "openstack" and not public_cloud:
        reason = "required with --provider openstack: the public cloud's clouds.yaml entry"
        _fail_input(
            InputError("azfed network mirror", [Problem("--public-cloud", None, reason)]), as_json
        )
    try:
        if provider == "openstack":
            want = _public_subnet_plan(subnet_id, str(public_cloud))
        else:
            want = _vpc_subnet_plan(subnet_id, region, endpoint_url)
        conn = openstack.connect(cloud=cloud)
        try:
            subnet, created = mirror(
                conn,
                want,
                name or f"azfed-{subnet_id}",
                shared=shared,
                availability_zone=availability_zone,
            )
        finally:
            conn.close()
    except InputError as err:
        _fail_input(err, as_json)
    except (AzfedError, openstack.exceptions.SDKException) as err:
        # EC2's answer, or Neutron's / Keystone's (no such cloud, a refused network...)
        click.echo(f"azfed: {err}", err=True)
        sys.exit(EXIT_FAILED)
    doc = {
        "created": created,
        "network_id": subnet.network_id,
        "subnet_id": subnet.id,
        "cidr": subnet.cidr,
        "allocation_pools": subnet.allocation_pools,
        "provider": provider,
        "public_subnet": want.source,
    }
    if provider == "ec2":
        doc["ec2_subnet"] = want.source
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        verb = "created" if created else "already mirrored by"
        click.echo(
            f"{want.source} {verb} network {subnet.network_id}, subnet {subnet.id} ({subnet.cidr})"
        )


def _vpc_subnet_plan(subnet_id: str, region: str, endpoint_url: str | None) -> Any:
    from azfed.neutron.ec2_mirror import call_ec2, ec2_client
    from azfed.neutron.subnets import plan

    found = call_ec2(
        ec2_client(region, endpoint_url), "describe_subnets", subnet_id, SubnetIds=[subnet_id]
    )
    return plan(found["Subnets"][0])


def _public_subnet_plan(subnet: str, public_cloud: str) -> Any:
    import openstack
    from azfed.neutron.subnets import plan_public

    conn = openstack.connect(cloud=public_cloud)
    try:
        found = conn.network.find_subnet(subnet, ignore_missing=True)
    finally:
        conn.close()
    if found is None:
        raise InputError(
            "azfed network mirror",
            [Problem("--subnet", subnet, f"the public cloud {public_cloud} has no such subnet")],
        )
    return plan_public(found.to_dict(original_names=True), public_cloud)


class _TraceHelp(click.Command):
    """`policy simulate --help` ends with the trace's columns, as the simulator declares them
    (imported only when help is asked for: the CLI imports implementations lazily)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from azfed.policy.simulate import trace_help

        with formatter.section("Trace (CSV, a header line, one row per boot request)"):
            formatter.write_dl(trace_help())


@policy.command("simulate", cls=_TraceHelp)
@click.option("--policy", "policy_file", required=True, type=click.Path(path_type=Path))
@click.option("--trace", "trace_file", required=True, type=click.Path(path_type=Path))
@click.option(
    "--start",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z"]),
    metavar="DATETIME",
    help="The clock time of t = 0 for a trace in seconds, with its UTC offset "
    "(2026-12-07T00:00+01:00). Default: the Unix epoch (t is Unix time).",
)
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="Write a PNG.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary and steps as JSON.")
def policy_simulate(
    policy_file: Path, trace_file: Path, start: datetime | None, plot: Path | None, as_json: bool
) -> None:
    """Replay a load/request trace (CSV) through the policy: every decision and why, bursts,
    refusals, spend per AZ, mode switches and flaps."""
    from azfed.policy import commands, simulate

    t0 = start.timestamp() if start else 0.0
    try:
        result = simulate.run(
            commands.check(policy_file), simulate.read_trace(trace_file, start=t0)
        )
    except InputError as err:
        _fail_input(err, as_json)
    if plot is not None:
        try:
            simulate.plot(result, plot)
        except simulate.PlotUnavailableError as err:
            click.echo(f"azfed: {err}", err=True)
            sys.exit(1)
    click.echo(json.dumps(result.as_dict()) if as_json else simulate.render(result))


@main.group("cloud-init")
def cloud_init() -> None:
    """Bootstrap the agent on a public-cloud instance."""


@cloud_init.command("render")
@click.option(
    "--settings",
    "settings_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Bootstrap settings (TOML, a [bootstrap] table); see packaging/examples.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the user data here (mode 0600) instead of stdout.",
)
def cloud_init_render(settings_file: Path, output: Path | None) -> None:
    """Render the agent's cloud-config user data. It never contains the secret."""
    from azfed.bootstrap import render_file, write_output

    try:
        text = render_file(settings_file)
    except InputError as err:
        _fail_input(err, as_json=False)
    write_output(text, output)


@cloud_init.command("fetch-secret")
@click.option("--parameter", required=True, help="SSM parameter name (a SecureString).")
@click.option("--region", required=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
def cloud_init_fetch_secret(parameter: str, region: str, out: Path) -> None:
    """On the instance at boot: refuse IMDSv1, then write the secret from SSM to OUT (0600)."""
    from azfed.bootstrap_secret import SecretFetchError, run

    try:
        size = run(parameter, region, out)
    except SecretFetchError as err:
        click.echo(f"azfed: {err}", err=True)
        sys.exit(1)
    click.echo(f"azfed: wrote {size} bytes from {parameter} to {out}", err=True)


@main.command()
@click.argument("project")
@click.option("--instances", type=click.IntRange(min=0), default=0, help="Extra instances.")
@click.option("--cores", type=click.IntRange(min=0), default=0, help="Extra vCPUs.")
@click.option("--ram-mb", type=click.IntRange(min=0), default=0, help="Extra RAM (MiB).")
@click.option("--cloud", envvar="OS_CLOUD", help="clouds.yaml entry (default: OS_* variables).")
@click.option("--json", "as_json", is_flag=True, help="Print before/after as JSON.")
def quota(  # noqa: PLR0917 - click passes one argument per option
    project: str, instances: int, cores: int, ram_mb: int, cloud: str | None, as_json: bool
) -> None:
    """Show and raise PROJECT's Nova quotas by the burst allowance (none given: only show)."""
    import openstack
    from azfed.nova import quota as q

    conn = openstack.connect(cloud=cloud) if cloud else openstack.connect()
    try:
        try:
            proj = q.find_project(conn, project)
        except LookupError as err:
            raise click.ClickException(str(err)) from None
        allowance = {"instances": instances, "cores": cores, "ram_mb": ram_mb}
        changes = q.apply(conn, proj.id, allowance)
    finally:
        conn.close()
    if as_json:
        rows = [{"resource": c.resource, "before": c.before, "after": c.after} for c in changes]
        click.echo(json.dumps({"project": proj.name, "project_id": proj.id, "quotas": rows}))
    else:
        click.echo(q.render(proj.name, changes))


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(config_file: Path | None, as_json: bool) -> None:
    """Show the federation's state: burst instances, orphans, agent freshness."""
    import asyncio

    from azfed.receiver import status as receiver_status

    cfg = _receiver_config(config_file, as_json)
    result = asyncio.run(receiver_status.collect(cfg))
    click.echo(json.dumps(result) if as_json else receiver_status.render(result))


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Newest N."
)
def audit(config_file: Path | None, as_json: bool, limit: int) -> None:
    """Show what the receiver decided on its own (orphans cleaned or not), newest first."""
    import asyncio

    from azfed.config import load_config
    from azfed.receiver import audit as receiver_audit

    if config_file is None:
        raise click.UsageError("--config FILE (the receiver's) is required")
    try:
        cfg = load_config(config_file)
        cfg.require("receiver")
    except InputError as err:
        _fail_input(err, as_json)
    entries = asyncio.run(receiver_audit.collect(cfg, limit))
    click.echo(json.dumps(entries) if as_json else receiver_audit.render(entries))


if __name__ == "__main__":  # pragma: no cover
    main()
