"""The layout: one import package, `azfed`, in src layout under agent/; no top-level `agent`
module for Nova's or the scheduler's environment to clash with; the test bed and the demo are
product beside the tests, and nothing outside tests/ imports from them."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from testbed.openstack import SOURCE, install

ROOT = Path(__file__).resolve().parents[2]
# an import path of the first release's package, e.g. "agent.nova.filter.FederationFilter"
STALE = re.compile(r"\bagent\.(nova|receiver|policy|clouds|collect|push|wire|config|cli)\b")


def _python(python: str, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env, check=False
    )


def test_azfed_imports_and_agent_does_not_in_the_project_venv() -> None:
    """Run from the checkout's root, where a folder named agent/ sits."""
    assert _python(sys.executable, "import azfed").returncode == 0
    refused = _python(sys.executable, "import agent")
    assert refused.returncode != 0
    assert "import azfed" in refused.stderr


def test_azfed_and_the_nova_virt_shim_import_in_the_beds_nova_venv() -> None:
    """As the bed runs Nova's services: the checkout's agent/ on PYTHONPATH, the shim in
    nova.virt; a module called `agent` is not importable there."""
    os_venv, _ = install()
    python = str(os_venv / "bin" / "python")
    env = {"PYTHONPATH": str(SOURCE), "PYTHONWARNINGS": "ignore", "PATH": "/usr/bin:/bin"}
    ok = _python(python, "import azfed, nova.virt.azfed; print(azfed.__file__)", **env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == str(SOURCE / "azfed" / "__init__.py")
    assert _python(python, "import agent", **env).returncode != 0


def test_no_stale_import_path_in_the_docs_and_packaging() -> None:
    files = [*(ROOT / "docs").rglob("*.md"), *(ROOT / "packaging").rglob("*"), ROOT / "README.md"]
    stale = [
        f"{f.relative_to(ROOT)}: {m.group(0)}"
        for f in files
        if f.is_file()
        for m in STALE.finditer(f.read_text(errors="replace"))
    ]
    assert stale == []


def test_nothing_outside_tests_imports_from_tests() -> None:
    sources = [
        p
        for folder in ("agent", "testbed", "bench")
        for p in (ROOT / folder).rglob("*.py")
        if "wsgi" not in p.parts
    ]
    assert len(sources) > 50  # the walk found the package, the bed and the benchmarks
    offenders = []
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [a.name for a in node.names] if isinstance(node, ast.Import) else
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )  # fmt: skip
            offenders += [
                f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "tests"
            ]
    assert offenders == []
