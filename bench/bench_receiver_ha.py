"""Receiver throughput on the bed's MariaDB: one receiver, then two behind HAProxy, same load.

    .venv/bin/python -m testbed start          # MariaDB (and the rest of the bed)
    .venv/bin/python bench/bench_receiver_ha.py [--agents 8] [--reports 30]

The load: `--agents` agents at once, each sending `--reports` signed reports of 1,000 samples
for 100 instances of its own, one at a time (as an agent does), through HAProxy. Reports are
built and signed before the clock starts, in a client process of its own. The receivers use the
null sink, so the figure is the receiver and its database (claim, ownership, finish), not
Gnocchi. Both runs happen here, one after the other, on the same machine: the ratio is the
figure to read (on 2 cores, the client, HAProxy, MariaDB and the receivers share them).
Writes bench/results/receiver_ha.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from azfed import wire  # noqa: E402

from testbed.receivers import ReceiverCluster, database_url, mariadb_admin  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "receiver_ha.json"
SAMPLES, INSTANCES = 1000, 100
SECRET = b"bench-secret-0123456789abcdefghijklmnop"


def agent_id(a: int) -> str:
    return f"bench-agent-{a}"


def report(agent: str, seq: int, now: float) -> dict[str, Any]:
    """A v-current report: INSTANCES instances of this agent, SAMPLES samples over them,
    stamped within the last hour (inside the receiver's horizons)."""
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    uuids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"{agent}/{i}")) for i in range(INSTANCES)]
    instances = [
        {
            "instance_uuid": u,
            "provider": "ec2",
            "remote_id": f"i-{i:017x}",
            "state": "running",
            "ips": {"private": ["10.0.0.1"], "public": []},
            "observed_at": ts,
        }
        for i, u in enumerate(uuids)
    ]
    meter = "memory.usage"  # a gauge on the instance resource
    fact = wire.METERS[meter]
    samples = [
        {
            "instance_uuid": uuids[i % INSTANCES],
            "resource_type": fact.resource_type,
            "meter": meter,
            "unit": fact.unit,
            "type": fact.type,
            "volume": float(i % 100),
            "timestamp": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60 * (seq * SAMPLES + i) % 3600)
            ),
        }
        for i in range(SAMPLES)
    ]
    return {"version": wire.CONTRACT_VERSION, "agent_id": agent, "seq": seq, "sent_at": ts,
            "instances": instances, "samples": samples}  # fmt: skip


async def client(url: str, agents: int, reports: int) -> dict[str, float]:
    """Child process: send every agent's reports, agents side by side; time it."""
    import aiohttp

    now = time.time()
    bodies = {
        a: [
            wire.encode_report(
                report(agent_id(a), s, now),
                secret=SECRET,
                agent_id=agent_id(a),
                seq=s,
                now=now,
                gzip=True,
            )
            for s in range(reports)
        ]
        for a in range(agents)
    }

    async def one_agent(session: aiohttp.ClientSession, a: int) -> int:
        retries = 0
        for body, headers in bodies[a]:
            while True:
                async with session.post(url + wire.REPORTS_PATH, data=body, headers=headers) as r:
                    if r.status == 200:
                        break
                    retries += 1
                    await asyncio.sleep(0.05)
        return retries

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=agents)) as session:
        t0 = time.perf_counter()
        retries = await asyncio.gather(*(one_agent(session, a) for a in range(agents)))
        wall = time.perf_counter() - t0
    return {"wall_s": wall, "retries": sum(retries)}


def run(count: int, agents: int, reports: int) -> dict[str, Any]:
    name = f"azfed_bench_{secrets.token_hex(4)}"
    url = database_url(name)
    mariadb_admin(f"CREATE DATABASE `{name}`")
    with tempfile.TemporaryDirectory() as tmp:
        keys = {agent_id(a): SECRET for a in range(agents)}
        cluster = ReceiverCluster(
            Path(tmp), url, keys, 'sinks = ["null"]\nmax_body_bytes = 16000000\n'
        )
        try:
            cluster.start(count)
            cpu0 = [r.cpu_seconds() for r in cluster.receivers]
            out = subprocess.run(
                [sys.executable, __file__, "--client", cluster.url, "--agents", str(agents),
                 "--reports", str(reports)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            cpu = sum(r.cpu_seconds() - c for r, c in zip(cluster.receivers, cpu0, strict=True))
            accepted = sum(r.accepted() for r in cluster.receivers)
        finally:
            cluster.stop()
            mariadb_admin(f"DROP DATABASE `{name}`")
    got = json.loads(out.stdout)
    total = agents * reports * SAMPLES
    assert accepted == agents * reports, (accepted, agents * reports)
    return {
        "receivers": count,
        "agents": agents,
        "reports": agents * reports,
        "samples": total,
        "wall_s": round(got["wall_s"], 2),
        "samples_per_s": round(total / got["wall_s"]),
        "receiver_cpu_s": round(cpu, 2),
        "samples_per_receiver_cpu_s": round(total / cpu),
        "retries": got["retries"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agents", type=int, default=8)
    ap.add_argument("--reports", type=int, default=30, help="per agent")
    ap.add_argument("--client", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        print(json.dumps(asyncio.run(client(args.client, args.agents, args.reports))))
        return
    rows = [run(count, args.agents, args.reports) for count in (1, 2)]
    print(f"{'receivers':>9} {'samples/s':>10} {'wall s':>7} {'recv cpu s':>10} "
          f"{'samples/recv-cpu-s':>18} {'retries':>7}")  # fmt: skip
    for r in rows:
        print(f"{r['receivers']:>9} {r['samples_per_s']:>10} {r['wall_s']:>7} "
              f"{r['receiver_cpu_s']:>10} {r['samples_per_receiver_cpu_s']:>18} "
              f"{r['retries']:>7}")  # fmt: skip
    ratio = rows[1]["samples_per_s"] / rows[0]["samples_per_s"]
    print(f"two receivers / one: {ratio:.2f}x samples/s (same run, same machine)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {"when": time.time(), "results": rows, "ratio_2_over_1": round(ratio, 2)}, indent=1
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
