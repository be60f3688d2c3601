#!/usr/bin/env python3
"""pxhostd start-to-ready time, idle RSS and idle wake-ups, against trivial notify services.

On one freshly booted node with the .deb installed ($PXHOSTD_DEB, else `make deb`):

* start: `systemctl start <unit>` timed inside the node (with Type=notify it returns when
  the service sent READY=1), plus systemd's own view, ActiveEnter - InactiveExit from the
  unit's monotonic timestamps.  Units: pxhostd; the baseline, a trivial Type=notify shell
  service (`systemd-notify --ready; exec sleep infinity`); and for context a trivial
  Python notify service (interpreter start-up alone).  Runs are interleaved and each unit
  is stopped (and settles) before it is started again.
* RSS: VmRSS of each MainPID after it has been idle for a while.
* wake-ups while idle: context switches of every thread of each MainPID over a window,
  grouped into wake-up episodes, against the expected watchdog/heartbeat tick of
  min(WatchdogSec/2, 5 s).

Targets (issue "walking skeleton"): start within 2x the shell baseline; RSS <= 40 MB; no
wake-ups while idle other than the watchdog tick.  Reported, never asserted.
Environment: PXBENCH_REPS (default 7), PXBENCH_IDLE_SECONDS (default 30).
"""

from __future__ import annotations

import os
import time
from typing import Any

from benchlib import (
    booted_node,
    fmt_ms,
    mono_props,
    print_table,
    pxhostd_deb,
    ratio,
    reps,
    summary,
    timed,
    tool,
    write_json,
)
from nodeharness import Node

NAME = "daemon_start"
SHELL_UNIT = "pxbench-shell-notify.service"
PY_UNIT = "pxbench-python-notify.service"
DAEMON = "pxhostd.service"
UNITS = (SHELL_UNIT, PY_UNIT, DAEMON)
#: pxhostd's periodic wake-up when systemd gives it no watchdog (pxhostd.status).
HEARTBEAT = 5.0
TARGET_START_RATIO = 2.0
TARGET_RSS_MB = 40.0

SHELL_UNIT_TEXT = """\
[Unit]
Description=Benchmark baseline: trivial Type=notify shell service

[Service]
Type=notify
NotifyAccess=all
ExecStart=/bin/sh -c 'systemd-notify --ready; exec sleep infinity'
"""

PY_NOTIFY = """\
import os, socket, time
addr = os.environ["NOTIFY_SOCKET"]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.connect("\\0" + addr[1:] if addr.startswith("@") else addr)
sock.send(b"READY=1")
while True:
    time.sleep(3600)
"""

PY_UNIT_TEXT = """\
[Unit]
Description=Benchmark context: trivial Type=notify Python service

[Service]
Type=notify
ExecStart=/usr/bin/python3 /var/lib/pxbench/notify.py
"""


def main_pid(node: Node, unit: str) -> int:
    return int(node.unit_property(unit, "MainPID"))


def start_once(node: Node, unit: str) -> dict[str, float]:
    node.systemctl("stop", unit)
    time.sleep(1.0)  # let the stop's own work (and the journal) settle
    wall = timed(node, ["systemctl", "start", unit])
    ts = mono_props(node, unit, "InactiveExit", "ExecMainStart", "ActiveEnter")
    return {
        "wall": wall,
        "systemd": ts["ActiveEnter"] - ts["InactiveExit"],
        "exec_to_ready": ts["ActiveEnter"] - ts["ExecMainStart"],
    }


def watchdog_tick(node: Node) -> float:
    # `systemctl show` formats it ("30s"); the bus property is plain microseconds.
    out = node.run([
        "busctl", "get-property", "org.freedesktop.systemd1",
        "/org/freedesktop/systemd1/unit/pxhostd_2eservice",
        "org.freedesktop.systemd1.Service", "WatchdogUSec",
    ]).stdout.split()  # "t 30000000"
    usec = int(out[1])
    return min(usec / 2e6, HEARTBEAT) if usec else HEARTBEAT


