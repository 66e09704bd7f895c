"""Two receivers behind Debian's HAProxy, sharing one database on the bed's MariaDB, writing into
the bed's real Gnocchi, fed by the real agent reading moto's EC2 and CloudWatch:

- the same report delivered to both receivers at once is applied once;
- one receiver at a time holds the reconciliation lease;
- kill -9 of the lease holder in the middle of a steady load loses and duplicates no measure
  in Gnocchi (counted exactly, per instance), the agent only retried (nothing dropped, the
  spool drained), reports were applied in the agent's order, and the lease moved to the
  survivor, which reconciled at once.

Run beside a running bed with
`AZFED_TESTBED_REUSE=1 .venv/bin/pytest -p no:cacheprovider -q tests/receiver/test_ha_bed.py`.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from azfed import wire
from azfed.clouds import UUID_TAG

from testbed.aws import MotoServer
from testbed.openstack import PORTS, OpenStackBed
from testbed.procs import free_port
from testbed.receivers import ReceiverCluster, azfed, scrape
from tests.faultproxy import FaultProxy, fault_proxy_thread
from tests.receiver.conftest import AGENT, SECRET, example, restamp
from tests.receiver.test_mariadb import mariadb_url  # noqa: F401 - a database of the test's own
from tests.waiting import until_sync

GNOCCHI = f"http://127.0.0.1:{PORTS['gnocchi-api']}"
REGION = "us-east-1"
PERIOD = 300
LEASE_TTL_S = 3.0
# The load: N instances, each with a CPU datapoint in each of P complete 5-minute periods,
# pushed in reports of at most BATCH samples: about N * P / BATCH reports in a row.
N, P, BATCH = 40, 6, 20
METER = "cpu"


RECEIVER_KEYS = """sinks = ["gnocchi"]
# a claim left in flight by a receiver that died is taken over after twice this
write_timeout_s = 4
"""


def _sections(gnocchi: str) -> str:
    return f"""
[nova]
cloud = "local"
public_azs = ["aws-az"]

[gnocchi]
endpoint = "{gnocchi}"
auth_mode = "basic"

[reconcile]
interval_s = 300
lease_ttl_s = {LEASE_TTL_S}
"""


@pytest.fixture
def gnocchi_faults(openstack_bed: OpenStackBed) -> Iterator[FaultProxy]:
    """The bed's real Gnocchi behind the fault layer, for the receivers."""
    with fault_proxy_thread(GNOCCHI) as proxy:
        yield proxy


@pytest.fixture
def cluster(
    mariadb_url: str,  # noqa: F811 - the fixture imported above
    gnocchi_faults: FaultProxy,
    tmp_path: Path,
) -> Iterator[ReceiverCluster]:
    sections = _sections(gnocchi_faults.url)
    c = ReceiverCluster(tmp_path, mariadb_url, {AGENT: SECRET}, RECEIVER_KEYS, sections)
    try:
        yield c.start()
    finally:
        c.stop()


def _post(port: int, body: bytes, headers: dict[str, str]) -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{wire.REPORTS_PATH}", data=body, headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_the_same_report_sent_to_both_receivers_at_once_is_applied_once(
    cluster: ReceiverCluster,
) -> None:
    """Both get the same signed report at the same moment: between them it is written once
    (one `accepted`), and each answer is one the agent handles without losing it (200, or 409
    in flight, which it retries and then gets the cached 200)."""
    now = time.time()
    body, headers = wire.encode_report(
        restamp(example(), now), secret=SECRET, agent_id=AGENT, seq=42, now=now, gzip=True
    )
    ports = [r.port for r in cluster.receivers]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = sorted(pool.map(lambda p: _post(p, body, headers), ports))
    assert answers in ([200, 200], [200, 409]), answers
    assert sum(r.accepted() for r in cluster.receivers) == 1
    # the retry of whichever got 409, through the balancer: the first answer, nothing written
    assert cluster.haproxy is not None
    assert _post(cluster.haproxy.port, body, headers) == 200
    assert sum(r.accepted() for r in cluster.receivers) == 1


def test_one_receiver_at_a_time_holds_the_reconciliation_lease(cluster: ReceiverCluster) -> None:
    until_sync(
        lambda: any(r.holds_lease() for r in cluster.receivers), "a receiver takes the lease"
    )
    time.sleep(LEASE_TTL_S)  # three renewals later, still exactly one
    assert [r.holds_lease() for r in cluster.receivers].count(True) == 1


