"""kill -9 of one of two receivers while a 10,000-instance agent pushes: is every measure in
Gnocchi exactly once, and did the agent only retry?

    .venv/bin/python -m testbed start       # MariaDB and Gnocchi
    .venv/bin/python bench/bench_ha_kill.py [--instances 10000] [--periods 2]

The real agent reads a canned EC2 + CloudWatch endpoint (bench_agent.py's: botocore's own
parsers run on pre-rendered DescribeInstances pages and GetMetricData answers; moto takes
minutes per cycle at this size) that gives each instance one CPUUtilization datapoint per
period for the newest `--periods` complete periods. It pushes through HAProxy to two receivers
on one database of the bed's MariaDB, which write into the bed's real Gnocchi. Once both have
accepted reports, the lease holder is killed with SIGKILL while it writes one. When the agent's
spool is empty, every instance's measures are read back from Gnocchi and compared with what
the endpoint served, timestamp and value. tests/receiver/test_ha_bed.py asserts the same at a
size `make test` can afford; this prints the figures at the issue's size. Writes
bench/results/ha_kill.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from azfed import wire  # noqa: E402

from bench.bench_agent import canned_uuid  # noqa: E402
from testbed.openstack import DB_PASSWORD, HOST, PORTS  # noqa: E402
from testbed.procs import free_port  # noqa: E402
from testbed.receivers import ReceiverCluster, database_url, mariadb_admin, scrape  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "ha_kill.json"
PERIOD = 300
AGENT = "bench-ha-agent"
SECRET = b"bench-ha-secret-0123456789abcdefghijklmnop"
GNOCCHI = f"http://127.0.0.1:{PORTS['gnocchi-api']}"
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def _canned(n: int, periods: int, salt: str) -> tuple[subprocess.Popen[str], str, int]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "bench_agent.py"), "--serve-canned", str(n),
         "--periods", str(periods), "--salt", salt],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    base = int(proc.stdout.readline().split()[1])
    port = int(proc.stdout.readline().split()[1])
    return proc, f"http://127.0.0.1:{port}", base


def _agent_config(home: Path, endpoint: str, url: str, periods: int, health: int) -> Path:
    (home / "agent.secret").write_bytes(SECRET)
    path = home / "agent.toml"
    path.write_text(f"""
[agent]
id = "{AGENT}"
provider = "ec2"

[aws]
region = "us-east-1"
endpoint_url = "{endpoint}"
vpc_id = "vpc-0123456789abcdef0"  # the canned endpoint ignores the filter

[collect]
# one cycle in the bench's lifetime: its reports are the load (at 10,000 instances a cycle's
# instance states alone take the one surviving receiver about a minute to write)
interval_s = 3600
jitter_s = 0
metrics_period_s = {PERIOD}
lookback_periods = {periods}
publication_delay_s = 0
meters = ["cpu"]
status_checks = false

[push]
url = "{url}{wire.REPORTS_PATH}"
secret_file = "{home / "agent.secret"}"
flush_interval_s = 1
# many reports in a row: a steady load to kill a receiver in
batch_max_samples = 500
max_backoff_s = 5
timeout_s = 120

[spool]
path = "{home / "spool"}"

[health]
port = {health}
""")
    return path


def _sections() -> str:
    return f"""
[nova]
cloud = "local"
public_azs = ["aws-az"]

[gnocchi]
endpoint = "{GNOCCHI}"
auth_mode = "basic"

