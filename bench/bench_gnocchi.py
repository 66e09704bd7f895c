"""The receiver with its Gnocchi sink against Gnocchi's own batch-write rate, on the same Gnocchi.

Gnocchi is the limit of the receiver's Gnocchi figure, so that figure means something only
beside what Gnocchi itself takes. Both sides write the same samples of the same instances,
whose resources exist (a warm-up report creates them), one report at a time:
- Gnocchi alone: each report's samples as the sink's own body (`measures_body`, the batch call
  POST /v1/batch/resources/metrics/measures?create_metrics=true), straight to Gnocchi;
- the receiver: each report signed and gzipped as the agent sends it, through POST /v1/reports
  (signature, typed check, dedupe row, the Gnocchi sink), on the same event loop as the client.

The two alternate for --rounds rounds (each side's median is kept), so the load on the shared
machine (metricd processing what both write) falls on both alike. The figure is wall-clock
samples per second (Gnocchi-bound, not CPU-bound); the target is the receiver >= 0.8 x Gnocchi.
Needs a Gnocchi (the test bed's: `make testbed-up`); writes bench/results/gnocchi.json.

    .venv/bin/python bench/bench_gnocchi.py [--gnocchi http://127.0.0.1:8041] [--reports 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from azfed import wire
from azfed.config import parse_config
from azfed.receiver.app import RUNNER_KWARGS, create_app
from azfed.receiver.sinks.gnocchi import GnocchiSink, basic_auth, measures_body

sys.path.insert(0, str(Path(__file__).parent))
from bench_receiver import AGENT, SECRET, _secrets, gnocchi_up

RESULTS = Path(__file__).parent / "results" / "gnocchi.json"
TARGET = 0.8
METERS = list(wire.METERS.items())


def make_report(uuids: list[str], seq: int, minutes: int) -> dict[str, Any]:
    """`minutes` one-minute points of every meter of every instance (one vNIC, one disk),
    starting `seq` x `minutes` minutes into the last few hours (each report's own times)."""
    t0 = int(time.time()) // 3600 * 3600 - 4 * 3600 + seq * minutes * 60
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0))
    instances = [
        {
            "instance_uuid": u, "provider": "ec2", "remote_id": f"i-{i:017x}",
            "state": "running", "ips": {"private": ["10.0.0.1"], "public": []},
            "instance_type": "t3.micro", "az": "us-east-1a", "launched_at": stamp,
            "status_checks": "ok", "observed_at": stamp,
        }
        for i, u in enumerate(uuids)
    ]  # fmt: skip
    samples = []
    for m in range(minutes):
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + 60 * m))
        for u in uuids:
            for meter, fact in METERS:
                s = {
                    "instance_uuid": u, "resource_type": fact.resource_type, "meter": meter,
                    "unit": fact.unit, "type": fact.type, "volume": float(seq * minutes + m),
                    "timestamp": ts,
                }  # fmt: skip
                if fact.resource_type != "instance":
                    s["device"] = "eth0" if fact.resource_type.endswith("interface") else "vda"
                samples.append(s)
    return {
        "version": wire.CONTRACT_VERSION, "agent_id": AGENT, "seq": seq, "sent_at": stamp,
        "instances": instances, "samples": samples,
    }  # fmt: skip


async def gnocchi_alone(url: str, reports: list[dict[str, Any]]) -> float:
    """Samples per second Gnocchi takes through the sink's batch call, posted directly."""
    headers = await basic_auth("admin")()  # the sink's own: Gnocchi's basic auth mode
    async with aiohttp.ClientSession(headers=headers) as session:
        t0 = time.perf_counter()
        for r in reports:
            async with session.post(
                f"{url}/v1/batch/resources/metrics/measures",
                params={"create_metrics": "true"},
                json=measures_body(r["samples"], None),
            ) as resp:
                assert resp.status == 202, await resp.text()
        wall = time.perf_counter() - t0
    return sum(len(r["samples"]) for r in reports) / wall


