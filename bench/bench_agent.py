"""One collection cycle of the azfed agent vs a straightforward boto3 script, same endpoint.

    .venv/bin/python bench/bench_agent.py            # 1k on moto, 10k on the canned endpoint
    .venv/bin/python bench/bench_agent.py --moto-sizes 1000 --canned-sizes --latency-ms

Each contender runs once per scenario in its own child process, so CPU seconds and peak RSS
are its own (moto's or the canned server's CPU is not counted). API calls are counted by the
server (moto's fault layer, or the canned server), not by the client.

- agent:  Ec2Collector.stream() (paginated DescribeInstances, MaxResults 1000; GetMetricData in
          500-query calls, concurrent, rate-gated) handing each part to the batcher, which packs
          and encodes the reports into the spool as they fill, as one agent cycle does.
- boto3:  the script a user would write: boto3's describe_instances paginator, then
          GetMetricData in 500-query chunks one after another, then json.dumps of the result.
          (A naive script calling GetMetricStatistics per instance and meter makes N*M calls:
          40,000 at 10k; it is not run, its call count is printed for reference.)

moto takes minutes for 10k instances, so 10k runs against a canned-response endpoint that
serves pre-rendered DescribeInstances pages and GetMetricData answers (botocore's real parsers
run on them). The 1,000-instance canned run is repeated with each answer delayed by each
--latency-ms: `wall_added_s` is what that latency adds to each contender's wall time. Writes
bench/results/agent.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Four meters read per instance (one query each). Not cpu: on moto, which gives no CpuOptions,
# it adds one DescribeInstanceTypes per new type, a one-off this per-cycle count leaves out.
METERS = ["network.incoming.bytes", "network.outgoing.bytes", "network.incoming.packets",
          "network.outgoing.packets"]  # fmt: skip
CW = {"network.incoming.bytes": "NetworkIn", "network.outgoing.bytes": "NetworkOut",
      "network.incoming.packets": "NetworkPacketsIn",
      "network.outgoing.packets": "NetworkPacketsOut"}  # fmt: skip
TAG = "azfed:instance-uuid"
PERIOD = 300
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
         "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip


# --- the canned endpoint ------------------------------------------------------------------


def canned_uuid(k: int, salt: str = "") -> uuid.UUID:
    """Instance k's Nova UUID; a salt gives each run instances of its own (Gnocchi keeps
    what earlier runs wrote)."""
    return uuid.uuid5(uuid.NAMESPACE_OID, f"{salt}/{k}") if salt else uuid.UUID(int=k + 1)


def canned_pages(n: int, per_page: int = 1000, per_res: int = 100, salt: str = "") -> list[str]:
    launch = "2026-11-24T00:00:00.000Z"
    pages = []
    for p in range(math.ceil(n / per_page)):
        reservations = []
        for r in range(p * per_page, min(n, (p + 1) * per_page), per_res):
            items = "".join(
                f"<item><instanceId>i-{k:017x}</instanceId><imageId>ami-1</imageId>"
                f"<instanceState><code>16</code><name>running</name></instanceState>"
                f"<privateIpAddress>10.{k >> 16 & 255}.{k >> 8 & 255}.{k & 255}</privateIpAddress>"
                f"<instanceType>m5.large</instanceType><launchTime>{launch}</launchTime>"
                f"<cpuOptions><coreCount>1</coreCount><threadsPerCore>2</threadsPerCore></cpuOptions>"
                f"<placement><availabilityZone>us-east-1a</availabilityZone></placement>"
                # the primary ENI, which the network meters are reported on
                f"<networkInterfaceSet><item><networkInterfaceId>eni-{k:017x}"
                f"</networkInterfaceId><attachment><deviceIndex>0</deviceIndex></attachment>"
                f"<privateIpAddressesSet><item><privateIpAddress>10.{k >> 16 & 255}."
                f"{k >> 8 & 255}.{k & 255}</privateIpAddress><primary>true</primary></item>"
                f"</privateIpAddressesSet></item></networkInterfaceSet>"
                f"<tagSet><item><key>{TAG}</key><value>{canned_uuid(k, salt)}</value></item>"
                f"</tagSet></item>"
                for k in range(r, min(n, r + per_res), 1)
            )
            reservations.append(
                f"<item><reservationId>r-{r:017x}</reservationId><ownerId>123456789012"
                f"</ownerId><groupSet/><instancesSet>{items}</instancesSet></item>"
            )
        token = f"<nextToken>{p + 1}</nextToken>" if (p + 1) * per_page < n else ""
        pages.append(
            '<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
            f"<requestId>req</requestId><reservationSet>{''.join(reservations)}</reservationSet>"
            f"{token}</DescribeInstancesResponse>"
        )
    return pages


def gmd_answer(ids: list[str], stamps: list[str]) -> str:
    """Each query's answer: the value k+1 at stamps[k], in the order given (the agent asks
    for TimestampAscending)."""
    ts = "".join(f"<member>{t}</member>" for t in stamps)
    vals = "".join(f"<member>{k + 1}.0</member>" for k in range(len(stamps)))
    results = "".join(
        f"<member><Id>{i}</Id><Label>{i}</Label><StatusCode>Complete</StatusCode>"
        f"<Timestamps>{ts}</Timestamps><Values>{vals}</Values></member>"
        for i in ids
    )
    return (
        '<GetMetricDataResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/">'
        f"<GetMetricDataResult><MetricDataResults>{results}</MetricDataResults><Messages/>"
        "</GetMetricDataResult><ResponseMetadata><RequestId>req</RequestId>"
        "</ResponseMetadata></GetMetricDataResponse>"
    )


def serve_canned(n: int, periods: int = 0, salt: str = "", latency_ms: int = 0) -> None:
    """Child process: answer DescribeInstances and GetMetricData for n instances. With
    `periods`, the datapoints are the start of each of the newest `periods` complete periods,
    newest first (bench_ha_kill.py counts them in Gnocchi); else the newest complete one and
    the open one. Each answer waits `latency_ms` first (AWS's round trip and work)."""
    from aiohttp import web

    pages = canned_pages(n, salt=salt)
    base = int(time.time()) // PERIOD * PERIOD
    stamps = [
        dt.datetime.fromtimestamp(base - k * PERIOD, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        # oldest first, as the agent's ScanBy=TimestampAscending asks
        for k in (range(periods, 0, -1) if periods else (1, 0))
    ]
    print(f"BASE {base}", flush=True)
    hits: dict[str, int] = {}

    async def handle(request: web.Request) -> web.Response:
        form = parse_qs((await request.read()).decode())
        if latency_ms:
            await asyncio.sleep(latency_ms / 1000)
        action = form["Action"][0]
        hits[action] = hits.get(action, 0) + 1
        if action == "DescribeInstances":
            return web.Response(text=pages[int(form.get("NextToken", ["0"])[0])],
                                content_type="text/xml")  # fmt: skip
        if action == "GetMetricData":
            ids = [v[0] for k, v in form.items() if k.endswith(".Id")]
            return web.Response(text=gmd_answer(ids, stamps), content_type="text/xml")
        return web.Response(status=400, text=f"unsupported {action}")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"hits": hits})

    async def reset(request: web.Request) -> web.Response:
        hits.clear()
        return web.json_response({})

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_get("/_stats", stats)
    app.router.add_post("/_reset", reset)
    app.router.add_post("/{tail:.*}", handle)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(f"PORT {runner.addresses[0][1]}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# --- the contenders (child processes) --------------------------------------------------------


async def agent_cycle(endpoint: str) -> dict[str, Any]:
    from azfed.agent.collect.ec2 import Ec2Collector
    from azfed.agent.collect.sample import Observation
    from azfed.agent.health import AgentMetrics
    from azfed.agent.push.batcher import Batcher
    from azfed.agent.push.spool import Spool
    from azfed.config import parse_config
    from azfed.heap import settle_heap

    tmp = Path(tempfile.mkdtemp(prefix="azfed-bench-"))
    (tmp / "secret").write_text("bench-secret-0123456789abcdefghij")
    cfg = parse_config({
        "agent": {"id": "bench"},
        # moto answers a 500-query GetMetricData in tens of seconds under load: no timeout
        # retries muddying the call counts
        "aws": {"region": "us-east-1", "endpoint_url": endpoint, "read_timeout_s": 600.0},
        # moto and the canned server hold every datapoint at once: no publication delay
        "collect": {"meters": METERS, "status_checks": False, "concurrency": 8,
                    "metrics_rate_per_s": 50.0, "metrics_burst": 50, "publication_delay_s": 0},
        "push": {"url": "http://127.0.0.1:9/", "secret_file": str(tmp / "secret")},
        "spool": {"path": str(tmp / "spool")},
    })  # fmt: skip
    assert cfg.aws is not None
    assert cfg.push is not None
    assert cfg.spool is not None
    metrics = AgentMetrics()
    spool = Spool(cfg.spool, metrics)
    spool.open()
    batcher = Batcher(cfg.push, "bench", spool, metrics)
    col = Ec2Collector(cfg.aws, cfg.collect, metrics)
    await col.open()
    settle_heap()  # as Agent.run does once the collector is open
    found = {"instances": 0, "samples": 0}

    async def emit(part: Observation) -> None:  # as the agent's Scheduler hands them on
        found["instances"] += len(part.instances)
        found["samples"] += len(part.samples)
        await batcher.add(part)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        await col.stream(emit)
        await batcher.flush()
    finally:
        cycle_cpu, cycle_wall = time.process_time() - cpu0, time.perf_counter() - wall0
        await col.close()
    return {**found, "reports": len(spool),
            "cycle_cpu_s": round(cycle_cpu, 3), "cycle_wall_s": round(cycle_wall, 3)}  # fmt: skip


def boto3_cycle(endpoint: str) -> dict[str, Any]:
    import boto3
    from botocore.config import Config

    cfg = Config(read_timeout=600, retries={"mode": "standard"})
    ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1", config=cfg)
    cw = boto3.client("cloudwatch", endpoint_url=endpoint, region_name="us-east-1", config=cfg)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    instances = []
    for page in ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "tag-key", "Values": [TAG]}]
    ):
        for res in page["Reservations"]:
            instances += res["Instances"]
    queries = [
        {"Id": f"q{k}", "MetricStat": {"Metric": {"Namespace": "AWS/EC2", "MetricName": CW[m],
         "Dimensions": [{"Name": "InstanceId", "Value": i["InstanceId"]}]},
         "Period": PERIOD, "Stat": "Average"}}
        for k, (i, m) in enumerate((i, m) for i in instances for m in METERS)
    ]  # fmt: skip
    end = dt.datetime.now(dt.timezone.utc)
    # 20 minutes: both seeded periods even when the run starts past the next period's start
    # (15 lost the older one then, and the script read half the samples)
    results = []
    for c in range(0, len(queries), 500):
        r = cw.get_metric_data(MetricDataQueries=queries[c : c + 500],
                               StartTime=end - dt.timedelta(minutes=20), EndTime=end)  # fmt: skip
        results += r["MetricDataResults"]
    samples = sum(len(r["Values"]) for r in results)
    body = json.dumps({"instances": instances, "results": results}, default=str)
    return {"instances": len(instances), "samples": samples, "bytes": len(body),
            "cycle_cpu_s": round(time.process_time() - cpu0, 3),
            "cycle_wall_s": round(time.perf_counter() - wall0, 3)}  # fmt: skip


