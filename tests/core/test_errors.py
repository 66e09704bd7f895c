"""One rooted error tree: every exception class azfed defines derives from AzfedError."""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import pkgutil
from pathlib import Path

import azfed
from azfed.errors import AzfedError

PACKAGE = Path(azfed.__file__).parent
# Modules that run inside Nova's or Neutron's processes import them, which this venv does not
# have; the source check below covers their classes.
NEEDS_NOVA = {
    "azfed.nova.driver", "azfed.nova.filter", "azfed.nova.nova_virt_azfed", "azfed.nova.refusals",
    "azfed.nova.weigher", "azfed.neutron.mech_driver",
}  # fmt: skip
# The Horizon plugin runs inside Horizon's process and imports Django and Horizon (not here
# either); the same source check covers its classes.
INSIDE_HORIZON = "azfed.dashboard"
BUILTIN_EXCEPTIONS = {
    name for name, obj in vars(builtins).items()
    if isinstance(obj, type) and issubclass(obj, BaseException)
}  # fmt: skip


def _modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages([str(PACKAGE)], prefix="azfed.")]
    assert "azfed.receiver.validate" in names
    assert "azfed.agent.push.pusher" in names
    return names


def test_every_exception_class_defined_in_azfed_derives_from_azfed_error() -> None:
    strays = []
    for name in _modules():
        if name in NEEDS_NOVA or name.startswith(INSIDE_HORIZON):
            continue
        module = importlib.import_module(name)
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != name or not issubclass(cls, BaseException):
                continue
            if not issubclass(cls, AzfedError):
                strays.append(f"{name}.{cls_name}")
    assert strays == []


def test_azfed_error_is_the_only_class_rooted_at_a_builtin_exception() -> None:
    """The same check from the source, so a class in a module that fails to import is seen."""
    roots = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
                if bases & BUILTIN_EXCEPTIONS:
                    roots.append(f"{path.relative_to(PACKAGE)}:{node.name}")
    assert roots == ["errors.py:AzfedError"]
