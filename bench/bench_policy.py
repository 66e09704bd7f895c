"""Policy benchmark: p50/p99 of decide() and of the filter's work over 1,000 host states.

    .venv/bin/python bench/bench_policy.py [--hosts 1000] [--rounds 2000]

Each is measured twice: with the base policy, and with every rule of issue 15 on (`*_rules`):
a schedule of three windows (one in force), projects allow/deny, budgets (caps across the
public AZs, a day and a month spend budget, so decide computes the periods and the room), and
requests with a project and an `azfed:burst=prefer` hint, and a capacity back-off in force (the
second public AZ just failed for the flavor), with the filter keeping the fallback AZs' hosts
as alternates (FederationWeigher on). The filter then reads the spend from a receiver's GET
/v1/spend served here on loopback (read once, then kept, as in production).

Targets: decide p99 < 1 ms (DESIGN.md), filter (load from 1,000 host states + decide + keep
the chosen AZ's hosts) p99 < 2 ms (issue 17; DESIGN.md said 5). On a shared machine the wall
p99 is mostly the scheduler's pauses: the CPU p99 beside it is the code's own worst. The
filter is PolicyEngine.filter, which is everything
FederationFilter.filter_all does but the translation of Nova's RequestSpec. Prints a table and
writes bench/results/policy.json for later runs to compare.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from azfed.policy import Flavor, History, Request, decide, load_from_hosts  # noqa: E402
from azfed.policy.budget import Spend  # noqa: E402
from azfed.policy.engine import PolicyEngine  # noqa: E402

from testbed.policies import BASE, Host, make_policy, policy_doc  # noqa: E402

TARGETS_MS = {"decide": 1.0, "filter": 2.0, "decide_rules": 1.0, "filter_rules": 5.0}
# Monday 10:00 in Paris: inside the business-hours window
NOW = datetime.fromisoformat("2026-12-07T10:00:00+01:00").timestamp()
RULES: dict[str, Any] = {
    # caps the 1,000 hosts' 400 public instances fit, so every check runs to the budgets
    "public_azs": [
        {**az, "caps": {"instances": 1000, "vcpus": 4000, "hourly_cost": 500.0}}
        for az in BASE["public_azs"]
    ],
    "schedule": {
        "timezone": "Europe/Paris",
        "windows": [
            {"name": "nights", "from": "22:00", "to": "06:00", "caps": {"aws": {"instances": 4}}},
            {
                "name": "business",
                "days": ["mon", "tue", "wed", "thu", "fri"],
                "from": "08:00",
                "to": "19:00",
                "burst": {"memory_used_pct": 60},
                "return": {"memory_used_pct": 45},
            },
            {"name": "weekend", "days": ["sat", "sun"], "from": "00:00", "to": "24:00"},
        ],
    },
    "projects": {"allow": ["p-*"], "deny": ["p-lab", "p-ci-*"]},
    "budgets": {
        "caps": {"instances": 1500, "vcpus": 6000, "hourly_cost": 1000.0},
        "spend": {"day": 5000, "month": 150000, "warn_at_pct": 80},
        "timezone": "Europe/Paris",
    },
}


def hosts(n: int) -> list[Host]:
    """n host states: 90 % local, the rest split over the two public AZs, some load on each."""
    out = []
    for i in range(n):
        az = "local" if i % 10 < 9 else ("aws" if i % 2 else "os")
        h = Host(f"h{i}", az)
        for j in range(i % 5):
            h.boot(f"u{i}-{j}")
        out.append(h)
    return out


def timed(fn: Callable[[], object], rounds: int) -> tuple[list[float], list[float]]:
    """Each call's wall time and its thread's CPU time, in ms. On a shared machine the wall
    p99 is mostly the calls the scheduler paused for other processes (a time slice is ms):
    the CPU p99 is what the code itself costs at its worst."""
    for _ in range(min(100, rounds)):  # warm caches and the schema validator
        fn()
    wall, cpu = [], []
    for _ in range(rounds):
        c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
        fn()
        t1, c1 = time.perf_counter_ns(), time.thread_time_ns()
        wall.append((t1 - t0) / 1e6)
        cpu.append((c1 - c0) / 1e6)
    return wall, cpu


def pct(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2000)
    args = ap.parse_args()
    policy, hs = make_policy(), hosts(args.hosts)
    ruled = make_policy(**RULES)
    load = load_from_hosts(hs, policy)
    req = Request(Flavor("small", 1, 512), instance_uuid="bench")
    asked = Request(Flavor("small", 1, 512), "", "bench", "p-web", "prefer")
    history = History(mode="burst", mode_since=0.0)
    # os just failed for the flavor: skipped, and not kept as an alternate either
    failed = history.with_failure("os", "small", NOW - 10, ruled.capacity_backoff)
    spent = Spend(day=300.0, month=9000.0)
    with tempfile.TemporaryDirectory() as tmp, _spend_receiver(spent) as url:
        pfile, rfile = Path(tmp) / "policy.json", Path(tmp) / "rules.json"
        pfile.write_text(json.dumps(policy_doc()))
        rfile.write_text(json.dumps(policy_doc(**RULES)))
        engine = PolicyEngine(pfile, log=_Quiet())
        ruled_engine = PolicyEngine(rfile, log=_Quiet(), clock=lambda: NOW, spend_url=url)
        ruled_engine.record_failure("os", "small", NOW - 10)
        results = {
            "decide": timed(lambda: decide(req, load, policy, history, 1000.0), args.rounds),
            "filter": timed(lambda: engine.filter(hs, req), args.rounds),
            "decide_rules": timed(
                lambda: decide(asked, load, ruled, failed, NOW, spent), args.rounds
            ),
            "filter_rules": timed(
                lambda: ruled_engine.filter(hs, asked, with_fallback=True), args.rounds
            ),
        }
        # the rules were on: the decision came through the window, the project, the hint,
        # the caps and the budgets' room, and went public, with os backed off behind it
        last = decide(asked, load, ruled, failed, NOW, spent)
        assert (last.window, last.az, last.skipped) == ("business", "aws", ()), last
        assert last.fallback == ("local",), last
        kept, _ = ruled_engine.filter(hs, asked, with_fallback=True)
        assert {h.az for h in kept} == {"aws", "local"}
    rows = {
        name: {
            "p50_ms": round(pct(s, 50), 4),
            "p99_ms": round(pct(s, 99), 4),
            "cpu_p99_ms": round(pct(cpu, 99), 4),
            "target_p99_ms": TARGETS_MS[name],
            "ok": pct(s, 99) < TARGETS_MS[name],
        }
        for name, (s, cpu) in results.items()
    }
    print(
        f"{'what':12} {'p50 ms':>9} {'p99 ms':>9} {'cpu p99':>9} {'target':>8}  ok"
        f"  ({args.hosts} hosts)"
    )
    for name, r in rows.items():
        print(
            f"{name:12} {r['p50_ms']:9.4f} {r['p99_ms']:9.4f} {r['cpu_p99_ms']:9.4f}"
            f" {r['target_p99_ms']:8.1f}  {r['ok']}"
        )
    out = ROOT / "bench" / "results" / "policy.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "hosts": args.hosts,
        "rounds": args.rounds,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "results": rows,
    }
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


@contextlib.contextmanager
def _spend_receiver(spent: Spend) -> Iterator[str]:
    """A loopback HTTP server answering GET /v1/spend as the receiver does."""
    body = json.dumps({"day": {"spent": spent.day}, "month": {"spent": spent.month}}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _Quiet:
    """The canonical decision line is not what is measured: drop it."""

    def info(self, *a: object, **k: object) -> None:
        pass

    def error(self, *a: object, **k: object) -> None:
        pass


if __name__ == "__main__":
    main()