def child(which: str, endpoint: str) -> None:
    os.environ.update(CREDS)
    started_cpu, started = time.process_time(), time.perf_counter()
    out = asyncio.run(agent_cycle(endpoint)) if which == "agent" else boto3_cycle(endpoint)
    out.update(
        cpu_s=round(time.process_time() - started_cpu, 3),
        wall_s=round(time.perf_counter() - started, 3),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )
    print(json.dumps(out), flush=True)


# --- the parent -------------------------------------------------------------------------------


def run_child(which: str, endpoint: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", which, "--endpoint", endpoint]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False,
                         env={**os.environ, **CREDS}, cwd=ROOT)  # fmt: skip
    if out.returncode:
        raise RuntimeError(f"{which} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def measure(endpoint: str, stats: Any, reset: Any, n: int, where: str) -> list[dict[str, Any]]:
    rows = []
    for which in ("agent", "boto3"):
        reset()
        result = run_child(which, endpoint)
        hits = stats()
        result.update(
            contender=which, n=n, meters=len(METERS), endpoint=where,
            describe_calls=hits.get("DescribeInstances", 0),
            gmd_calls=hits.get("GetMetricData", 0),
            minimum_calls=math.ceil(n / 1000) + math.ceil(n * len(METERS) / 500),
            naive_gms_calls=n * len(METERS),
        )  # fmt: skip
        rows.append(result)
        print(f"  {which:6s} n={n}: {result}", flush=True)
    return rows


def on_moto(n: int) -> list[dict[str, Any]]:
    import boto3

    from testbed.aws import MotoServer

    os.environ.update(CREDS)
    with MotoServer() as moto:
        ec2 = boto3.client("ec2", **moto.client_kwargs())
        ids: list[str] = []
        for r in range(0, n, 100):
            count = min(100, n - r)
            resp = ec2.run_instances(ImageId="ami-760aaa0f", InstanceType="m5.large",
                                     MinCount=count, MaxCount=count)  # fmt: skip
            for inst in resp["Instances"]:
                ec2.create_tags(Resources=[inst["InstanceId"]],
                                Tags=[{"Key": TAG, "Value": str(uuid.uuid4())}])  # fmt: skip
                ids.append(inst["InstanceId"])
        base = int(time.time()) // PERIOD * PERIOD
        moto.seed_metrics([
            {"name": CW[m], "dims": {"InstanceId": i}, "ts": base - k * PERIOD + 1,
             "value": 1.0, "unit": "Percent"}
            for i in ids for m in METERS for k in (1, 2)  # the two newest complete periods
        ])  # fmt: skip

        def stats() -> dict[str, int]:
            return dict(moto.stats()["hits"])

        return measure(moto.endpoint, stats, lambda: moto.post("/_fault/clear"), n, "moto")


def on_canned(n: int, latency_ms: int = 0) -> list[dict[str, Any]]:
    import urllib.request

    proc = subprocess.Popen([sys.executable, __file__, "--serve-canned", str(n),
                             "--answer-latency-ms", str(latency_ms)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # BASE
        port = int(proc.stdout.readline().split()[1])
        base = f"http://127.0.0.1:{port}"

        def stats() -> dict[str, int]:
            with urllib.request.urlopen(base + "/_stats", timeout=30) as r:
                return dict(json.loads(r.read())["hits"])

        def reset() -> None:
            urllib.request.urlopen(urllib.request.Request(base + "/_reset", method="POST"),
                                   timeout=30).close()  # fmt: skip

        where = f"canned+{latency_ms}ms" if latency_ms else "canned"
        return measure(base, stats, reset, n, where)
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


def added_wall(rows: list[dict[str, Any]]) -> None:
    """wall_added_s of each latency row: its cycle's wall time less the same contender's
    without latency (the cycle's alone: the start of a child process varies more than that)."""
    plain = {(r["n"], r["contender"]): r["cycle_wall_s"] for r in rows if r["endpoint"] == "canned"}
    for r in rows:
        base = plain.get((r["n"], r["contender"]))
        if r["endpoint"].startswith("canned+") and base is not None:
            r["wall_added_s"] = round(r["cycle_wall_s"] - base, 3)
            print(f"  {r['contender']:6s} {r['endpoint']}: wall added {r['wall_added_s']} s")


def table(rows: list[dict[str, Any]]) -> None:
    head = ("endpoint", "n", "contender", "describe", "gmd", "minimum", "cpu_s", "cycle_cpu",
            "wall_s", "rss_mb", "samples")  # fmt: skip
    print("\n" + " | ".join(f"{h:>9s}" for h in head))
    for r in rows:
        cells = (r["endpoint"], r["n"], r["contender"], r["describe_calls"], r["gmd_calls"],
                 r["minimum_calls"], r["cpu_s"], r["cycle_cpu_s"], r["wall_s"], r["peak_rss_mb"],
                 r["samples"])  # fmt: skip
        print(" | ".join(f"{c!s:>9s}" for c in cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    # cpu_s counts the whole child (imports and client set-up included); cycle_cpu only the
    # collection and packaging, once the clients exist
    ap.add_argument("--child", choices=["agent", "boto3"])
    ap.add_argument("--endpoint")
    ap.add_argument("--serve-canned", type=int)
    ap.add_argument("--periods", type=int, default=0)
    ap.add_argument("--answer-latency-ms", type=int, default=0)
    ap.add_argument("--salt", default="")
    ap.add_argument("--moto-sizes", type=int, nargs="*", default=[1000])
    ap.add_argument("--canned-sizes", type=int, nargs="*", default=[1000, 10000])
    # the wall a request latency adds to a cycle: the 1,000-instance canned run again with
    # each answer this late, beside the run without (wall_added_s)
    ap.add_argument("--latency-ms", type=int, nargs="*", default=[50, 250])
    ap.add_argument("--latency-size", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "agent.json")
    a = ap.parse_args()
    if a.serve_canned:
        serve_canned(a.serve_canned, a.periods, a.salt, a.answer_latency_ms)
        return
    if a.child:
        child(a.child, a.endpoint)
        return
    rows: list[dict[str, Any]] = []
    for n in a.moto_sizes:
        print(f"moto, {n} instances x {len(METERS)} meters", flush=True)
        rows += on_moto(n)
    for n in a.canned_sizes:
        print(f"canned endpoint, {n} instances x {len(METERS)} meters", flush=True)
        rows += on_canned(n)
    for ms in a.latency_ms:
        print(f"canned endpoint, {a.latency_size} instances, {ms} ms per answer", flush=True)
        rows += on_canned(a.latency_size, ms)
    added_wall(rows)
    table(rows)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"bench": "agent", "at": dt.datetime.now(dt.timezone.utc).isoformat(),
           "python": sys.version.split()[0], "cpus": os.cpu_count(), "rows": rows}  # fmt: skip
    a.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
