"""Bootstrap the agent on a public-cloud instance: render its cloud-config, fetch its secret.

`render` fills the templates of the top-level `cloudinit/` folder from an operator's settings
file (TOML, one `[bootstrap]` table) and the agent's own config file, which is embedded as it
is, comments and all. Every value reaches the YAML as JSON and the shell script through
`shlex.quote`, so no setting can change the shape of either.

The signing secret never passes through here. On EC2 the rendered boot script calls
`azfed cloud-init fetch-secret` (below) on the instance, which reads it from SSM Parameter Store
with the instance role; on a public OpenStack cloud the operator copies it in (docs/install.md).
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from azfed import __version__
from azfed.config import AzfedConfig, load_config, problems_from
from azfed.errors import ConfigError, Problem
from pydantic import AnyUrl, BaseModel, ConfigDict, Field, UrlConstraints, ValidationError

if TYPE_CHECKING:
    import jinja2

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

PREFIX = "/opt/azfed"
UNIT = "azfed-agent.service"
# The secret is root-only in /etc/azfed/push-secret on the instance; systemd's LoadCredential=
# hands a copy to the service's dynamic user here, which is therefore what the config must name
SECRET_CREDENTIAL = f"/run/credentials/{UNIT}/push-secret"
# the unit's StateDirectory=: the only place the sandboxed agent may write
STATE_DIR = PurePosixPath("/var/lib/azfed-agent")
TEMPLATES = {"ec2": "agent-ec2.yaml.j2", "openstack": "agent-openstack.yaml.j2"}
PROVIDER_OF_TARGET = {"ec2": "ec2", "openstack": "openstack"}
CLOUD_TABLE_OF_TARGET = {"ec2": "aws", "openstack": "openstack"}

HttpsUrl = Annotated[AnyUrl, UrlConstraints(allowed_schemes=["https"], host_required=True)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
# SSM's own rule for hierarchical names; the leading "/" keeps the IAM resource ARN exact
ParameterName = Annotated[str, Field(pattern=r"^/[A-Za-z0-9_./-]{1,1010}$")]
DebPackage = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9+.-]*$")]
Version = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)*([a-z0-9.+-]*)$")]
WHEEL_NAME = re.compile(r"^azfed-[0-9][A-Za-z0-9.+_-]*-py3-none-any\.whl$")


class BootstrapSettings(BaseModel):
    """`[bootstrap]`: how the agent gets onto the instance and where its secret comes from."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    target: Literal["ec2", "openstack"]
    install: Literal["wheel", "index", "baked"]
    agent_config: Annotated[Path, Field(strict=False)]
    wheel_url: Annotated[HttpsUrl, Field(strict=False)] | None = None
    wheel_sha256: Sha256 | None = None
    index_url: Annotated[HttpsUrl, Field(strict=False)] = AnyUrl("https://pypi.org/simple")
    version: Version = __version__
    secret_parameter: ParameterName | None = None
    # Debian/Ubuntu images lack venv; Amazon Linux 2023 has it: set `packages = []` there
    packages: Annotated[tuple[DebPackage, ...], Field(strict=False)] = ("python3-venv",)


class _SettingsFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    bootstrap: BootstrapSettings


@dataclass(frozen=True)
class AgentConfigFile:
    """The agent's config: its text (embedded verbatim) and what it says (checked)."""

    path: Path
    text: str
    config: AzfedConfig


# --- settings ------------------------------------------------------------------------------------


def load_settings(path: Path) -> BootstrapSettings:
    """Read and validate a settings file; raise ConfigError naming every bad key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(str(path), [Problem("<file>", str(path), err.strerror or "")]) from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(str(path), [Problem("<file>", str(path), f"not TOML: {err}")]) from None
    try:
        settings = _SettingsFile.model_validate(data).bootstrap
    except ValidationError as err:
        raise ConfigError(str(path), problems_from(err)) from None
    problems = _cross_checks(settings)
    if problems:
        raise ConfigError(str(path), problems)
    return settings


def _cross_checks(s: BootstrapSettings) -> list[Problem]:
    """The rules that tie one setting to another."""
    out: list[Problem] = []
    if s.install == "wheel":
        out += _wheel_problems(s)
    if s.target == "ec2" and s.secret_parameter is None:
        reason = "required for target 'ec2': the SSM parameter holding the signing secret"
        out.append(Problem("[bootstrap] secret_parameter", None, reason))
    if s.target == "openstack" and s.secret_parameter is not None:
        reason = "only for target 'ec2': OpenStack has no instance role to read SSM with"
        out.append(Problem("[bootstrap] secret_parameter", s.secret_parameter, reason))
    return out


def _wheel_problems(s: BootstrapSettings) -> list[Problem]:
    out = []
    if s.wheel_url is None:
        out.append(Problem("[bootstrap] wheel_url", None, "required when install = 'wheel'"))
    elif not WHEEL_NAME.match(wheel_name(str(s.wheel_url))):
        reason = "must end in the wheel's own file name (azfed-<version>-py3-none-any.whl)"
        out.append(Problem("[bootstrap] wheel_url", str(s.wheel_url), reason))
    if s.wheel_sha256 is None:
        reason = "required when install = 'wheel': without it a swapped file would be installed"
        out.append(Problem("[bootstrap] wheel_sha256", None, reason))
    return out


def wheel_name(url: str) -> str:
    """The file name pip needs to see: the last segment of the URL's path."""
    return PurePosixPath(urlsplit(url).path).name


