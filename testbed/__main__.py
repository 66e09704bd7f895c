"""`python -m testbed {install,start,stop,status,venv}`: the test bed's one entry point."""

from __future__ import annotations

import argparse
import json
import sys
import time

from testbed.openstack import (
    AUTH,
    DEFAULT_FILTERS,
    FAKE_DRIVER,
    HOST,
    PORTS,
    OpenStackBed,
    TestbedError,
    install,
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m testbed", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("install", help="install MariaDB, RabbitMQ and the cached OpenStack venvs")
    s = sub.add_parser("start", help="start the whole bed from empty state")
    s.add_argument("--aws-driver", default=FAKE_DRIVER, help="compute-aws's compute_driver")
    s.add_argument(
        "--filters",
        default=",".join(DEFAULT_FILTERS),
        help="nova-scheduler enabled_filters (dotted paths for out-of-tree filters)",
    )
    s.add_argument("--boot", action="store_true", help="boot one server per AZ as a smoke test")
    t = sub.add_parser("stop", help="stop every process the bed started, by pid")
    t.add_argument("--wipe", action="store_true", help="also delete its state (logs are kept)")
    sub.add_parser("status", help="which processes run; the endpoints")
    sub.add_parser("venv", help="print the OpenStack venv (its bin/ has the openstack CLI)")
    args = p.parse_args(argv)
    try:
        if args.cmd == "install":
            os_venv, gn_venv = install()
            print(f"openstack venv: {os_venv}\ngnocchi venv:   {gn_venv}")
        elif args.cmd == "start":
            t0 = time.monotonic()
            bed = OpenStackBed(aws_driver=args.aws_driver, filters=args.filters.split(","))
            bed.start(boot=args.boot)
            print(f"test bed ready in {time.monotonic() - t0:.1f}s; state in {bed.base}")
            print(f"  keystone {AUTH['auth_url']}  user admin / {AUTH['password']}, project admin")
            print(f"  dashboard http://{HOST}:{PORTS['horizon']}/  (the same login)")
            print("  " + "  ".join(f"{n}:{p}" for n, p in PORTS.items()))
        elif args.cmd == "stop":
            stopped = OpenStackBed().stop(wipe=args.wipe)
            print(f"stopped {len(stopped)} processes: {', '.join(stopped) or 'none running'}")
        elif args.cmd == "venv":
            print(install()[0])
        elif args.cmd == "status":
            bed = OpenStackBed()
            print(json.dumps({"base": str(bed.base), "running": bed.running()}, indent=2))
            return 0 if bed.running() and all(bed.running().values()) else 1
    except TestbedError as err:
        print(f"testbed: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
