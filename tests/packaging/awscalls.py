"""Find the AWS API calls azfed's code makes, as IAM actions, by reading its source.

The code reaches AWS through aioboto3 clients in three shapes, all found here:
  - a method call: `await ec2.describe_instances(...)`, `client.get_paginator(...)`;
  - an operation named by a string and dispatched by a helper: `self._call("run_instances", ...)`,
    `get_paginator("describe_instances")`;
  - a waiter named by a string: `get_waiter("instance_running")`, whose polling operation
    (ec2:DescribeInstances) comes from botocore's own waiter model.
The operation names come from botocore's service models, so only real operations of the
services azfed uses count, and the IAM action is the service prefix plus the operation name
(true of EC2, CloudWatch and SSM).

Modules that import openstacksdk are skipped: their helpers name openstacksdk calls by strings
that happen to match EC2 operations (`get_console_output`).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

from botocore.exceptions import DataNotFoundError
from botocore.session import get_session

# botocore service name -> IAM action prefix
SERVICES = {"ec2": "ec2", "cloudwatch": "cloudwatch", "ssm": "ssm"}


@cache
def operations() -> dict[str, frozenset[str]]:
    """snake_case method name -> the IAM actions it may be (more than one if services share it)."""
    from botocore import xform_name

    session = get_session()
    out: dict[str, set[str]] = {}
    for service, prefix in SERVICES.items():
        for op in session.get_service_model(service).operation_names:
            out.setdefault(xform_name(op), set()).add(f"{prefix}:{op}")
    return {k: frozenset(v) for k, v in out.items()}


@cache
def waiters() -> dict[str, frozenset[str]]:
    """snake_case waiter name -> the IAM action its polling operation needs."""
    from botocore import xform_name

    session = get_session()
    out: dict[str, set[str]] = {}
    for service, prefix in SERVICES.items():
        try:
            model = session.get_waiter_model(service)
        except DataNotFoundError:  # a service without waiters
            continue
        for name in model.waiter_names:
            op = model.get_waiter(name).operation
            out.setdefault(xform_name(name), set()).add(f"{prefix}:{op}")
    return {k: frozenset(v) for k, v in out.items()}


def _imports_openstack(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(
            a.name.split(".")[0] == "openstack" for a in node.names
        ):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "openstack":
            return True
    return False


def calls_in_source(source: str) -> set[frozenset[str]]:
    """Each AWS call in `source`, as the set of IAM actions it may need (usually one)."""
    tree = ast.parse(source)
    if _imports_openstack(tree):
        return set()
    ops, wts = operations(), waiters()
    found: set[frozenset[str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ops:
                found.add(ops[node.func.attr])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value in ops:
                found.add(ops[node.value])
            elif node.value in wts:
                found.add(wts[node.value])
    return found


def calls_in(paths: list[Path]) -> dict[frozenset[str], list[str]]:
    """Every AWS call in these files -> where it was found (for the failure message)."""
    out: dict[frozenset[str], list[str]] = {}
    for path in paths:
        for call in calls_in_source(path.read_text(encoding="utf-8")):
            out.setdefault(call, []).append(str(path))
    return out


def string_constants(paths: list[Path]) -> set[str]:
    out: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.add(node.value)
    return out
