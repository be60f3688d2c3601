#!/usr/bin/env python3
"""Status() latency and throughput of pxhostd against systemd's own Manager, on a real node.

Boots a Debian 12 node, installs the pxhostd .deb ($PXHOSTD_DEB, else built with
scripts/build-deb), and runs bench/nodeside/loadgen.py inside the node: 1 and 20 clients,
each on its own system-bus connection, calling back to back for a fixed window. Targets:
pxhostd's Status() and a unit property read from systemd (Properties.Get of
pxhostd.service's ActiveState). Each is measured idle and while a pxhostd transaction runs
(an Install whose payload starts slowly, so the transaction waits on systemd for the whole
window). Every case runs --repeat times (3), the two targets interleaved; the comparison
uses the medians and, for stalls, the worst run. Prints a table, writes
out/bench/status_latency.json (every run, the medians, the verdicts, the environment).
Environment: PXBENCH_REPS (default 3), PXHOSTD_DEB.

Targets (issue 4): p99 within 2x of systemd's; no stall (largest gap between two replies on
one client) over 50 ms while a transaction runs. `--strict` exits 1 when one is missed.
See docs/benchmarks.md for the method and the latest numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from e2e.pxnode import build_payload, pxhostctl, wait_pxhostd
from nodeharness import REPO_ROOT, Node, build_node_root, wait_for

LOADGEN_SRC = REPO_ROOT / "bench" / "nodeside" / "loadgen.py"
LOADGEN = "/var/lib/pxtest/loadgen.py"
DEFAULT_OUT = REPO_ROOT / "out" / "bench" / "status_latency.json"
TARGETS = ("pxhostd", "systemd")
CLIENTS = (1, 20)
P99_RATIO_TARGET = 2.0
STALL_TARGET_MS = 50.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=3.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds first")
    p.add_argument("--slow-start", type=float, default=8.0,
                   help="payload start delay: how long each busy-phase transaction runs")
    p.add_argument("--repeat", type=int, default=int(os.environ.get("PXBENCH_REPS", "3")),
                   help="runs per case (targets interleaved); the comparison uses medians")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    if args.slow_start < args.duration + args.warmup + 2:
        p.error("--slow-start must exceed warmup + duration by 2 s (the window must fit)")
    return args


def the_deb() -> Path:
    given = os.environ.get("PXHOSTD_DEB")
    if given:
        return Path(given).resolve()
    out = subprocess.run([str(REPO_ROOT / "scripts" / "build-deb")], cwd=REPO_ROOT,
                         check=True, capture_output=True, text=True).stdout
    return Path(out.strip().splitlines()[-1])


def loadgen(node: Node, target: str, clients: int, args: argparse.Namespace) -> dict[str, Any]:
    out = node.run(["python3", LOADGEN, "--target", target, "--clients", str(clients),
                    "--duration", str(args.duration), "--warmup", str(args.warmup)],
                   timeout=args.duration + args.warmup + 60).stdout
    result: dict[str, Any] = json.loads(out)
    if result["errors"]:
        raise SystemExit(f"{target}: {result['errors']} calls failed")
    return result


def prop(node: Node, path: str, iface: str, name: str) -> Any:
    out = node.run(["busctl", "--json=short", "get-property", "com.portworx.pxhostd1", path,
                    iface, name]).stdout
    return json.loads(out)["data"]


def busy_run(node: Node, payload: str, round_no: int, target: str, clients: int,
             args: argparse.Namespace) -> dict[str, Any]:
    """One measurement inside one transaction (a restart into a slowly starting payload)."""
    spec = f"/var/lib/pxtest/bench-{round_no}.yaml"
    node.write_file(spec, f"payload: {payload}\nenv: {{PX_BENCH_ROUND: '{round_no}'}}\n")
    path = pxhostctl(node, "install", "--spec", spec, "--no-block").stdout.strip()
    result = loadgen(node, target, clients, args)
    # The window counts only if the transaction was still running when it closed.
    result["transaction"] = path
    result["covered"] = not prop(node, path, "com.portworx.pxhostd1.Transaction", "Finished")
    wait_for(lambda: prop(node, path, "com.portworx.pxhostd1.Transaction", "Finished"), bool,
             timeout=args.slow_start + 120, what=f"{path} to finish")
    ok = prop(node, path, "com.portworx.pxhostd1.Transaction", "Success")
    if not ok:
        raise SystemExit(f"the transaction {path} failed; see the node's journal")
    return result


def measure(node: Node, tmp: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    node.run(["mkdir", "-p", str(Path(LOADGEN).parent)])
    node.copy_in(LOADGEN_SRC, LOADGEN, mode=0o755)
    payload = build_payload(node, tmp, "slow", "1.0.0", "--slow-start", str(args.slow_start))
    node.write_file("/var/lib/pxtest/bench-0.yaml", f"payload: {payload}\n")
    pxhostctl(node, "install", "--spec", "/var/lib/pxtest/bench-0.yaml")
    runs: list[dict[str, Any]] = []
    round_no = 0
    for repeat in range(1, args.repeat + 1):
        for clients in CLIENTS:
            for target in TARGETS:  # interleaved, so slow drifts of the machine hit both
                print(f"  {repeat}/{args.repeat} idle {target:8} {clients:2} client(s)",
                      file=sys.stderr, flush=True)
                runs.append({"phase": "idle", "repeat": repeat,
                             **loadgen(node, target, clients, args)})
        for clients in CLIENTS:
            for target in TARGETS:
                round_no += 1
                print(f"  {repeat}/{args.repeat} busy {target:8} {clients:2} client(s)",
                      file=sys.stderr, flush=True)
                run = busy_run(node, payload, round_no, target, clients, args)
                runs.append({"phase": "transaction", "repeat": repeat, **run})
    return runs


def find(runs: list[dict[str, Any]], phase: str, target: str, clients: int) -> dict[str, Any]:
    """The median of the repeats of one case (the worst stall; covered only if all were)."""
    group = [r for r in runs
             if (r["phase"], r["target"], r["clients"]) == (phase, target, clients)]
    summary: dict[str, Any] = {"phase": phase, "target": target, "clients": clients,
                               "repeats": len(group)}
    for key in ("calls_per_s", "p50_ms", "p99_ms", "max_ms"):
        summary[key] = statistics.median(r[key] for r in group)
    summary["p99_ms_range"] = [min(r["p99_ms"] for r in group), max(r["p99_ms"] for r in group)]
    summary["max_stall_ms"] = max(r["max_stall_ms"] for r in group)
    if phase == "transaction":
        summary["covered"] = all(r["covered"] for r in group)
    return summary


def summaries(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [find(runs, phase, target, clients) for phase in ("idle", "transaction")
            for clients in CLIENTS for target in TARGETS]


def compare(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for phase in ("idle", "transaction"):
        for clients in CLIENTS:
            px, sd = find(runs, phase, "pxhostd", clients), find(runs, phase, "systemd", clients)
            ratio = px["p99_ms"] / sd["p99_ms"]
            row = {
                "phase": phase,
                "clients": clients,
                "p50_ratio": px["p50_ms"] / sd["p50_ms"],
                "p99_ratio": ratio,
                "rate_ratio": px["calls_per_s"] / sd["calls_per_s"],
                "pxhostd_max_stall_ms": px["max_stall_ms"],
                "p99_target_met": ratio <= P99_RATIO_TARGET,
            }
            if phase == "transaction":
                row["stall_target_met"] = px["max_stall_ms"] <= STALL_TARGET_MS
                row["window_inside_transaction"] = bool(px.get("covered"))
            rows.append(row)
    return rows


def print_table(cases: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    print(f"medians of {cases[0]['repeats']} runs (stall: the worst run)")
    print(f"{'phase':12} {'target':8} {'clients':>7} {'calls/s':>9} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'p99 range':>13} {'max ms':>7} {'stall ms':>8}")
    for r in cases:
        low, high = r["p99_ms_range"]
        print(f"{r['phase']:12} {r['target']:8} {r['clients']:>7} {r['calls_per_s']:>9.0f} "
              f"{r['p50_ms']:>7.3f} {r['p99_ms']:>7.3f} {f'{low:.2f}-{high:.2f}':>13} "
              f"{r['max_ms']:>7.2f} {r['max_stall_ms']:>8.2f}")
    print()
    print(f"{'phase':12} {'clients':>7} {'p50 x':>6} {'p99 x':>6} {'rate x':>7}  targets "
          f"(pxhostd/systemd; p99 <= {P99_RATIO_TARGET:g}x, stall <= {STALL_TARGET_MS:g} ms)")
    for row in rows:
        verdicts = [f"p99 {'met' if row['p99_target_met'] else 'NOT MET'}"]
        if "stall_target_met" in row:
            verdicts.append(f"stall {'met' if row['stall_target_met'] else 'NOT MET'} "
                            f"({row['pxhostd_max_stall_ms']:.1f} ms)")
            if not row["window_inside_transaction"]:
                verdicts.append("WINDOW OUTSIDE THE TRANSACTION")
        print(f"{row['phase']:12} {row['clients']:>7} {row['p50_ratio']:>6.2f} "
              f"{row['p99_ratio']:>6.2f} {row['rate_ratio']:>7.2f}  {', '.join(verdicts)}")


def environment(node: Node, deb: Path) -> dict[str, Any]:
    def node_out(cmd: str) -> str:
        return node.run(cmd, check=False).stdout.strip()

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                            capture_output=True, text=True).stdout.strip()
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit,
        "deb": deb.name,
        "host_cpus": os.cpu_count(),
        "host_loadavg_before": os.getloadavg(),
        "host_kernel": platform.release(),
        "node_dbus": node_out("dbus-daemon --version | head -1"),
        "node_systemd": node_out("systemctl --version | head -1"),
        "node_dbus_fast": node_out("dpkg-query -W -f '${Version}' python3-dbus-fast"),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    deb = the_deb()
    print(f"bench_status_latency: {deb.name}, {args.duration:g} s windows", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="pxbench-") as tmp, Node(build_node_root()) as node:
        env = environment(node, deb)
        node.install_deb(deb)
        wait_pxhostd(node)
        runs = measure(node, Path(tmp), args)
    rows = compare(runs)
    cases = summaries(runs)
    print_table(cases, rows)
    met = all(r["p99_target_met"] and r.get("stall_target_met", True)
              and r.get("window_inside_transaction", True) for r in rows)
    report = {
        "benchmark": "status_latency",
        "environment": env,
        "settings": {"duration_s": args.duration, "warmup_s": args.warmup,
                     "slow_start_s": args.slow_start, "clients": list(CLIENTS),
                     "repeat": args.repeat},
        "targets": {"p99_ratio_max": P99_RATIO_TARGET, "stall_ms_max": STALL_TARGET_MS,
                    "all_met": met},
        "cases": cases,
        "comparison": rows,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\ntargets {'met' if met else 'NOT all met'}; results in {args.out}")
    return 1 if args.strict and not met else 0


if __name__ == "__main__":
    sys.exit(main())
