"""Every log line of the package has a stable dotted event name (`report.accepted`,
`cycle.finished`), its details in fields: operators grep and alert on these names.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import azfed

PACKAGE = Path(azfed.__file__).parent
EVENT = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
METHODS = {"debug", "info", "warning", "error", "exception", "critical"}
# module-level `log`, the driver's oslo `LOG`, and engines' `self.log`
LOGGERS = {"log", "LOG"}


def _is_log_call(node: ast.Call) -> bool:
    func = node.func
    if not isinstance(func, ast.Attribute) or func.attr not in METHODS:
        return False
    target = func.value
    if isinstance(target, ast.Name):
        return target.id in LOGGERS
    return isinstance(target, ast.Attribute) and target.attr in LOGGERS


def _log_calls() -> Iterator[tuple[str, ast.Call]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _is_log_call(node):
                yield f"{path.relative_to(PACKAGE.parent)}:{node.lineno}", node


def test_the_walk_finds_the_packages_log_calls() -> None:
    """Guards the test below against passing because it found nothing."""
    assert len(list(_log_calls())) > 30


def test_every_log_event_is_a_dotted_literal_with_details_in_fields() -> None:
    bad = []
    for where, call in _log_calls():
        first = call.args[0] if call.args else None
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            bad.append(f"{where}: the event is not a string literal")
        elif not EVENT.match(first.value):
            bad.append(f"{where}: {first.value!r}")
        elif len(call.args) > 1:
            bad.append(f"{where}: {first.value!r} takes %-arguments; pass fields instead")
    assert not bad, "\n".join(bad)