# --- kill -9 under load --------------------------------------------------------------------


@dataclass
class Load:
    """N tagged EC2 instances in moto, each with one CPU datapoint in each of P complete
    periods: the measures Gnocchi must end up with, exactly."""

    uuids: list[str]
    vpc_id: str
    end: int  # the end of the newest period seeded
    vcpus: int  # of the instance type, as EC2 documents it

    def expected(self) -> list[tuple[int, float]]:
        """Each instance's `cpu` measures: one per seeded period, cumulative CPU time in ns,
        as Ceilometer counts it: each period adds utilisation x vCPUs x the period."""
        ns, out = 0.0, []
        for k in range(P, 0, -1):  # oldest first
            ns += (10 + k) / 100 * self.vcpus * PERIOD * 1e9
            out.append((self.end - k * PERIOD, ns))
        return out


def _same(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> bool:
    """The same timestamps, and values equal within float rounding of ~1e13 ns."""
    return [t for t, _ in got] == [t for t, _ in want] and all(
        abs(g - w) < 1e3 for (_, g), (_, w) in zip(got, want, strict=True)
    )


def _seed_load(moto: MotoServer) -> Load:
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=moto.endpoint)
    cw = boto3.client("cloudwatch", region_name=REGION, endpoint_url=moto.endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.0.0/20")["Subnet"]["SubnetId"]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    uuids, ids = [], []
    for _ in range(N):
        u = str(uuid.uuid4())
        tags = [{"ResourceType": "instance", "Tags": [{"Key": UUID_TAG, "Value": u}]}]
        got = ec2.run_instances(
            ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1,
            SubnetId=subnet, TagSpecifications=tags,
        )  # fmt: skip
        uuids.append(u)
        ids.append(got["Instances"][0]["InstanceId"])
    # the newest complete period is k=1; the agent's window holds k=1..P+1, so the periods
    # seeded (k=1..P) all stay inside it even if a period boundary passes during the test
    end = int(time.time()) // PERIOD * PERIOD
    data = [
        {
            "MetricName": "CPUUtilization",
            "Dimensions": [{"Name": "InstanceId", "Value": iid}],
            "Timestamp": dt.datetime.fromtimestamp(end - k * PERIOD + 60, dt.UTC),
            "Value": float(10 + k),
            "Unit": "Percent",
        }
        for iid in ids
        for k in range(1, P + 1)
    ]
    for i in range(0, len(data), 500):
        cw.put_metric_data(Namespace="AWS/EC2", MetricData=data[i : i + 500])
    kind = ec2.describe_instance_types(InstanceTypes=["t3.micro"])["InstanceTypes"][0]
    return Load(uuids, vpc, end, kind["VCpuInfo"]["DefaultVCpus"])


def _agent_config(home: Path, moto: MotoServer, vpc_id: str, url: str, health_port: int) -> Path:
    (home / "agent.secret").write_bytes(SECRET)
    path = home / "agent.toml"
    path.write_text(f"""
[agent]
id = "{AGENT}"
provider = "ec2"

[aws]
region = "{REGION}"
endpoint_url = "{moto.endpoint}"
vpc_id = "{vpc_id}"

[collect]
interval_s = 5
jitter_s = 0
metrics_period_s = {PERIOD}
lookback_periods = {P}
publication_delay_s = 0
meters = ["{METER}"]
status_checks = false

[push]
url = "{url}{wire.REPORTS_PATH}"
secret_file = "{home / "agent.secret"}"
flush_interval_s = 1
batch_max_samples = {BATCH}
max_backoff_s = 2

[spool]
path = "{home / "spool"}"

[health]
port = {health_port}
""")
    return path


def _gnocchi_measures(uuids: list[str]) -> dict[str, list[tuple[int, float]]]:
    """Each instance's measures in the bed's Gnocchi (period start, value), once metricd has
    processed everything sent."""
    from gnocchiclient import auth, client
    from gnocchiclient.exceptions import NotFound

    plugin = auth.GnocchiBasicPlugin(user="admin", endpoint=GNOCCHI)
    gnocchi = client.Client("1", session_options={"auth": plugin})
    out = {}
    for u in uuids:
        try:
            got = gnocchi.metric.get_measures(
                METER, resource_id=u, granularity=PERIOD, refresh=True
            )
        except NotFound:
            got = []
        out[u] = [(int(t.timestamp()), v) for t, _, v in got]
    return out


def _query(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    import pymysql
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    conn = pymysql.connect(host=url.host, port=url.port, user=url.username,
                           password=url.password, database=url.database)  # fmt: skip
    with conn, conn.cursor() as cur:
        cur.execute(sql)
        return list(cur.fetchall())


def _finished_in_seq_order(database_url: str) -> bool:
    """The agent's reports were finished in the order of their sequence numbers."""
    done = [
        row[0]
        for row in _query(
            database_url,
            f"SELECT finished_at FROM azfed_reports WHERE agent_id = '{AGENT}'"
            " AND status = 'done' ORDER BY seq",
        )
    ]
    return len(done) > 1 and done == sorted(done)


def test_kill_9_of_the_lease_holder_under_load_loses_and_duplicates_nothing(
    cluster: ReceiverCluster, gnocchi_faults: FaultProxy, moto: MotoServer, tmp_path: Path
) -> None:
    load = _seed_load(moto)
    # each report's measures reach Gnocchi after 0.5 s: the kill below lands inside a write
    slow = gnocchi_faults.slow("POST", r"^/v1/batch/resources/metrics/measures", 0.5)
    assert cluster.haproxy is not None
    until_sync(lambda: any(r.holds_lease() for r in cluster.receivers), "a lease holder")
    holder = next(r for r in cluster.receivers if r.holds_lease())
    survivor = next(r for r in cluster.receivers if r is not holder)
    health = free_port()
    cfg = _agent_config(tmp_path, moto, load.vpc_id, cluster.haproxy.url, health)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AZFED_LOG_FORMAT": "json"}  # fmt: skip
    with (tmp_path / "agent.log").open("ab") as log:
        agent = subprocess.Popen(
            azfed("agent", "run", "--config", str(cfg)), env=env, stdout=log, stderr=log
        )
    try:
        # steady load through the balancer, both receivers writing; then kill the holder
        until_sync(
            lambda: holder.accepted() >= 3 and survivor.accepted() >= 3,
            "both receivers accepting the agent's reports", timeout=120,
        )  # fmt: skip
        # kill it while it writes a report's measures (the agent sends one report at a time:
        # a held write and the holder's in-flight gauge mean it is the holder's): the claim
        # stays behind, the agent's request is cut, and the survivor must finish that report
        until_sync(
            lambda: slow.waiting >= 1 and holder.inflight() >= 1,
            "the holder writing a report's measures", interval=0.01,
        )  # fmt: skip
        holder.kill9()
        killed_at = time.monotonic()
        until_sync(survivor.holds_lease, "the survivor takes the lease", timeout=LEASE_TTL_S * 3)
        took_over_s = time.monotonic() - killed_at
        until_sync(lambda: survivor.reconciled() >= 1, "the new holder reconciles at once")
        # the agent drains its spool through the survivor
        pushed = f"{N * P} samples pushed and the spool empty"

        def drained() -> bool:
            m = scrape(health)
            done = m.get(("azfed_agent_samples_total", (("stage", "pushed"),)), 0)
            left = m.get(("azfed_agent_spool_reports", ()), 1)
            return done >= N * P and left == 0

        until_sync(drained, pushed, timeout=240)
        agent_metrics = scrape(health)
    finally:
        agent.terminate()
        agent.wait(30)
    dropped = {
        k: v for k, v in agent_metrics.items() if k[0] == "azfed_agent_samples_dropped_total"
    }
    assert sum(dropped.values()) == 0, dropped
    answers = {
        dict(k[1])["outcome"]: v
        for k, v in agent_metrics.items()
        if k[0] == "azfed_agent_reports_total"
    }
    refused = {o: n for o, n in answers.items() if o.startswith("4") and o not in ("409", "429")}
    assert refused == {}, answers  # only retries: no report was refused for good
    # the cut report was retried: the survivor said 409 in flight until the dead receiver's
    # claim was stale (twice write_timeout_s), then wrote it
    assert answers.get("409", 0) >= 1, answers
    measures, want = _gnocchi_measures(load.uuids), load.expected()
    wrong = {u: m for u, m in measures.items() if not _same(m, want)}
    total = sum(len(m) for m in measures.values())
    print(f"\nkill -9 under load: {total} measures in Gnocchi for {N * P} seeded; lease moved "
          f"in {took_over_s:.1f}s; the agent's answers {answers}")  # fmt: skip
    some = dict(list(wrong.items())[:3])
    assert wrong == {}, f"{len(wrong)} of {N} instances differ from {want}, e.g. {some}"
    assert _finished_in_seq_order(cluster.database_url)
