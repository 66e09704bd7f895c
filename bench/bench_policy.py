"""Policy benchmark: p50/p99 of decide() and of the filter's work over 1,000 host states.

    .venv/bin/python bench/bench_policy.py [--hosts 1000] [--rounds 2000]

Targets (DESIGN.md): decide p99 < 1 ms, filter (load from 1,000 host states + decide + keep
the chosen AZ's hosts) p99 < 5 ms. The filter is PolicyEngine.filter, which is everything
FederationFilter.filter_all does but the translation of Nova's RequestSpec. Prints a table and
writes bench/results/policy.json for later runs to compare.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from azfed.policy import Flavor, History, Request, decide, load_from_hosts  # noqa: E402
from azfed.policy.engine import PolicyEngine  # noqa: E402

from testbed.policies import Host, make_policy, policy_doc  # noqa: E402

TARGETS_MS = {"decide": 1.0, "filter": 5.0}


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


def timed(fn: Callable[[], object], rounds: int) -> list[float]:
    for _ in range(min(100, rounds)):  # warm caches and the schema validator
        fn()
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def pct(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2000)
    args = ap.parse_args()
    policy, hs = make_policy(), hosts(args.hosts)
    load = load_from_hosts(hs, policy)
    req = Request(Flavor("small", 1, 512), instance_uuid="bench")
    history = History(mode="burst", mode_since=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        pfile = Path(tmp) / "policy.json"
        pfile.write_text(json.dumps(policy_doc()))
        engine = PolicyEngine(pfile, log=_Quiet())
        results = {
            "decide": timed(lambda: decide(req, load, policy, history, 1000.0), args.rounds),
            "filter": timed(lambda: engine.filter(hs, req), args.rounds),
        }
    rows = {
        name: {
            "p50_ms": round(pct(s, 50), 4),
            "p99_ms": round(pct(s, 99), 4),
            "target_p99_ms": TARGETS_MS[name],
            "ok": pct(s, 99) < TARGETS_MS[name],
        }
        for name, s in results.items()
    }
    print(f"{'what':8} {'p50 ms':>9} {'p99 ms':>9} {'target':>8}  ok  ({args.hosts} hosts)")
    for name, r in rows.items():
        print(
            f"{name:8} {r['p50_ms']:9.4f} {r['p99_ms']:9.4f} {r['target_p99_ms']:8.1f}  {r['ok']}"
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


class _Quiet:
    """The canonical decision line is not what is measured: drop it."""

    def info(self, *a: object, **k: object) -> None:
        pass

    def error(self, *a: object, **k: object) -> None:
        pass


if __name__ == "__main__":
    main()
