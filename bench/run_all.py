"""Run every azfed benchmark and print one table with the targets beside the figures.

    .venv/bin/python bench/run_all.py [--skip-run] [--no-gnocchi]

Runs bench_policy.py, bench_receiver.py, bench_gnocchi.py and bench_agent.py (each writes its
own JSON in bench/results/), then gathers them into bench/results/summary.json. With --skip-run
it only gathers the JSON already there. The Gnocchi rows need the OpenStack test bed running
(`make testbed-up`); without it they are skipped rather than guessed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

Row = tuple[str, str, str, str]  # what, figure, target, verdict


def run(no_gnocchi: bool) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    # 200 reports: the p99 of bench_receiver's default 40 is their slowest (README's figures
    # were measured with 200)
    receiver = [sys.executable, "bench/bench_receiver.py", "--reports", "200"]
    if no_gnocchi:
        # bench_receiver skips its Gnocchi row when nothing answers at --gnocchi
        print("(--no-gnocchi: the receiver runs with the null sink only)")
        receiver += ["--gnocchi", "http://127.0.0.1:9"]
    gnocchi = [] if no_gnocchi else [[sys.executable, "bench/bench_gnocchi.py"]]
    for argv in (
        [sys.executable, "bench/bench_policy.py"],
        receiver,
        *gnocchi,
        [sys.executable, "bench/bench_agent.py"],
    ):
        print(f"$ {' '.join(argv[1:])}", flush=True)
        # bench_gnocchi exits 2 when no Gnocchi answers: its row is skipped, not failed
        rc = subprocess.run(argv, cwd=ROOT, env=env, check=False).returncode
        if rc not in (0, 2) or (rc == 2 and argv not in gnocchi):
            raise SystemExit(f"{argv[1]} failed (exit {rc})")


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _ok(good: bool) -> str:
    return "meets" if good else "MISSES"


def policy_rows(doc: dict[str, Any]) -> list[Row]:
    r = doc["results"]
    return [
        (
            f"policy: decide() p99 ({doc['hosts']} hosts)",
            f"{r['decide']['p99_ms']:.3f} ms",
            "< 1 ms",
            _ok(r["decide"]["p99_ms"] < 1.0),
        ),
        (
            f"policy: filter p99 ({doc['hosts']} hosts)",
            f"{r['filter']['p99_ms']:.2f} ms",
            "< 2 ms",
            _ok(r["filter"]["p99_ms"] < 2.0),
        ),
        # issue 15: with budgets, a schedule, projects, hints and a capacity back-off on
        *(
            [
                (
                    f"policy: decide() p99 with the rules on ({doc['hosts']} hosts)",
                    f"{r['decide_rules']['p99_ms']:.3f} ms",
                    "< 1 ms",
                    _ok(r["decide_rules"]["p99_ms"] < 1.0),
                ),
                (
                    f"policy: filter p99 with the rules on ({doc['hosts']} hosts)",
                    f"{r['filter_rules']['p99_ms']:.2f} ms",
                    "< 5 ms",
                    _ok(r["filter_rules"]["p99_ms"] < 5.0),
                ),
            ]
            if "filter_rules" in r
            else []
        ),
    ]


# issue 17's targets for the receiver with the null sink (its own work, no backend)
RECEIVER_SAMPLES_PER_CPU_S = 50_000
RECEIVER_P99_MS = 20.0


def receiver_rows(doc: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for name, r in doc["results"].items():
        sink = name.split(",")[0]
        judged = sink == "null"
        rate = r["samples_per_cpu_s"]
        rows.append(
            (
                f"receiver: {name}, samples/s per core",
                f"{rate:,}",
                f">= {RECEIVER_SAMPLES_PER_CPU_S:,}" if judged else "report",
                _ok(rate >= RECEIVER_SAMPLES_PER_CPU_S) if judged else "-",
            )
        )
        if r["samples_per_report"] == 1000:
            # the restated case: the agent's steady state, every instance observed anew
            case = ", instances restated" if "restated" in name else ""
            rows.append(
                (
                    f"receiver: {sink} sink, p99 of a 1,000-sample report{case}",
                    f"{r['p99_ms']:.0f} ms",
                    f"<= {RECEIVER_P99_MS:.0f} ms" if judged else "report",
                    _ok(r["p99_ms"] <= RECEIVER_P99_MS) if judged else "-",
                )
            )
    return rows


def gnocchi_rows(doc: dict[str, Any]) -> list[Row]:
    return [
        (
            f"receiver + Gnocchi sink vs Gnocchi's own batch writes ({doc['samples_per_report']}"
            " samples/report, wall)",
            f"{doc['ratio']:.2f} x",
            f">= {doc['target_ratio']} x",
            _ok(doc["ok"]),
        )
    ]


# issue 17's targets for the agent, each against the strong boto3 script of the same run
AGENT_CPU_RATIO = 0.25
AGENT_RSS_MIB = 100
AGENT_RSS_AT = 10_000
AGENT_LATENCY_RATIO = 0.3


def agent_rows(doc: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    by = {(r["endpoint"], r["instances"], r["contender"]): r for r in doc["rows"]}
    for (endpoint, n, who), r in sorted(by.items()):
        if who != "agent":
            continue
        base = by.get((endpoint, n, "boto3"))
        if "+" in endpoint:  # canned+50ms: the same answers, each request made slower
            rows += _latency_rows(by, endpoint, n)
            continue
        calls = r["describe_calls"] + r["gmd_calls"]
        rows.append(
            (
                f"agent: API calls per cycle, {n:,} instances ({endpoint})",
                f"{calls} (min {r['minimum_calls']})",
                "= minimum",
                _ok(calls == r["minimum_calls"]),
            )
        )
        if base:
            ratio = r["cycle_cpu_s"] / base["cycle_cpu_s"]
            rows.append(
                (
                    f"agent: cycle CPU, {n:,} instances ({endpoint})",
                    f"{r['cycle_cpu_s']:.2f} s vs boto3 {base['cycle_cpu_s']:.2f} s "
                    f"= {ratio:.2f} x",
                    f"<= {AGENT_CPU_RATIO} x boto3 script",
                    _ok(ratio <= AGENT_CPU_RATIO),
                )
            )
            judged = n >= AGENT_RSS_AT
            rows.append(
                (
                    f"agent: peak RSS, {n:,} instances ({endpoint})",
                    f"{r['peak_rss_mb']:.1f} MiB vs boto3 {base['peak_rss_mb']:.1f} MiB",
                    f"<= {AGENT_RSS_MIB} MiB" if judged else "report",
                    _ok(r["peak_rss_mb"] <= AGENT_RSS_MIB) if judged else "-",
                )
            )
    return rows


def _latency_rows(
    by: dict[tuple[str, int, str], dict[str, Any]], endpoint: str, n: int
) -> list[Row]:
    """The wall time a slower endpoint adds to a cycle, azfed's against the script's."""
    plain, slower = endpoint.split("+", maxsplit=1)
    added = {}
    for who in ("agent", "boto3"):
        slow, fast = by.get((endpoint, n, who)), by.get((plain, n, who))
        if slow is None or fast is None:
            return []
        added[who] = slow["cycle_wall_s"] - fast["cycle_wall_s"]
    ratio = added["agent"] / added["boto3"] if added["boto3"] > 0 else float("inf")
    return [
        (
            f"agent: wall added by {slower} per request, {n:,} instances",
            f"{added['agent']:.2f} s vs boto3 {added['boto3']:.2f} s = {ratio:.2f} x",
            f"<= {AGENT_LATENCY_RATIO} x boto3 script",
            _ok(ratio <= AGENT_LATENCY_RATIO),
        )
    ]


def table(rows: list[Row]) -> str:
    head: Row = ("benchmark", "figure", "target", "")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([fmt(head), fmt(tuple("-" * w for w in widths)), *map(fmt, rows)])  # type: ignore[arg-type]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--skip-run", action="store_true", help="only gather the JSON already there")
    ap.add_argument("--no-gnocchi", action="store_true")
    args = ap.parse_args()
    if not args.skip_run:
        run(args.no_gnocchi)
    rows: list[Row] = []
    for name, fn in (
        ("policy", policy_rows),
        ("receiver", receiver_rows),
        ("gnocchi", gnocchi_rows),
        ("agent", agent_rows),
    ):
        doc = _load(name)
        if doc is None:
            print(f"(no bench/results/{name}.json: run bench/bench_{name}.py)")
            continue
        rows += fn(doc)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"\nazfed benchmarks, {dt.date.today()}, {machine}\n")
    print(table(rows))
    summary = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(),
        "machine": machine,
        "rows": [dict(zip(("what", "figure", "target", "verdict"), r, strict=True)) for r in rows],
    }
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
