"""Receiver throughput and latency.

- samples/s per core through POST /v1/reports with the null sink (the receiver's own cost:
  signature, gunzip, schema, dedupe store) and with the bed's real Gnocchi (if reachable);
- p50/p99 latency of a 1,000-sample report (null sink).

CPU per core = samples / process CPU seconds of this process (client and server share it, so
the figure is conservative). Prints a table; writes bench/results/receiver.json.

    .venv/bin/python bench/bench_receiver.py [--reports 40] [--gnocchi http://127.0.0.1:8041]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from azfed import wire
from azfed.config import parse_config
from azfed.heap import settle_heap
from azfed.receiver.app import RUNNER_KWARGS, create_app
from azfed.receiver.sinks import Sink
from azfed.receiver.sinks.gnocchi import GnocchiSink, basic_auth
from azfed.receiver.sinks.null import NullSink

AGENT, SECRET = "bench-agent", b"bench-secret-0123456789abcdefghij"
RESULTS = Path(__file__).parent / "results" / "receiver.json"


def make_report(
    seq: int, n_samples: int, n_instances: int, *, restated: bool = False
) -> dict[str, Any]:
    """Report `seq`: its own instances, or with `restated` the same instances in every report,
    each observed anew (an agent's steady state: the receiver rewrites each instance's row)."""
    base = 0 if restated else seq << 20
    uuids = [str(uuid.UUID(int=base + i)) for i in range(n_instances)]
    # within the receiver's horizons ([receiver] max_age_s): the last hour
    hour = time.strftime("%Y-%m-%dT%H", time.gmtime(time.time() - 3600))
    ts = f"{hour}:00:00Z"
    observed = f"{hour}:{seq // 60 % 60:02d}:{seq % 60:02d}Z" if restated else ts
    instances = [
        {
            "instance_uuid": u,
            "provider": "ec2",
            "remote_id": f"i-{i:017x}",
            "state": "running",
            "ips": {"private": ["10.0.0.1"], "public": []},
            "instance_type": "t3.micro",
            "az": "us-east-1a",
            "launched_at": ts,
            "status_checks": "ok",
            "observed_at": observed,
        }
        for i, u in enumerate(uuids)
    ]
    meters = list(wire.METERS.items())
    samples = []
    for i in range(n_samples):
        meter, fact = meters[i % len(meters)]
        minute = (i // len(meters)) // len(uuids) % 60
        sample = {
            "instance_uuid": uuids[i % len(uuids)],
            "resource_type": fact.resource_type,
            "meter": meter,
            "unit": fact.unit,
            "type": fact.type,
            "volume": float(i % 100),
            "timestamp": f"{hour}:{minute:02d}:00Z",
        }
        if fact.resource_type != "instance":  # one vNIC and one disk per instance
            sample["device"] = "eth0" if fact.resource_type.endswith("interface") else "vda"
        samples.append(sample)
    return {
        "version": wire.CONTRACT_VERSION,
        "agent_id": AGENT,
        "seq": seq,
        "sent_at": ts,
        "instances": instances,
        "samples": samples,
    }


def _secrets(tmp: str) -> Path:
    secrets = Path(tmp, "secrets")
    secrets.mkdir()
    (secrets / f"agents_{AGENT}").write_bytes(SECRET)
    return secrets


async def run(
    sink: Sink, reports: int, n_samples: int, n_instances: int, *, restated: bool = False
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        secrets = _secrets(tmp)
        cfg = parse_config(
            {
                "receiver": {
                    "secrets_dir": str(secrets),
                    "database_url": f"sqlite:///{tmp}/state.db",
                    "max_body_bytes": 64 * 1024 * 1024,
                    "sinks": ["null"],
                    "max_inflight": 64,
                }
            }
        )
        runner = web.AppRunner(create_app(cfg, sinks=[sink]), **RUNNER_KWARGS)
        await runner.setup()
        settle_heap()  # as the receiver's serve() does once its app is set up
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        bodies = [
            wire.encode_report(
                make_report(s, n_samples, n_instances, restated=restated),
                secret=SECRET,
                agent_id=AGENT,
                seq=s,
                now=time.time(),
                gzip=True,
            )
            for s in range(reports)
        ]
        latencies, cpus = [], []
        async with aiohttp.ClientSession() as session:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for body, headers in bodies:  # one at a time: latency without queueing
                c0, t0 = time.process_time(), time.perf_counter()
                async with session.post(
                    f"http://127.0.0.1:{port}{wire.REPORTS_PATH}", data=body, headers=headers
                ) as resp:
                    assert resp.status == 200, await resp.text()
                latencies.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        await runner.cleanup()
    total = reports * n_samples
    latencies.sort()
    cpus.sort()
    return {
        "reports": reports,
        "samples_per_report": n_samples,
        "instances_per_report": n_instances,
        "samples_per_cpu_s": round(total / cpu),
        "samples_per_wall_s": round(total / wall),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 2),
        # the process's CPU time per report (client's share included): on a shared machine
        # the wall p99 is mostly waits for the cores and the disk, this is the work's own
        "cpu_p99_ms": round(cpus[min(len(cpus) - 1, int(len(cpus) * 0.99))] * 1000, 2),
    }


def gnocchi_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reports", type=int, default=40)
    ap.add_argument("--gnocchi", default="http://127.0.0.1:8041")
    args = ap.parse_args()
    rows = {
        "null, 1000 samples/report": await run(NullSink(), args.reports, 1000, 50),
        "null, 1000/report, restated": await run(NullSink(), args.reports, 1000, 50, restated=True),
        "null, 10000 samples/report": await run(NullSink(), max(5, args.reports // 4), 10_000, 500),
    }
    if gnocchi_up(args.gnocchi):
        sink = GnocchiSink(args.gnocchi, basic_auth("admin"))
        rows["gnocchi, 1000 samples/report"] = await run(sink, max(5, args.reports // 4), 1000, 50)
    print(
        f"{'case':32} {'samples/cpu-s':>14} {'samples/wall-s':>15} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'cpu p99':>8}"
    )
    for name, r in rows.items():
        print(
            f"{name:32} {r['samples_per_cpu_s']:>14} {r['samples_per_wall_s']:>15} "
            f"{r['p50_ms']:>8} {r['p99_ms']:>8} {r['cpu_p99_ms']:>8}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"when": time.time(), "results": rows}, indent=1) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
