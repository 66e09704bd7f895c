"""The wheel and sdist carry what the renderer and the operator need; the samples fit the code."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from azfed.bootstrap import render_file

from tests.packaging.conftest import AGENT_TOML, ROOT, cloud_init_schema

NOVA = ROOT / "packaging" / "nova"
EXAMPLES = ROOT / "packaging" / "examples"


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m build` (sdist, then the wheel from the sdist), as `make dist` does."""
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: hatchling is pinned in the test extra, so no download happens here
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    return out


def shipped_data_files() -> list[str]:
    """Every non-Python file of the package (JSON schemas, an OpenAPI document...)."""
    return sorted(
        p.relative_to(ROOT / "agent").as_posix()
        for p in (ROOT / "agent" / "azfed").rglob("*")
        if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts
    )


def test_wheel_carries_the_templates_units_and_every_package_data_file(dist: Path) -> None:
    (wheel,) = dist.glob("azfed-*-py3-none-any.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in (ROOT / "cloudinit").glob("*.j2"):
        assert f"azfed/_data/cloudinit/{template.name}" in names
    for unit in (ROOT / "packaging" / "systemd").iterdir():
        assert f"azfed/_data/systemd/{unit.name}" in names
    missing = [f for f in shipped_data_files() if f not in names]
    assert not missing, f"data files left out of the wheel: {missing}"


def test_sdist_carries_the_packaging_and_the_install_guide(dist: Path) -> None:
    (sdist,) = dist.glob("azfed-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for f in [
        "cloudinit/agent-ec2.yaml.j2",
        "packaging/systemd/azfed-agent.service",
        "packaging/iam/agent-policy.json",
        "packaging/nova/nova-scheduler.conf",
        "docs/install.md",
    ]:
        assert f in names


def test_renderer_finds_its_templates_inside_the_installed_wheel(
    dist: Path, tmp_path: Path
) -> None:
    """Unpacked away from the checkout, the package renders from its own agent/_data."""
    (wheel,) = dist.glob("azfed-*-py3-none-any.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    (tmp_path / "agent.toml").write_text(AGENT_TOML["ec2"])
    settings = tmp_path / "bootstrap.toml"
    shutil.copy(EXAMPLES / "bootstrap-ec2.toml", settings)
    code = (
        "import sys; from pathlib import Path; import azfed.bootstrap as b; "
        "assert str(b.data_dir('cloudinit')).startswith(sys.argv[1]), b.data_dir('cloudinit'); "
        "sys.stdout.write(b.render_file(Path(sys.argv[2])))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(site), str(settings)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={"PYTHONPATH": str(site)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == render_file(settings)


@pytest.mark.parametrize(
    ("example", "target"),
    [("bootstrap-ec2.toml", "ec2"), ("bootstrap-openstack.toml", "openstack")],
)
def test_shipped_bootstrap_example_renders_valid_user_data(
    example: str, target: str, tmp_path: Path
) -> None:
    settings = tmp_path / example
    shutil.copy(EXAMPLES / example, settings)
    agent_config = "agent.toml" if target == "ec2" else "agent-openstack.toml"
    (tmp_path / agent_config).write_text(AGENT_TOML[target])
    result = cloud_init_schema(render_file(settings), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shipped_agent_sample_fits_the_unit_and_the_bootstrap(tmp_path: Path) -> None:
    """The agent's annotated sample (written by its owner) renders with the EC2 bootstrap."""
    shutil.copy(EXAMPLES / "agent.toml", tmp_path / "agent.toml")
    shutil.copy(EXAMPLES / "bootstrap-ec2.toml", tmp_path / "bootstrap.toml")
    render_file(tmp_path / "bootstrap.toml")


def ini_keys(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections -> (key, value) in order; oslo.config allows a key to repeat (MultiStrOpt)."""
    out: dict[str, list[tuple[str, str]]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out.setdefault(section, [])
            continue
        key, _, value = line.partition("=")
        out[section].append((key.strip(), value.strip()))
    return out


def registered_options(module: Path) -> set[str]:
    """The names of the oslo.config options a module registers (cfg.XxxOpt("name", ...))."""
    names = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr.endswith("Opt")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(str(node.args[0].value))
    return names


def test_proxy_host_snippet_sets_only_options_the_driver_registers() -> None:
    conf = ini_keys(NOVA / "nova-compute-proxy.conf")
    unknown = {k for k, _ in conf["azfed"]} - registered_options(
        ROOT / "agent/azfed/nova/driver.py"
    )
    assert not unknown
    assert ("compute_driver", "azfed.FederationDriver") in conf["DEFAULT"]
    shim = (ROOT / "agent/azfed/nova/nova_virt_azfed.py").read_text()
    assert "from azfed.nova.driver import FederationDriver" in shim


def test_scheduler_snippet_enables_the_federation_filter_with_known_options() -> None:
    conf = ini_keys(NOVA / "nova-scheduler.conf")
    fs = conf["filter_scheduler"]
    assert ("available_filters", "nova.scheduler.filters.all_filters") in fs
    assert ("available_filters", "azfed.nova.filter.FederationFilter") in fs
    enabled = dict(fs)["enabled_filters"].split(",")
    assert enabled[-1] == "FederationFilter"
    assert "class FederationFilter" in (ROOT / "agent/azfed/nova/filter.py").read_text()
    unknown = {k for k, _ in conf["azfed_filter"]} - registered_options(
        ROOT / "agent/azfed/nova/filter.py"
    )
    assert not unknown