[reconcile]
lease_ttl_s = 6
"""


def _claims_in_flight(database: str) -> int:
    import pymysql

    conn = pymysql.connect(host=HOST, port=PORTS["mariadb"], user="root", password=DB_PASSWORD,
                           database=database)  # fmt: skip
    with conn, conn.cursor() as cur:
        return int(cur.execute("SELECT 1 FROM azfed_reports WHERE status = 'inflight'"))


def _wait(what: str, check: Any, timeout: float, interval: float = 0.5) -> float:
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"waited {timeout:.0f}s for {what}")
        time.sleep(interval)
    return time.monotonic() - t0


def _measures(n: int, salt: str) -> dict[str, list[tuple[int, float]]]:
    from gnocchiclient import auth, client
    from gnocchiclient.exceptions import NotFound

    gnocchi = client.Client("1", session_options={
        "auth": auth.GnocchiBasicPlugin(user="admin", endpoint=GNOCCHI)})  # fmt: skip

    def one(k: int) -> tuple[str, list[tuple[int, float]]]:
        u = str(canned_uuid(k, salt))
        try:
            got = gnocchi.metric.get_measures(
                "cpu", resource_id=u, granularity=PERIOD, refresh=True
            )
        except NotFound:
            got = []
        return u, [(int(t.timestamp()), v) for t, _, v in got]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return dict(pool.map(one, range(n)))


def _cpu_ok(measures: list[tuple[int, float]], base: int, periods: int) -> bool:
    """`cpu` is cumulative ns: from one period to the next it grows by that period's
    CPUUtilization x 2 vCPUs x 300 s; the canned server's values are 1, 2, ... from the oldest
    period served (`periods` back) to the newest."""
    steps = itertools.pairwise(measures)
    return all(
        abs((v2 - v1) - _canned_value(t2, base, periods) / 100 * 2 * PERIOD * 1e9) < 1e3
        for (_, v1), (t2, v2) in steps
    )


def _canned_value(t: int, base: int, periods: int) -> int:
    """bench_agent.serve_canned's value at period start `t`: k+1 for the k-th stamp, oldest
    first."""
    return periods - (base - t) // PERIOD + 1


def run(n: int, periods: int) -> dict[str, Any]:
    name = f"azfed_hakill_{secrets.token_hex(4)}"
    url = database_url(name)
    mariadb_admin(f"CREATE DATABASE `{name}`")
    salt = secrets.token_hex(4)
    canned, endpoint, base = _canned(n, periods, salt)
    tmp = Path(tempfile.mkdtemp(prefix="azfed-hakill-"))
    cluster = ReceiverCluster(tmp, url, {AGENT: SECRET}, 'sinks = ["gnocchi"]\n', _sections())
    agent = None
    try:
        cluster.start(2)
        health = free_port()
        cfg = _agent_config(tmp, endpoint, cluster.url, periods, health)
        with (tmp / "agent.log").open("ab") as log:
            agent = subprocess.Popen(
                [sys.executable, "-m", "azfed.cli", "agent", "run", "--config", str(cfg)],
                env={**os.environ, **CREDS, "AZFED_LOG_FORMAT": "json"}, stdout=log, stderr=log,
            )  # fmt: skip
        t0 = time.monotonic()
        r1, r2 = cluster.receivers

        def both_accepting() -> bool:
            if agent is not None and agent.poll() is not None:
                raise RuntimeError(f"the agent exited: see {tmp / 'agent.log'}")
            return r1.accepted() >= 1 and r2.accepted() >= 1

        _wait("both receivers accepting", both_accepting, 900)
        holder = next(r for r in cluster.receivers if r.holds_lease())
        survivor = r2 if holder is r1 else r1

        # the agent has one report in flight: when the holder is busy, the survivor idle and a
        # claim open in the database, the holder is writing that report (past its checks)
        def writing() -> bool:
            busy = holder.inflight() >= 1 and survivor.inflight() == 0
            return busy and _claims_in_flight(name) == 1

        _wait("the holder writing a report", writing, 600, 0.02)
        holder.kill9()
        killed = time.monotonic()
        lease_s = _wait("the survivor taking the lease", survivor.holds_lease, 60, 0.1)

        def drained() -> bool:
            m = scrape(health)
            pushed = m.get(("azfed_agent_samples_total", (("stage", "pushed"),)), 0)
            return pushed >= n * periods and m.get(("azfed_agent_spool_reports", ()), 1) == 0

        _wait("the agent's spool drained", drained, 1800, 2)
        drain_s = time.monotonic() - killed
        agent_metrics = scrape(health)
        total_s = time.monotonic() - t0
        got = _measures(n, salt)
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(60)
        cluster.stop()
        canned.terminate()
        canned.wait(10)
        mariadb_admin(f"DROP DATABASE IF EXISTS `{name}`")
    stamps_wanted = {base - k * PERIOD for k in range(1, periods + 1)}
    lost = sum(len(stamps_wanted - {t for t, _ in m}) for m in got.values())
    extra = sum(sum(1 for t, _ in m if t not in stamps_wanted) for m in got.values())
    wrong_value = sum(not _cpu_ok(m, base, periods) for m in got.values())
    answers = {dict(k[1])["outcome"]: v for k, v in agent_metrics.items()
               if k[0] == "azfed_agent_reports_total"}  # fmt: skip
    dropped = sum(
        v for k, v in agent_metrics.items() if k[0] == "azfed_agent_samples_dropped_total"
    )
    return {
        "instances": n, "periods": periods, "measures_expected": n * periods,
        "measures_found": sum(len(m) for m in got.values()), "lost": lost,
        "unexpected": extra, "wrong_value": wrong_value, "agent_answers": answers,
        "agent_samples_dropped": dropped, "lease_moved_s": round(lease_s, 1),
        "drained_after_kill_s": round(drain_s, 1), "total_s": round(total_s, 1),
        "logs": str(tmp),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--instances", type=int, default=10_000)
    ap.add_argument("--periods", type=int, default=2)
    args = ap.parse_args()
    result = run(args.instances, args.periods)
    print(json.dumps(result, indent=1))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"when": time.time(), **result}, indent=1) + "\n")


if __name__ == "__main__":
    main()
