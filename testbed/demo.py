"""`make demo`: the whole federation on this machine, watched step by step.

    python -m testbed.demo [--servers N] [--flavor m1.small]

1. starts the OpenStack test bed and moto (the "AWS VPC", with a subnet, a security group and
   a key pair);
2. turns on azfed's FederationFilter in nova-scheduler (with an example policy: burst when the
   local AZ's memory use reaches 50%) and FederationDriver on the proxy host compute-aws;
3. starts the azfed receiver and the azfed agent (as `azfed receiver run` / `azfed agent run`);
4. boots servers one by one through openstacksdk, showing where each lands and why;
5. seeds CloudWatch with usage for the burst instances and waits for the agent to push it;
6. prints a table (server, AZ, host, EC2 instance, state, CPU % from Gnocchi's rate of cpu)
   and writes a PNG plot of local load, thresholds and placements over time.

Every process is started through the bed, so `make demo-down` (`python -m testbed stop`)
stops them all by pid.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azfed import texttable

from testbed.aws import FAKE_CREDENTIALS, REGION
from testbed.openstack import (
    AUTH,
    AZFED_DRIVER,
    AZFED_FILTER,
    CHECKOUT,
    DEFAULT_FILTERS,
    IMAGE,
    PORTS,
    OpenStackBed,
    TestbedError,
)

AGENT_ID = "demo-vpc"
RECEIVER_PORT = 8790
AGENT_HEALTH_PORT = 9810
FLAVOR_MAP = "m1.tiny:t3.micro,m1.small:t3.small,m1.medium:t3.medium"
BURST_MEMORY_PCT = 50.0
RETURN_MEMORY_PCT = 30.0
PUBLIC_VCPUS = 512
PUBLIC_MEMORY_MB = 256 * 1024


def say(msg: str) -> None:
    print(msg, flush=True)


def step(n: int, msg: str) -> None:
    say(f"\n== {n}. {msg}")


@dataclass
class Placement:
    """One boot: where it landed and the local load just before it."""

    name: str
    t: float
    az: str
    host: str
    local_mem_pct_before: float
    server_id: str


@dataclass
class Demo:
    servers: int
    flavor: str
    bed: OpenStackBed = field(default_factory=OpenStackBed)
    moto_endpoint: str = ""
    placements: list[Placement] = field(default_factory=list)
    load_trace: list[tuple[float, float, int]] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    @property
    def home(self) -> Path:
        return self.bed.base / "demo"

    # --- 1. OpenStack + AWS ----------------------------------------------------------------------

    def start_clouds(self) -> dict[str, str]:
        self.bed.start()
        self.home.mkdir(parents=True, exist_ok=True)
        self.moto_endpoint = self._start_moto()
        return self.make_vpc()

    def _start_moto(self) -> str:
        port_file = self.bed.run / "moto.port"
        self.bed._spawn(
            "moto",
            [sys.executable, "-m", "testbed.moto_server", "--port-file", str(port_file)],
            cwd=CHECKOUT,
        )
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline:
                raise TestbedError(f"moto did not start:\n{self.bed.tail('moto')}")
            time.sleep(0.2)
        endpoint = f"http://127.0.0.1:{int(port_file.read_text())}"
        _wait_http(endpoint + "/moto-api/data.json")
        return endpoint

    def _ec2(self) -> Any:
        import boto3

        return boto3.client(
            "ec2",
            endpoint_url=self.moto_endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def make_vpc(self) -> dict[str, str]:
        ec2 = self._ec2()
        vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
        ec2.create_tags(Resources=[vpc], Tags=[{"Key": "Name", "Value": "azfed-demo"}])
        subnet = ec2.create_subnet(
            VpcId=vpc, CidrBlock="10.42.1.0/24", AvailabilityZone=f"{REGION}a"
        )["Subnet"]["SubnetId"]
        # burst VMs on Neutron ports get their addresses in a subnet of their own: in the
        # subnet above EC2 picks the addresses of the `networks=none` ones, which Neutron's
        # IPAM cannot know of, and a port's address EC2 has given away fails its launch
        ports_subnet = ec2.create_subnet(
            VpcId=vpc, CidrBlock="10.42.2.0/24", AvailabilityZone=f"{REGION}a"
        )["Subnet"]["SubnetId"]
        sg = ec2.create_security_group(
            GroupName="azfed-burst", Description="azfed burst VMs", VpcId=vpc
        )["GroupId"]
        ec2.create_key_pair(KeyName="azfed-demo")
        ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        return {
            "vpc": vpc,
            "subnet": subnet,
            "ports_subnet": ports_subnet,
            "sg": sg,
            "key": "azfed-demo",
            "ami": ami,
        }

    def mirror_network(self, vpc: dict[str, str]) -> str:
        """The Neutron network that mirrors the VPC's subnet (as `azfed network mirror` makes
        it): servers booted on it go to aws-az with a Neutron port; its name."""
        from azfed.neutron.subnets import mirror, plan

        found = self._ec2().describe_subnets(SubnetIds=[vpc["ports_subnet"]])["Subnets"][0]
        name = f"azfed-{vpc['ports_subnet']}"
        conn = self.bed.connect()
        try:
            mirror(conn, plan(found), name, shared=True, availability_zone="aws-az")
        finally:
            conn.close()
        return name

    # --- 2. azfed in Nova ------------------------------------------------------------------------

    def write_policy(
        self,
        burst_pct: float = BURST_MEMORY_PCT,
        return_pct: float = RETURN_MEMORY_PCT,
        cooldown_s: float = 60,
    ) -> Path:
        policy = {
            "$comment": "The demo's policy: burst to aws-az when local-az's memory use reaches "
            f"{burst_pct:.0f}%, come back below {return_pct:.0f}%.",
            "version": 1,
            "local_az": "local-az",
            "public_azs": [
                {
                    "name": "aws-az",
                    "provider": "ec2",
                    "priority": 10,
                    "caps": {"instances": 20, "hourly_cost": 5.0},
                    "prices": {"m1.tiny": 0.0104, "m1.small": 0.0208, "m1.medium": 0.0416},
                }
            ],
            "burst": {"memory_used_pct": burst_pct, "instances": 50},
            "return": {"memory_used_pct": return_pct, "instances": 40},
            "cooldown": {"return_after_s": cooldown_s, "burst_after_s": cooldown_s / 2},
            "flavors": {"allow": ["m1.*"], "deny": []},
            "explicit_az": "honour",
            "fallback": {
                "capacity_backoff": {"initial_s": 300, "max_s": 3600},
                "when_public_unavailable": "local",
            },
        }
        path = self.home / "policy.json"
        path.write_text(json.dumps(policy, indent=2) + "\n")
        return path

    def enable_azfed(self, vpc: dict[str, str], policy: Path) -> None:
        env = {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": self.moto_endpoint}
        self.bed.reconfigure(
            aws_driver=AZFED_DRIVER,
            filters=[*DEFAULT_FILTERS, AZFED_FILTER],
            extra_nova={
                "azfed": {
                    "provider": "ec2",
                    "region": REGION,
                    "endpoint_url": self.moto_endpoint,
                    "subnet_id": vpc["subnet"],
                    "security_group_ids": vpc["sg"],
                    "key_name": vpc["key"],
                    "flavor_map": FLAVOR_MAP,
                    "default_image": vpc["ami"],
                    "receiver_url": f"http://127.0.0.1:{RECEIVER_PORT}",
                    # the burst allowance the proxy host offers Placement: the blueprint's
                    # "quota of this host is increased"
                    "vcpus": PUBLIC_VCPUS,
                    "memory_mb": PUBLIC_MEMORY_MB,
                    "max_instances": 100,
                },
                "azfed_filter": {
                    "policy_file": policy,
                    "public_azs": "aws-az",
                    "state_file": self.home / "filter-state.json",
                },
            },
            extra_env=env,
        )

    # --- 3. receiver + agent ---

    def start_receiver_and_agent(self, vpc: dict[str, str], policy: Path) -> None:
        secret = secrets.token_hex(32)
        secrets_dir = self.home / "secrets"
        secrets_dir.mkdir(exist_ok=True, mode=0o700)
        (secrets_dir / f"agents_{AGENT_ID}").write_text(secret + "\n")  # secrets_prefix
        (self.home / "agent.secret").write_text(secret + "\n")
        clouds = self.home / "clouds.yaml"
        clouds.write_text(_clouds_yaml())
        receiver_toml = self.home / "receiver.toml"
        receiver_toml.write_text(_receiver_toml(self.home, secrets_dir, policy))
        agent_toml = self.home / "agent.toml"
        agent_toml.write_text(_agent_toml(self.home, self.moto_endpoint, vpc))
        azfed = str(Path(sys.executable).parent / "azfed")
        env = {"OS_CLIENT_CONFIG_FILE": str(clouds), **FAKE_CREDENTIALS}
        self._spawn_logged(
            "azfed-receiver", [azfed, "receiver", "run", "--config", str(receiver_toml)], env
        )
        _wait_http(f"http://127.0.0.1:{RECEIVER_PORT}/healthz")
        env_agent = {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": self.moto_endpoint}
        self._spawn_logged(
            "azfed-agent", [azfed, "agent", "run", "--config", str(agent_toml)], env_agent
        )
        _wait_http(f"http://127.0.0.1:{AGENT_HEALTH_PORT}/healthz")

    def stop_receiver_and_agent(self) -> None:
        for name in ("azfed-agent", "azfed-receiver"):
            self.bed._stop_one(name)

    def _spawn_logged(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        # JSON lines in the bed's logs/, whatever the terminal
        self.bed._spawn(name, argv, cwd=CHECKOUT, env={**env, "AZFED_LOG_FORMAT": "json"})

    # --- 4. boots ---

    def local_memory_pct(self, conn: Any) -> tuple[float, int]:
        from azfed.policy.load import load_from_cloud
        from azfed.policy.model import load_policy

        load = load_from_cloud(conn, load_policy(self.home / "policy.json"))
        return load.local.memory_used_pct, int(load.local.instances)

    def filter_reason(self, server_id: str) -> str:
        """The rule FederationFilter applied to this boot, from its state file."""
        try:
            state = json.loads((self.home / "filter-state.json").read_text())
        except (OSError, ValueError):
            return "filter state not readable"
        for d in reversed(state.get("recent", [])):
            if d.get("instance_uuid") == server_id:
                return f"{d['rule']}: {d['reason']}"
        return "no decision recorded"

    def boot_all(self) -> None:
        conn = self.bed.connect()
        flavor = conn.compute.find_flavor(self.flavor)
        image = conn.image.find_image(IMAGE)
        try:
            for i in range(1, self.servers + 1):
                pct, n = self.local_memory_pct(conn)
                self.load_trace.append((time.monotonic() - self.t0, pct, n))
                name = f"demo-{i:02d}"
                server = conn.compute.create_server(
                    name=name, flavor_id=flavor.id, image_id=image.id, networks="none"
                )
                server = conn.compute.wait_for_server(
                    server, status="ACTIVE", failures=["ERROR"], wait=300, interval=1
                )
                self.placements.append(
                    Placement(
                        name,
                        time.monotonic() - self.t0,
                        server.availability_zone,
                        server.compute_host,
                        pct,
                        server.id,
                    )
                )
                arrow = "BURST ->" if server.availability_zone != "local-az" else "local ->"
                say(
                    f"  {name}: local-az memory {pct:5.1f}% (burst at {BURST_MEMORY_PCT:.0f}%)"
                    f"  {arrow} {server.availability_zone} on {server.compute_host}"
                    f"  [{self.filter_reason(server.id)}]"
                )
            pct, n = self.local_memory_pct(conn)
            self.load_trace.append((time.monotonic() - self.t0, pct, n))
        finally:
            conn.close()

    # --- 5. usage ---

    def burst_instances(self) -> dict[str, dict[str, Any]]:
        """Nova UUID -> the EC2 instance the driver made for it (found by its azfed tag)."""
        out: dict[str, dict[str, Any]] = {}
        pages = (
            self._ec2()
            .get_paginator("describe_instances")
            .paginate(Filters=[{"Name": "tag-key", "Values": ["azfed:instance-uuid"]}])
        )
        for page in pages:
            for r in page["Reservations"]:
                for inst in r["Instances"]:
                    tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
                    out[tags["azfed:instance-uuid"]] = inst
        return out

    def seed_usage(self, instances: dict[str, dict[str, Any]]) -> None:
        """What CloudWatch would hold for busy burst VMs: the last 10 minutes, per minute."""
        now = int(time.time()) // 60 * 60
        data = []
        for k, inst in enumerate(instances.values()):
            iid = inst["InstanceId"]
            for m in range(10):
                ts = now - 60 * m
                cpu = 35.0 + 5 * k + 10 * ((m + k) % 3)
                data += [
                    {
                        "name": "CPUUtilization",
                        "dims": {"InstanceId": iid},
                        "ts": ts,
                        "value": cpu,
                        "unit": "Percent",
                    },
                    {
                        "name": "NetworkIn",
                        "dims": {"InstanceId": iid},
                        "ts": ts,
                        "value": 1.5e6 * (k + 1),
                        "unit": "Bytes",
                    },
                    {
                        "name": "NetworkOut",
                        "dims": {"InstanceId": iid},
                        "ts": ts,
                        "value": 0.7e6 * (k + 1),
                        "unit": "Bytes",
                    },
                ]
        body = json.dumps({"namespace": "AWS/EC2", "region": REGION, "data": data}).encode()
        req = urllib.request.Request(
            self.moto_endpoint + "/_seed/cloudwatch",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(req, timeout=60).close()

    def gnocchi(self) -> Any:
        from gnocchiclient import auth, client

        plugin = auth.GnocchiBasicPlugin(
            user="admin", endpoint=f"http://127.0.0.1:{PORTS['gnocchi-api']}"
        )
        return client.Client("1", session_options={"auth": plugin})

    def last_cpu_pct(self, gnocchi: Any, server_id: str) -> float | None:
        """CPU utilisation the way Ceilometer users compute it since cpu_util was removed:
        Gnocchi's rate:mean of the cumulative `cpu` (ns per granularity), per vCPU."""
        try:
            rate = gnocchi.metric.get_measures(
                "cpu", resource_id=server_id, aggregation="rate:mean", refresh=True
            )
            vcpus = gnocchi.metric.get_measures("vcpus", resource_id=server_id, refresh=True)
        except Exception:
            return None
        if not rate or not vcpus:
            return None
        _, granularity, ns = rate[-1]
        return float(ns) / (float(granularity) * 1e9 * float(vcpus[-1][2])) * 100

    def wait_for_usage(self, uuids: list[str], timeout: float = 240) -> dict[str, float | None]:
        gnocchi = self.gnocchi()
        deadline = time.monotonic() + timeout
        while True:
            got = {u: self.last_cpu_pct(gnocchi, u) for u in uuids}
            have = sum(v is not None for v in got.values())
            say(f"  CPU (rate of cpu) in Gnocchi for {have}/{len(uuids)} burst servers")
            if have == len(uuids) or time.monotonic() > deadline:
                return got
            time.sleep(5)

    # --- 6. report ---

    def table(self, instances: dict[str, dict[str, Any]], cpu: dict[str, float | None]) -> str:
        conn = self.bed.connect()
        try:
            rows = []
            for p in self.placements:
                server = conn.compute.get_server(p.server_id)
                inst = instances.get(p.server_id, {})
                util = cpu.get(p.server_id)
                rows.append(
                    (
                        p.name,
                        server.availability_zone,
                        server.compute_host,
                        inst.get("InstanceId", "-"),
                        f"{server.status}/{inst.get('State', {}).get('Name', '-')}"
                        if inst
                        else server.status,
                        "-" if util is None else f"{util:.1f}%",
                    )
                )
        finally:
            conn.close()
        head = ("server", "AZ", "host", "EC2 instance", "state (Nova/EC2)", "cpu % (Gnocchi)")
        return texttable.table(head, rows)

    def plot(self, path: Path) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
        t0 = self.load_trace[0][0]
        ts = [t - t0 for t, _, _ in self.load_trace]
        ax.step(
            ts,
            [pct for _, pct, _ in self.load_trace],
            where="post",
            color="tab:blue",
            label="local-az memory used (%)",
        )
        ax.axhline(BURST_MEMORY_PCT, color="tab:red", ls="--", label="burst threshold")
        ax.axhline(RETURN_MEMORY_PCT, color="tab:green", ls=":", label="return threshold")
        for az, colour, marker in (("local-az", "tab:blue", "o"), ("aws-az", "tab:orange", "^")):
            pts = [(p.t - t0, p.local_mem_pct_before) for p in self.placements if p.az == az]
            if pts:
                ax.scatter(
                    *zip(*pts, strict=True),
                    color=colour,
                    marker=marker,
                    s=70,
                    zorder=3,
                    label=f"boot placed in {az} ({len(pts)})",
                )
        ax.set_xlabel("seconds since the first boot request")
        ax.set_ylabel("local-az memory used (%)")
        ax.set_ylim(0, 100)
        ax.set_title("azfed demo: boots land locally until the threshold, then burst to AWS")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return path


