#!/usr/bin/env python3
"""Root's Status() latency and pxhostd's memory while a non-root user floods the bus.

Boots a Debian 12 node, installs the pxhostd .deb ($PXHOSTD_DEB, else built with
scripts/build-deb) and a demo payload. Then, inside the node:

1. idle: root's Status() latency (bench/nodeside/loadgen.py, one client, back to back);
2. flood: the same (and, as the baseline, a systemd property read) while the user pxuser
   runs bench/nodeside/flood.py for the whole window: 50 connections that send Introspect
   calls and never read a reply, and 8 connections that call Status() and read every
   reply;
3. large messages: pxuser sends calls near the bus's size limit (30 MiB each).

Reports root's p99 and maximum latency during the flood against idle (ratios, same run),
and pxhostd's resident size (VmRSS) idle, during the flood (its peak, sampled every 0.5 s),
after it, and after the large messages. Every phase runs --repeat times; the ratios use
medians. Writes out/bench/bus_flood.json. Environment: PXBENCH_REPS (default 1),
PXHOSTD_DEB.
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
import threading
import time
from pathlib import Path
from typing import Any

from e2e.pxnode import build_payload, pxhostctl, wait_pxhostd
from nodeharness import REPO_ROOT, Node, build_node_root

LOADGEN_SRC = REPO_ROOT / "bench" / "nodeside" / "loadgen.py"
FLOOD_SRC = REPO_ROOT / "bench" / "nodeside" / "flood.py"
LOADGEN = "/var/lib/pxtest/loadgen.py"
FLOOD = "/var/lib/pxtest/flood.py"
DEFAULT_OUT = REPO_ROOT / "out" / "bench" / "bus_flood.json"
USER = "pxuser"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=30.0, help="flood window (seconds)")
    p.add_argument("--idle", type=float, default=10.0, help="idle window (seconds)")
    p.add_argument("--repeat", type=int, default=int(os.environ.get("PXBENCH_REPS", "1")))
    p.add_argument("--big", type=int, default=4, help="large messages sent")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return p.parse_args(argv)


def the_deb() -> Path:
    given = os.environ.get("PXHOSTD_DEB")
    if given:
        return Path(given).resolve()
    out = subprocess.run([str(REPO_ROOT / "scripts" / "build-deb")], cwd=REPO_ROOT,
                         check=True, capture_output=True, text=True).stdout
    return Path(out.strip().splitlines()[-1])


def rss_kib(node: Node) -> int:
    pid = node.unit_property("pxhostd.service", "MainPID")
    for line in node.read_file(f"/proc/{pid}/status").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit("no VmRSS for pxhostd")


def loadgen(node: Node, seconds: float, target: str = "pxhostd") -> dict[str, Any]:
    out = node.run(["python3", LOADGEN, "--target", target, "--clients", "1",
                    "--duration", str(seconds), "--warmup", "0.5"],
                   timeout=seconds + 120).stdout
    result: dict[str, Any] = json.loads(out)
    return result


class RssSampler(threading.Thread):
    def __init__(self, node: Node) -> None:
        super().__init__(daemon=True)
        self.node = node
        self.samples: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            self.samples.append(rss_kib(self.node))


def flood_round(node: Node, args: argparse.Namespace) -> dict[str, Any]:
    idle = loadgen(node, args.idle)
    idle_systemd = loadgen(node, args.idle / 2, "systemd")
    rss_idle = rss_kib(node)
    window = args.duration + 2
    node.run(f"(python3 {FLOOD} --connections 50 --calls 100000 --duration {window}"
             " >/tmp/nr.json 2>/dev/null) </dev/null >/dev/null 2>&1 &", user=USER)
    node.run(f"(python3 {FLOOD} --connections 8 --read --method Status --duration {window}"
             " >/tmp/rd.json 2>/dev/null) </dev/null >/dev/null 2>&1 &", user=USER)
    sampler = RssSampler(node)
    sampler.start()
    time.sleep(1.0)
    flood = loadgen(node, (args.duration - 2) * 2 / 3)
    flood_systemd = loadgen(node, (args.duration - 2) / 3, "systemd")
    while not (node.read_file("/tmp/nr.json").strip() and node.read_file("/tmp/rd.json").strip()):
        time.sleep(0.5)
    sampler.stop.set()
    sampler.join()
    time.sleep(5)
    rss_after = rss_kib(node)
    return {
        "idle": idle, "flood": flood,
        "idle_systemd": idle_systemd, "flood_systemd": flood_systemd,
        "non_reading": json.loads(node.read_file("/tmp/nr.json")),
        "reading": json.loads(node.read_file("/tmp/rd.json")),
        "rss_idle_kib": rss_idle, "rss_flood_peak_kib": max(sampler.samples, default=0),
        "rss_after_kib": rss_after,
    }


def big_round(node: Node, args: argparse.Namespace) -> dict[str, Any]:
    before = rss_kib(node)
    out = node.run(["python3", FLOOD, "--big", str(args.big), "--big-mib", "30"], user=USER,
                   timeout=300).stdout
    time.sleep(3)
    return {"rss_before_kib": before, "rss_after_big_kib": rss_kib(node),
            "result": json.loads(out)}


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    deb = the_deb()
    root = build_node_root()
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, Node(root) as node:
        node.install_deb(deb)
        wait_pxhostd(node)
        node.run(["mkdir", "-p", "/var/lib/pxtest"])
        node.copy_in(LOADGEN_SRC, LOADGEN, mode=0o755)
        node.copy_in(FLOOD_SRC, FLOOD, mode=0o755)
        v1 = build_payload(node, Path(tmp), "v1", "1.0.0")
        node.write_file("/var/lib/pxtest/v1.yaml", f"payload: {v1}\n")
        pxhostctl(node, "install", "--spec", "/var/lib/pxtest/v1.yaml")
        pid = node.unit_property("pxhostd.service", "MainPID")
        for n in range(args.repeat):
            print(f"  round {n + 1}/{args.repeat}: idle, then a {args.duration:g} s flood",
                  file=sys.stderr, flush=True)
            rounds.append(flood_round(node, args))
        print("  large messages", file=sys.stderr, flush=True)
        big = big_round(node, args)
        same_pid = node.unit_property("pxhostd.service", "MainPID") == pid
        restarts = node.unit_property("pxhostd.service", "NRestarts")

    def med(key: str, phase: str) -> float:
        return statistics.median(r[phase][key] for r in rounds)

    summary = {
        "idle_p99_ms": med("p99_ms", "idle"), "idle_max_ms": med("max_ms", "idle"),
        "flood_p99_ms": med("p99_ms", "flood"), "flood_max_ms": med("max_ms", "flood"),
        "flood_errors": sum(r["flood"]["errors"] for r in rounds),
        "systemd_idle_p99_ms": med("p99_ms", "idle_systemd"),
        "systemd_flood_p99_ms": med("p99_ms", "flood_systemd"),
        "systemd_flood_max_ms": med("max_ms", "flood_systemd"),
        "rss_idle_kib": statistics.median(r["rss_idle_kib"] for r in rounds),
        "rss_flood_peak_kib": max(r["rss_flood_peak_kib"] for r in rounds),
        "rss_after_kib": statistics.median(r["rss_after_kib"] for r in rounds),
        "rss_before_big_kib": big["rss_before_kib"], "rss_after_big_kib": big["rss_after_big_kib"],
        "pxhostd_kept_its_pid": same_pid, "pxhostd_restarts": restarts,
    }
    summary["p99_ratio"] = summary["flood_p99_ms"] / summary["idle_p99_ms"]
    summary["max_ratio"] = summary["flood_max_ms"] / summary["idle_max_ms"]
    summary["systemd_p99_ratio"] = summary["systemd_flood_p99_ms"] / summary["systemd_idle_p99_ms"]
    # The bus daemon's own delay under the flood, which every service's callers share.
    summary["max_vs_systemd"] = summary["flood_max_ms"] / summary["systemd_flood_max_ms"]
    summary["rss_flood_ratio"] = summary["rss_flood_peak_kib"] / summary["rss_idle_kib"]
    summary["rss_after_ratio"] = summary["rss_after_kib"] / summary["rss_idle_kib"]
    summary["rss_after_big_ratio"] = summary["rss_after_big_kib"] / summary["rss_before_big_kib"]
    report = {
        "summary": summary, "rounds": rounds, "big": big,
        "args": vars(args) | {"out": str(args.out)},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    s = summary
    print(f"root Status() p99  idle {s['idle_p99_ms']:.2f} ms, flood {s['flood_p99_ms']:.2f} ms"
          f"  (x{s['p99_ratio']:.1f})")
    print(f"root Status() max  idle {s['idle_max_ms']:.2f} ms, flood {s['flood_max_ms']:.2f} ms"
          f"  (x{s['max_ratio']:.1f}); failed calls {s['flood_errors']}")
    print(f"baseline: a systemd property, p99 idle {s['systemd_idle_p99_ms']:.2f} ms, flood "
          f"{s['systemd_flood_p99_ms']:.2f} ms (x{s['systemd_p99_ratio']:.1f}), max "
          f"{s['systemd_flood_max_ms']:.2f} ms; root Status() max against it "
          f"x{s['max_vs_systemd']:.1f}")
    print(f"pxhostd RSS  idle {s['rss_idle_kib'] / 1024:.1f} MiB, flood peak "
          f"{s['rss_flood_peak_kib'] / 1024:.1f} MiB (x{s['rss_flood_ratio']:.2f}), after "
          f"{s['rss_after_kib'] / 1024:.1f} MiB (x{s['rss_after_ratio']:.2f})")
    print(f"pxhostd RSS  before {args.big} x 30 MiB messages {s['rss_before_big_kib'] / 1024:.1f}"
          f" MiB, after {s['rss_after_big_kib'] / 1024:.1f} MiB (x{s['rss_after_big_ratio']:.2f})")
    print(f"pxhostd kept its PID: {same_pid}; restarts: {restarts}; written {args.out}")
    return 0 if same_pid and not s["flood_errors"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