# --- the agent config ----------------------------------------------------------------------------


def load_agent_config(settings: BootstrapSettings, settings_path: Path) -> AgentConfigFile:
    """Load the agent config the settings name and check it fits the unit and the target."""
    path = settings.agent_config
    if not path.is_absolute():
        path = settings_path.parent / path
    config = load_config(path)
    problems = _agent_config_problems(config, settings.target)
    if problems:
        raise ConfigError(str(path), problems)
    return AgentConfigFile(path, path.read_text(encoding="utf-8"), config)


def _agent_config_problems(cfg: AzfedConfig, target: str) -> list[Problem]:
    cloud_table = CLOUD_TABLE_OF_TARGET[target]
    missing = [t for t in ("agent", "push", "spool", cloud_table) if getattr(cfg, t) is None]
    out = [Problem(f"[{t}]", None, f"required for target {target!r}") for t in missing]
    if cfg.agent is not None and cfg.agent.provider != PROVIDER_OF_TARGET[target]:
        reason = f"must be {PROVIDER_OF_TARGET[target]!r} for target {target!r}"
        out.append(Problem("[agent] provider", cfg.agent.provider, reason))
    if cfg.push is not None and str(cfg.push.secret_file) != SECRET_CREDENTIAL:
        reason = f"must be {SECRET_CREDENTIAL!r}, where the unit's LoadCredential= puts it"
        out.append(Problem("[push] secret_file", str(cfg.push.secret_file), reason))
    if cfg.spool is not None and STATE_DIR not in PurePosixPath(cfg.spool.path).parents:
        reason = f"must be under {STATE_DIR}/, the only directory the sandboxed unit may write"
        out.append(Problem("[spool] path", str(cfg.spool.path), reason))
    return out


# --- rendering -----------------------------------------------------------------------------------


def render_file(settings_path: Path) -> str:
    """Render the user data for a settings file; raise InputError naming any bad setting."""
    settings = load_settings(settings_path)
    agent_config = load_agent_config(settings, settings_path)
    return render(settings, agent_config)


def render(settings: BootstrapSettings, agent_config: AgentConfigFile) -> str:
    """Fill the target's cloud-config template."""
    env = _environment()
    ctx = _context(settings, agent_config)
    ctx["bootstrap_sh"] = env.get_template("bootstrap.sh.j2").render(ctx)
    user_data: str = env.get_template(TEMPLATES[settings.target]).render(ctx)
    return user_data


def _context(s: BootstrapSettings, agent_config: AgentConfigFile) -> dict[str, Any]:
    aws = agent_config.config.aws
    return {
        "version": __version__,
        "target": s.target,
        "install": s.install,
        "prefix": PREFIX,
        "packages": list(s.packages),
        "wheel_url": str(s.wheel_url) if s.wheel_url else "",
        "wheel_name": wheel_name(str(s.wheel_url)) if s.wheel_url else "",
        "wheel_sha256": s.wheel_sha256 or "",
        "index_url": str(s.index_url),
        "requirement": f"azfed=={s.version}",
        "secret_parameter": s.secret_parameter or "",
        "region": aws.region if aws else "",
        "agent_toml": agent_config.text,
        "agent_unit": read_data("systemd", UNIT),
        "openstack_dropin": read_data("systemd", "azfed-agent-openstack.conf"),
    }


def _environment() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("cloudinit"))),
        # the output is YAML and shell, never HTML: values are quoted by tojson and `sh`
        autoescape=False,  # noqa: S701
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["sh"] = lambda v: shlex.quote(str(v))
    return env


def data_dir(name: str) -> Path:
    """A folder of shipped files: in the wheel under azfed/_data, in a checkout at the top."""
    shipped = Path(str(resources.files("azfed"))) / "_data" / name
    if shipped.is_dir():
        return shipped
    # an editable install or a checkout: the top-level folders are the source of truth
    return Path(__file__).resolve().parents[2] / {"systemd": "packaging/systemd"}.get(name, name)


def read_data(folder: str, name: str) -> str:
    return (data_dir(folder) / name).read_text(encoding="utf-8")


def write_output(text: str, out: Path | None) -> None:
    """Write user data to `out` (0600: it is not secret, but it is not the world's) or stdout."""
    if out is None:
        sys.stdout.write(text)
        return
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # the mode above applies only to a file that did not exist yet
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