class Receiver:
    """The receiver app with a Gnocchi sink, on this event loop."""

    def __init__(self, url: str, tmp: str) -> None:
        self.url, self.tmp = url, tmp
        self.seq = 0

    async def __aenter__(self) -> Receiver:
        cfg = parse_config(
            {
                "receiver": {
                    "secrets_dir": str(_secrets(self.tmp)),
                    "database_url": f"sqlite:///{self.tmp}/state.db",
                    "max_body_bytes": 64 * 1024 * 1024,
                    "sinks": ["null"],
                    # the reports' points are hours old: within what the receiver takes
                    "max_age_s": 24 * 3600,
                }
            }
        )
        self.sink = GnocchiSink(self.url, basic_auth("admin"))
        self.runner = web.AppRunner(create_app(cfg, sinks=[self.sink]), **RUNNER_KWARGS)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.endpoint = f"http://127.0.0.1:{self.runner.addresses[0][1]}{wire.REPORTS_PATH}"
        self.session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()
        await self.runner.cleanup()

    async def rate(self, reports: list[dict[str, Any]]) -> float:
        """Samples per second through POST /v1/reports, signed and gzipped as the agent
        sends them (encoded before the clock starts, as the agent's work is not ours)."""
        bodies = []
        for r in reports:
            self.seq += 1
            bodies.append(
                wire.encode_report(
                    {**r, "seq": self.seq},
                    secret=SECRET,
                    agent_id=AGENT,
                    seq=self.seq,
                    now=time.time(),
                    gzip=True,
                )
            )
        t0 = time.perf_counter()
        for body, headers in bodies:
            async with self.session.post(self.endpoint, data=body, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
        wall = time.perf_counter() - t0
        return sum(len(r["samples"]) for r in reports) / wall


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gnocchi", default="http://127.0.0.1:8041")
    ap.add_argument("--instances", type=int, default=50)
    ap.add_argument("--minutes", type=int, default=3, help="points per metric per report")
    ap.add_argument("--reports", type=int, default=10, help="per round and side")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if not gnocchi_up(args.gnocchi):
        print(f"no Gnocchi at {args.gnocchi}: start the test bed (make testbed-up)")
        return 2
    uuids = [str(uuid.uuid4()) for _ in range(args.instances)]
    per_round = args.reports
    seq = iter(range(1, 10_000))
    alone: list[float] = []
    ours: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with Receiver(args.gnocchi, tmp) as receiver:
            # warm-up: the resources and metrics, created by the sink as in production
            await receiver.rate([make_report(uuids, next(seq), args.minutes)])
            for _ in range(args.rounds):
                batch = [make_report(uuids, next(seq), args.minutes) for _ in range(per_round)]
                alone.append(await gnocchi_alone(args.gnocchi, batch))
                batch = [make_report(uuids, next(seq), args.minutes) for _ in range(per_round)]
                ours.append(await receiver.rate(batch))
    samples = args.instances * len(METERS) * args.minutes
    g, r = statistics.median(alone), statistics.median(ours)
    result = {
        "when": time.time(),
        "samples_per_report": samples,
        "reports_per_round": per_round,
        "rounds": args.rounds,
        "gnocchi_alone_samples_per_s": [round(x) for x in alone],
        "receiver_samples_per_s": [round(x) for x in ours],
        "ratio": round(r / g, 3),
        "target_ratio": TARGET,
        "ok": r / g >= TARGET,
    }
    print(f"{samples} samples/report, {per_round} reports x {args.rounds} rounds per side")
    for name, rate, rounds in (
        ("Gnocchi alone (batch call)", g, result["gnocchi_alone_samples_per_s"]),
        ("receiver + Gnocchi sink", r, result["receiver_samples_per_s"]),
    ):
        print(f"{name:28} {rate:>8.0f} samples/s  rounds {rounds}")
    print(f"ratio {r / g:.2f} (target >= {TARGET})  {'ok' if result['ok'] else 'below target'}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
