"""The parts of botocore's data the collector uses, loaded instead of the whole.

botocore's EC2 model is the largest it has: loaded whole, it held 12.5 MiB of the agent's
memory for the three Describe calls the collector makes (bench/bench_agent.py, issue 17); its
endpoints.json (every service's endpoints in every partition) held 6.9 MiB for the two
services the collector talks to. `botocore_data/` holds the EC2 and CloudWatch models cut to
the operations called and the shapes they reach, without the documentation strings, and
endpoints.json cut to those services (every partition and region kept); the collector's
botocore session searches it first (the `data_path` botocore documents as AWS_DATA_PATH), and
botocore's own files for anything else (endpoint rules, partitions, paginators).

The files are made from the pinned botocore by

    .venv/bin/python -m azfed.agent.collect.botomodels

and tests/agent/test_botomodels.py fails when it is not what the installed botocore gives.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

DATA_DIR: Final = Path(__file__).with_name("botocore_data")
# service -> the operations the collector calls (ec2.py)
OPERATIONS: Final = {
    "ec2": ("DescribeInstances", "DescribeInstanceStatus", "DescribeInstanceTypes"),
    "cloudwatch": ("GetMetricData",),
}
ENDPOINTS_PATH: Final = DATA_DIR / "endpoints.json"
UNDOCUMENTED = frozenset({"documentation", "documentationUrl"})


def _undocumented(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _undocumented(v) for k, v in value.items() if k not in UNDOCUMENTED}
    if isinstance(value, list):
        return [_undocumented(v) for v in value]
    return value


def _reached(shapes: dict[str, Any], roots: list[str]) -> set[str]:
    """Every shape the roots refer to, directly or through others."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        shape = shapes[name]
        refs = [m["shape"] for m in shape.get("members", {}).values()]
        refs += [shape[k]["shape"] for k in ("member", "key", "value") if k in shape]
        todo += refs
    return seen


def trim(model: dict[str, Any], operations: tuple[str, ...]) -> dict[str, Any]:
    """`model` with only `operations` and the shapes they reach, documentation left out."""
    ops = {name: model["operations"][name] for name in operations}
    roots = [
        ref["shape"]
        for op in ops.values()
        for ref in (op.get("input"), op.get("output"), *op.get("errors", []))
        if ref
    ]
    keep = _reached(model["shapes"], roots)
    trimmed = {**model, "operations": ops}
    trimmed["shapes"] = {k: v for k, v in model["shapes"].items() if k in keep}
    return dict(_undocumented(trimmed))


def trim_endpoints(endpoints: dict[str, Any], prefixes: set[str]) -> dict[str, Any]:
    """botocore's endpoints.json with only the services whose endpoint prefix is named, in
    every partition: what botocore resolves for those services is unchanged."""
    partitions = [
        {**part, "services": {k: v for k, v in part["services"].items() if k in prefixes}}
        for part in endpoints["partitions"]
    ]
    return {**endpoints, "partitions": partitions}


def endpoint_prefixes(loader: Any) -> set[str]:
    """The endpoint prefix (`monitoring` for cloudwatch) of each service the collector calls."""
    return {
        loader.load_service_model(service, "service-2")["metadata"]["endpointPrefix"]
        for service in OPERATIONS
    }


def model_path(service: str, api_version: str) -> Path:
    return DATA_DIR / service / api_version / "service-2.json"


def render(model: dict[str, Any]) -> str:
    return json.dumps(model, separators=(",", ":")) + "\n"


def main() -> None:
    from botocore.loaders import Loader

    loader = Loader()
    for service, operations in OPERATIONS.items():
        version = loader.determine_latest_version(service, "service-2")
        full = loader.load_service_model(service, "service-2", version)
        path = model_path(service, version)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(trim(full, operations)))
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    endpoints = trim_endpoints(loader.load_data("endpoints"), endpoint_prefixes(loader))
    ENDPOINTS_PATH.write_text(render(endpoints))
    print(f"wrote {ENDPOINTS_PATH} ({ENDPOINTS_PATH.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