def _wait_http(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TestbedError(f"nothing answers at {url}") from None
            time.sleep(0.5)


def _clouds_yaml() -> str:
    a = AUTH
    return (
        "clouds:\n  local:\n    auth:\n"
        f"      auth_url: {a['auth_url']}\n      username: {a['username']}\n"
        f"      password: {a['password']}\n      project_name: {a['project_name']}\n"
        f"      user_domain_name: {a['user_domain_name']}\n"
        f"      project_domain_name: {a['project_domain_name']}\n"
        f"    region_name: {a['region_name']}\n"
    )


def _receiver_toml(home: Path, secrets_dir: Path, policy: Path) -> str:
    return f"""# written by the demo
[receiver]
host = "127.0.0.1"
port = {RECEIVER_PORT}
database_url = "sqlite:///{home / "receiver.db"}"
secrets_dir = "{secrets_dir}"
policy_file = "{policy}"
policy_state_file = "{home / "filter-state.json"}"

[nova]
cloud = "local"
public_azs = ["aws-az"]

[gnocchi]
endpoint = "http://127.0.0.1:{PORTS["gnocchi-api"]}"
auth_mode = "basic"

[reconcile]
interval_s = 30
action = "report"
grace_s = 120
"""


def _agent_toml(home: Path, endpoint: str, vpc: dict[str, str]) -> str:
    return f"""# written by the demo
[agent]
id = "{AGENT_ID}"
provider = "ec2"

[aws]
region = "{REGION}"
endpoint_url = "{endpoint}"
vpc_id = "{vpc["vpc"]}"

[collect]
interval_s = 10
jitter_s = 1
# moto holds each datapoint the moment it is put: no CloudWatch publication delay to wait out
publication_delay_s = 0

[push]
url = "http://127.0.0.1:{RECEIVER_PORT}/v1/reports"
secret_file = "{home / "agent.secret"}"
flush_interval_s = 2

[spool]
path = "{home / "spool"}"

[health]
port = {AGENT_HEALTH_PORT}
"""


def _look_around(network: str) -> str:
    venv = Path(sys.executable).parent
    openstack = f"$({venv}/python -m testbed venv)/bin/openstack"
    placement = f"http://127.0.0.1:{RECEIVER_PORT}/v1/placement?flavor=m1.small"
    lines = [
        "",
        "Look around (everything runs on 127.0.0.1):",
        "  source testbed/admin-openrc",
        f"  {openstack} server list --long",
        f"  {openstack} server create --flavor m1.small --image fake-img --network {network} "
        "web-1   # goes to aws-az; its EC2 instance gets the port's address",
        f"  {venv}/azfed status --config .testbed/demo/receiver.toml",
        f"  curl -s http://127.0.0.1:{RECEIVER_PORT}/metrics | grep azfed_",
        f"  curl -s http://127.0.0.1:{AGENT_HEALTH_PORT}/readyz",
        f"  curl -s '{placement}' | python3 -m json.tool",
        "Logs: .testbed/logs/ (azfed-receiver.log, azfed-agent.log, nova-scheduler.log ...)",
        f"Dashboard: http://127.0.0.1:{PORTS['horizon']}/  user admin, password "
        f"{AUTH['password']} (Project > Compute > Instances: the burst VMs in aws-az)",
        "Stop everything: make demo-down",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m testbed.demo", description=__doc__)
    p.add_argument("--servers", type=int, default=8)
    p.add_argument("--flavor", default="m1.small")
    args = p.parse_args(argv)
    demo = Demo(servers=args.servers, flavor=args.flavor)
    try:
        step(1, "Starting the local OpenStack (test bed) and the AWS VPC (moto)")
        vpc = demo.start_clouds()
        say(f"  VPC {vpc['vpc']}, subnet {vpc['subnet']}, security group {vpc['sg']}")
        step(2, "Enabling FederationFilter (nova-scheduler) and FederationDriver (compute-aws)")
        policy = demo.write_policy()
        demo.enable_azfed(vpc, policy)
        say(f"  policy: {policy}")
        network = demo.mirror_network(vpc)
        say(f"  Neutron network {network} mirrors {vpc['ports_subnet']} (azfed network mirror)")
        step(3, "Starting the azfed receiver and agent")
        demo.start_receiver_and_agent(vpc, policy)
        step(4, f"Booting {args.servers} servers ({args.flavor}) one by one, no AZ requested")
        demo.boot_all()
        step(5, "Seeding CloudWatch for the burst VMs; waiting for the agent to push usage home")
        instances = demo.burst_instances()
        demo.seed_usage(instances)
        cpu = demo.wait_for_usage(sorted(instances))
        step(6, "Result")
        say(demo.table(instances, cpu))
        png = demo.plot(demo.home / "demo.png")
        local = sum(p.az == "local-az" for p in demo.placements)
        say(
            f"\n{local} servers stayed in local-az, {len(demo.placements) - local} burst to aws-az."
        )
        say(f"Plot of local load, thresholds and placements: {png}")
        say(_look_around(network))
    except TestbedError as err:
        say(f"demo failed: {err}\nlogs: {demo.bed.logs}; stop everything with: make demo-down")
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