def measure(node: Node, n: int, idle_seconds: float) -> dict[str, Any]:
    node.write_file(f"/etc/systemd/system/{SHELL_UNIT}", SHELL_UNIT_TEXT)
    node.write_file("/var/lib/pxbench/notify.py", PY_NOTIFY)
    node.write_file(f"/etc/systemd/system/{PY_UNIT}", PY_UNIT_TEXT)
    node.systemctl("daemon-reload")
    runs: dict[str, list[dict[str, float]]] = {u: [] for u in UNITS}
    for i in range(n):
        for unit in UNITS:
            runs[unit].append(start_once(node, unit))
        print(f"  start round {i + 1}/{n} done", flush=True)

    time.sleep(10.0)  # idle: nothing has been asked of anyone for a while
    pids = {unit: main_pid(node, unit) for unit in UNITS}
    rss = {unit: tool(node, "rss", "--pid", str(pid)) for unit, pid in pids.items()}
    args = [arg for pid in pids.values() for arg in ("--pid", str(pid))]
    idle = tool(
        node, "wakeups", *args, "--seconds", str(idle_seconds), timeout=idle_seconds + 60
    )
    tick = watchdog_tick(node)
    results: dict[str, Any] = {"units": {}, "watchdog_tick_s": tick, "idle": idle}
    for unit in UNITS:
        seen = idle["pids"][str(pids[unit])]
        per_min = 60.0 * seen["episodes"] / idle["seconds"]
        results["units"][unit] = {
            "start_wall_s": summary([r["wall"] for r in runs[unit]]),
            "start_systemd_s": summary([r["systemd"] for r in runs[unit]]),
            "exec_to_ready_s": summary([r["exec_to_ready"] for r in runs[unit]]),
            "rss_kib": rss[unit],
            "idle_switches": seen["switches"],
            "idle_threads": seen["threads"],
            "idle_wakeup_episodes": seen["episodes"],
            "idle_wakeups_per_min": per_min,
            "idle_median_episode_gap_s": seen["median_episode_gap"],
        }
    return results


def report(results: dict[str, Any], n: int) -> dict[str, Any]:
    units = results["units"]
    base = units[SHELL_UNIT]
    daemon = units[DAEMON]
    rows = []
    for unit in UNITS:
        u = units[unit]
        rows.append([
            unit,
            fmt_ms(u["start_wall_s"]),
            fmt_ms(u["start_systemd_s"]),
            f"{ratio(u['start_wall_s'], base['start_wall_s']):.2f}x",
            f"{ratio(u['start_systemd_s'], base['start_systemd_s']):.2f}x",
            f"{u['rss_kib']['VmRSS'] / 1024:.1f} MiB",
            f"{u['idle_wakeups_per_min']:.1f}",
            str(u["idle_switches"]),
        ])
    print_table(
        f"start-to-ready (median (min-max) of {n}), RSS and idle wake-ups "
        f"over {results['idle']['seconds']:.0f} s",
        ["unit", "systemctl start", "systemd ActiveEnter-InactiveExit", "vs shell",
         "vs shell (systemd)", "VmRSS", "wakeups/min", "ctx switches"],
        rows,
    )
    tick = results["watchdog_tick_s"]
    expected = 60.0 / tick
    start_ratio = ratio(daemon["start_wall_s"], base["start_wall_s"]) or 0.0
    systemd_ratio = ratio(daemon["start_systemd_s"], base["start_systemd_s"]) or 0.0
    python_ratio = ratio(daemon["start_wall_s"], units[PY_UNIT]["start_wall_s"]) or 0.0
    rss_mb = daemon["rss_kib"]["VmRSS"] / 1024
    wake = daemon["idle_wakeups_per_min"]
    targets = {
        "start_within_2x_baseline": {
            "value": start_ratio,
            "systemd_ratio": systemd_ratio,
            "vs_python_baseline": python_ratio,
            "met": start_ratio <= TARGET_START_RATIO,
        },
        "rss_at_most_40MB": {"value_mib": rss_mb, "met": rss_mb <= TARGET_RSS_MB},
        # One episode per tick, with a little slack for a tick split across two samples.
        "idle_only_watchdog": {
            "wakeups_per_min": wake,
            "expected_per_min": expected,
            "met": wake <= expected * 1.1 + 1,
        },
    }
    print_table(
        "targets",
        ["target", "measured", "met"],
        [
            ["start <= 2x shell baseline (systemctl start)", f"{start_ratio:.2f}x",
             str(targets["start_within_2x_baseline"]["met"])],
            ["  same, systemd's timestamps", f"{systemd_ratio:.2f}x", "-"],
            ["  (context: vs trivial Python notify service)", f"{python_ratio:.2f}x", "-"],
            ["RSS <= 40 MB", f"{rss_mb:.1f} MiB", str(targets["rss_at_most_40MB"]["met"])],
            [f"idle wake-ups = watchdog tick ({tick:g} s: {expected:.0f}/min)",
             f"{wake:.1f}/min", str(targets["idle_only_watchdog"]["met"])],
        ],
    )
    return targets


def main() -> int:
    n = reps(7)
    idle_seconds = float(os.environ.get("PXBENCH_IDLE_SECONDS", "30"))
    deb = pxhostd_deb()
    with booted_node(deb) as node:
        results = measure(node, n, idle_seconds)
    targets = report(results, n)
    write_json(NAME, {"deb": deb.name, "reps": n, "results": results, "targets": targets})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
