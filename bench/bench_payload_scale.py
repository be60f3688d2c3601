#!/usr/bin/env python3
"""Payloads at real size, on one node, every target as a ratio against a baseline of the
same run (issue "Payloads at real size").

The payload is generated inside the node by container/demo-payload/bigpayload.py
(deterministic): PXBENCH_FILES files of 200 B-64 KiB (default 20,000) plus two 64 MiB
files, about 780 MB; v2 differs in one small file, v3 in one large file (and, as any new
version does, in the demo program and its VERSION file). Measured, median of PXBENCH_REPS
(default 3); the no-ops, which take well under a second, after one untimed run and as the
median of at least NOOP_REPS (the first command after a pause runs at about half speed on
a shared machine, and three tries of 70 ms say little about a 1.2x target):

| measurement                         | baseline (same run)                       | target   |
|-------------------------------------|-------------------------------------------|----------|
| fresh install                       | `cp -a` + `sha256sum` of the same tree    | <= 1.1x  |
| no-op                               | the no-op with the 2-file demo payload    | <= 1.2x  |
| upgrade v1->v2 (small), v1->v3      | `cp -al` of the release + copy of the file| <= 2x    |
| bytes pxhostd writes for v1->v2/v3  | the changed bytes + 10 MB                 | less     |
| switch back to a release on disk    | the 2-file upgrade                        | <= 1.2x  |
| disk for v1+v2                      | one payload (`du`)                        | <= 1.05x |
| peak RSS, 100,000-file install      | 60 MB                                     | <=       |
| idle RSS after                      | 40 MB                                     | <=       |
| `systemctl restart pxhostd` to ready| with nothing installed                    | <= 1.2x  |
| Status() p99 / max during an install| Status() p99 idle                         | 5x/50 ms |

The releases (`/opt/pwx`), the payloads and the baselines' copies live on the machine's own
filesystem (`DISK_PATHS`), as on a host, not on the node's overlay root, which makes every
file system call dearer and flatters a ratio whose baseline is pure file system calls.

Reported, never asserted. Environment: PXBENCH_REPS, PXBENCH_FILES, PXBENCH_BIG_FILES
(the 100,000-file install; 0 skips it).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from benchlib import (
    NODE_PAYLOAD_BUILDER,
    REPO_ROOT,
    booted_node,
    print_table,
    pxhostd_deb,
    ratio,
    reps,
    summary,
    timed,
    write_json,
)
from nodeharness import Node, wait_for

NAME = "payload_scale"
GEN = "/var/lib/pxbench/gen"
BASE = "/var/lib/pxbench/payloads"
RELEASES = "/opt/pwx/releases"
#: The baselines' copies: on the releases' filesystem, as the import's own writes are.
CPA = "/opt/pwx/bench-cpa"
CPAL = "/opt/pwx/bench-cpal"
#: On the machine's own filesystem, as on a host (not on the node's overlay root).
DISK_PATHS = ("/opt/pwx", "/var/lib/pxbench")
CHANGED_SMALL = "rootfs/usr/lib/px/d000/f00000.bin"
CHANGED_LARGE = "rootfs/opt/px/blob0.bin"


def files_count() -> int:
    value = os.environ.get("PXBENCH_FILES", "")
    return int(value) if value.isdigit() else 20_000


def big_files_count() -> int:
    value = os.environ.get("PXBENCH_BIG_FILES", "")
    return int(value) if value.isdigit() else 100_000


def generate(node: Node, name: str, version: str, *extra: str) -> str:
    path = f"{BASE}/{name}"
    node.run(["rm", "-rf", path])
    node.run(["python3", f"{GEN}/bigpayload.py", path, "--version", version, *extra],
             timeout=1800)
    return path


def demo(node: Node, name: str, version: str) -> str:
    path = f"{BASE}/{name}"
    node.run(["python3", NODE_PAYLOAD_BUILDER, path, "--version", version])
    return path


def install(node: Node, payload: str) -> float:
    spec = {"payload": payload, "args": ["-c", "bench"]}
    node.write_file("/var/lib/pxbench/spec.yaml", yaml.safe_dump(spec))
    return timed(node, ["pxhostctl", "install", "--spec", "/var/lib/pxbench/spec.yaml"],
                 timeout=1800)


def op_timing(node: Node) -> dict[str, float]:
    """Where the last operation's time went, as pxhostd logs it ("... took T s: plan and
    import P s, restart and settle R s, the rest X s")."""
    lines = [ln for ln in node.run(["journalctl", "-u", "pxhostd", "-o", "cat", "-n", "400",
                                    "--no-pager"]).stdout.splitlines()
             if " took " in ln and "restart and settle" in ln]
    if not lines:
        raise RuntimeError("pxhostd logged no operation timing")
    line = lines[-1]

    def after(label: str) -> float:
        return float(line.split(label)[1].split(" s")[0])

    return {"total": after(" took "), "plan_import": after("plan and import "),
            "restart": after("restart and settle "), "rest": after("the rest ")}


TIMINGS: list[dict[str, Any]] = []


def restart_share(node: Node, what: str = "") -> float:
    """Seconds of the last operation spent restarting the service and in the settle
    window; every timing is kept for the JSON."""
    timing = op_timing(node)
    TIMINGS.append({"what": what, **timing})
    return timing["restart"]


def idle(node: Node) -> None:
    """Wait until pxhostd is idle and its after-operation collection is done."""
    wait_for(
        # status exits 6 when nothing is installed, and still answers.
        lambda: (json.loads(node.run(["pxhostctl", "status", "--json"],
                                     check=False).stdout)["state"],
                 node.exists("/var/lib/pxhostd/journal.json")),
        lambda s: s == ("idle", False),
        timeout=600, what="pxhostd to be idle",
    )


#: Timed no-ops in a series, at least (after one untimed run).
NOOP_REPS = 7


def noops(node: Node, payload: str, n: int) -> dict[str, Any]:
    """Both no-op series start from a settled machine: the 2-file one comes right after
    the node's boot, the big one after gigabytes of installs, whose write-back would
    otherwise weigh on it alone."""
    node.run(["sync"])
    time.sleep(3)
    install(node, payload)  # untimed: the first command after a pause is slow
    return summary([install(node, payload) for _ in range(max(n, NOOP_REPS))])


def uninstall(node: Node) -> None:
    node.run(["pxhostctl", "uninstall", "--wipe"], timeout=600)
    idle(node)


def pxhostd_pid(node: Node) -> int:
    return int(node.unit_property("pxhostd", "MainPID"))


def proc_kb(node: Node, pid: int, key: str) -> int:
    for line in node.read_file(f"/proc/{pid}/status").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def wchar(node: Node, pid: int) -> int:
    """Bytes pxhostd passed to write(2) (all its threads), from /proc/PID/io."""
    for line in node.read_file(f"/proc/{pid}/io").splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise KeyError("wchar")


def restart_pxhostd(node: Node) -> float:
    seconds = timed(node, ["systemctl", "restart", "pxhostd"])  # Type=notify: until READY=1
    idle(node)
    return seconds


def du_kb(node: Node, *paths: str) -> int:
    out = node.run(["du", "-skc", *paths]).stdout.splitlines()
    return int(out[-1].split()[0])


class StatusSampler(threading.Thread):
    """Status() round trips over the system bus from inside the node, back to back."""

    def __init__(self, node: Node) -> None:
        super().__init__(daemon=True)
        self.node = node
        self.stop = threading.Event()
        self.result: dict[str, Any] = {}

    def run(self) -> None:
        script = (
            "import asyncio,json,sys,time\n"
            "from dbus_fast.aio import MessageBus\nfrom dbus_fast import BusType, Message\n"
            "async def main():\n"
            "    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()\n"
            "    out = []\n"
            "    end = time.monotonic() + float(sys.argv[1])\n"
            "    while time.monotonic() < end:\n"
            "        t = time.monotonic()\n"
            "        await bus.call(Message(destination='com.portworx.pxhostd1',"
            " path='/com/portworx/pxhostd1', interface='com.portworx.pxhostd1.Manager',"
            " member='Status'))\n"
            "        out.append(time.monotonic() - t)\n"
            "        await asyncio.sleep(0.01)\n"
            "    print(json.dumps(out))\n"
            "asyncio.run(main())\n"
        )
        self.node.write_file("/var/lib/pxbench/status_sampler.py", script)
        res = self.node.run(["python3", "/var/lib/pxbench/status_sampler.py",
                             str(self.seconds)], timeout=self.seconds + 120)
        self.result = latency(json.loads(res.stdout))

    seconds = 10.0


def latency(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {
        "n": len(values),
        "p50_ms": statistics.median(ordered) * 1e3,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3,
        "max_ms": ordered[-1] * 1e3,
    }


def status_latency(node: Node, seconds: float) -> dict[str, Any]:
    sampler = StatusSampler(node)
    sampler.seconds = seconds
    sampler.run()
    return sampler.result


def measure(node: Node) -> dict[str, Any]:
    n = reps(3)
    files = files_count()
    node.run(["mkdir", "-p", GEN, BASE])
    for script in ("bigpayload.py", "build.py", "pxdemo.py"):
        node.copy_in(REPO_ROOT / "container" / "demo-payload" / script, f"{GEN}/{script}")
    common = ("--files", str(files), "--large", "2")
    v1 = generate(node, "v1", "1.0.0", *common)
    payload_kb = du_kb(node, v1)
    listed = len(yaml.load(node.read_file(f"{v1}/payload.yaml"), Loader=yaml.CSafeLoader)
                 ["files"])
    print(f"payload v1: {listed} files, {payload_kb / 1024:.0f} MiB", flush=True)
    r: dict[str, Any] = {"files": listed, "payload_kb": payload_kb, "reps": n}

    # Nothing installed: start-up and the 2-file baselines.
    r["restart_empty"] = summary([restart_pxhostd(node) for _ in range(n)])
    r["status_idle"] = status_latency(node, 5.0)
    d0 = demo(node, "d0", "0.1.0")
    install(node, d0)
    idle(node)
    r["noop_small"] = noops(node, d0, n)
    small_up = []
    small_work = []
    for k in range(n):
        small_up.append(install(node, demo(node, f"d{k + 1}", f"0.2.{k}")))
        small_work.append(small_up[-1] - restart_share(node, "2-file upgrade"))
        idle(node)
    r["upgrade_small"] = summary(small_up)
    r["upgrade_small_without_restart"] = summary(small_work)
    uninstall(node)

    # Fresh installs of the big payload, each after a pxhostd restart (fresh VmHWM).
    fresh, fresh_work, peaks, cps, cps_sync = [], [], [], [], []
    for k in range(n):
        if k:
            uninstall(node)
        node.run(["rm", "-rf", CPA])
        node.run(["sync"])
        cps.append(timed(node, f"cp -a {v1} {CPA} && "
                               f"find {CPA} -type f -print0 | "
                               "xargs -0 sha256sum > /dev/null", timeout=1800))
        node.run(["rm", "-rf", CPA])
        node.run(["sync"])
        # The same, made durable as pxhostd makes its import (one sync at the end).
        cps_sync.append(timed(node, f"cp -a {v1} {CPA} && "
                                    f"find {CPA} -type f -print0 | "
                                    "xargs -0 sha256sum > /dev/null && sync", timeout=1800))
        node.run(["rm", "-rf", CPA])
        node.run(["sync"])
        restart_pxhostd(node)
        if k == 0:
            sampler = StatusSampler(node)
            sampler.seconds = 15.0
            sampler.start()
        fresh.append(install(node, v1))
        fresh_work.append(fresh[-1] - restart_share(node, "fresh install"))
        peaks.append(proc_kb(node, pxhostd_pid(node), "VmHWM"))
        if k == 0:
            sampler.join()
            r["status_during_install"] = sampler.result
        idle(node)
    r["fresh_install"] = summary(fresh)
    r["fresh_install_without_start"] = summary(fresh_work)
    r["cp_sha256"] = summary(cps)
    r["cp_sha256_sync"] = summary(cps_sync)
    r["peak_rss_kb_install"] = summary(peaks)
    r["noop_big"] = noops(node, v1, n)
    r1 = node.run(["readlink", f"{RELEASES}/current"]).stdout.strip()

    # Upgrades: v1 -> v2(k) (one small file) and v1 -> v3(k) (one large file), each with a
    # switch back to v1 (on disk) after it; every v2(k)/v3(k) changes its file anew.
    for kind, changed, label in (("small", CHANGED_SMALL, "v2"), ("large", CHANGED_LARGE, "v3")):
        ups, works, writes, backs, backs_work, bases = [], [], [], [], [], []
        for k in range(n):
            vk = generate(node, f"{label}-{k}", f"{label[1]}.0.{k}", *common,
                          "--change", kind, "--link-from", v1)
            node.run(["rm", "-rf", CPAL])
            bases.append(timed(node, f"cp -al {RELEASES}/{r1} {CPAL} && "
                                     f"cp --remove-destination {vk}/{changed} "
                                     f"{CPAL}/{changed}"))
            node.run(["rm", "-rf", CPAL])
            # The copy's removal leaves 20,000 dirty inodes: written now, not by the
            # upgrade's own syncfs (the fresh installs start from a sync the same way).
            node.run(["sync"])
            pid = pxhostd_pid(node)
            before = wchar(node, pid)
            ups.append(install(node, vk))
            works.append(ups[-1] - restart_share(node, f"upgrade {label}"))
            writes.append(wchar(node, pid) - before)
            idle(node)
            if kind == "small" and k == 0:
                r["disk_v1_v2_kb"] = du_kb(node, RELEASES)
            backs.append(install(node, v1))
            backs_work.append(backs[-1] - restart_share(node, "switch back"))
            idle(node)
        size = int(node.run(["stat", "-c", "%s", f"{v1}/{changed}"]).stdout)
        r[f"upgrade_{label}"] = summary(ups)
        r[f"upgrade_{label}_without_restart"] = summary(works)
        r.setdefault("switch_back_without_restart", [])
        r["switch_back_without_restart"] += backs_work
        r[f"upgrade_{label}_baseline"] = summary(bases)
        r[f"upgrade_{label}_written"] = summary(writes)
        r[f"upgrade_{label}_changed_bytes"] = size
        r.setdefault("switch_back", [])
        r["switch_back"] += backs
    r["switch_back"] = summary(r["switch_back"])
    r["switch_back_without_restart"] = summary(r["switch_back_without_restart"])
    for what in ("2-file upgrade", "fresh install", "upgrade v2", "upgrade v3", "switch back"):
        mine = [t for t in TIMINGS if t["what"] == what]
        r[f"daemon_plan_import {what}"] = summary([t["plan_import"] for t in mine])
        r[f"daemon_rest {what}"] = summary([t["rest"] for t in mine])
    r["restart_big"] = summary([restart_pxhostd(node) for _ in range(n)])
    r["idle_rss_kb"] = proc_kb(node, pxhostd_pid(node), "VmRSS")

    big = big_files_count()
    if big:
        uninstall(node)
        # `big` entries in payload.yaml in all: the demo program and VERSION are two.
        v100k = generate(node, "v100k", "9.0.0", "--files", str(big - 2), "--large", "0",
                         "--max-size", "2048")
        restart_pxhostd(node)
        r["install_100k"] = install(node, v100k)
        r["peak_rss_kb_100k"] = proc_kb(node, pxhostd_pid(node), "VmHWM")
        idle(node)
        time.sleep(2)
        r["idle_rss_kb_100k"] = proc_kb(node, pxhostd_pid(node), "VmRSS")
        r["noop_100k"] = install(node, v100k)
    return r


def report(r: dict[str, Any]) -> None:
    def row(what: str, value: str, base: str, rat: float | None, target: str) -> list[str]:
        return [what, value, base, "-" if rat is None else f"{rat:.2f}x", target]

    def s(x: dict[str, Any]) -> str:
        return f"{x['median']:.2f} s"

    rows = [
        row("fresh install", s(r["fresh_install"]), "cp -a + sha256sum " + s(r["cp_sha256"]),
            ratio(r["fresh_install"], r["cp_sha256"]), "<= 1.1x"),
        row("  without the first start", s(r["fresh_install_without_start"]),
            "cp -a + sha256sum " + s(r["cp_sha256"]),
            ratio(r["fresh_install_without_start"], r["cp_sha256"]), "<= 1.1x"),
        row("  without the first start", s(r["fresh_install_without_start"]),
            "the same + sync " + s(r["cp_sha256_sync"]),
            ratio(r["fresh_install_without_start"], r["cp_sha256_sync"]), "-"),
        row("no-op", s(r["noop_big"]), "2-file no-op " + s(r["noop_small"]),
            ratio(r["noop_big"], r["noop_small"]), "<= 1.2x"),
    ]
    for label, what in (("v2", "one small file"), ("v3", "one large file")):
        up, base = r[f"upgrade_{label}"], r[f"upgrade_{label}_baseline"]
        rows.append(row(f"upgrade, {what}", s(up), "cp -al + cp " + s(base), ratio(up, base),
                        "<= 2x"))
        work = r[f"upgrade_{label}_without_restart"]
        rows.append(row("  without restart + settle", s(work), "cp -al + cp " + s(base),
                        ratio(work, base), "<= 2x"))
        own = r[f"daemon_plan_import upgrade {label}"]
        rows.append(row("  pxhostd's plan + import", s(own), "cp -al + cp " + s(base),
                        ratio(own, base), "-"))
        written = r[f"upgrade_{label}_written"]["median"]
        limit = r[f"upgrade_{label}_changed_bytes"] + 10 * 1024 * 1024
        rows.append(row(f"  bytes written ({what})", f"{written / 1e6:.2f} MB",
                        f"changed + 10 MB: {limit / 1e6:.2f} MB", written / limit, "< 1x"))
    rows += [
        row("switch back", s(r["switch_back"]), "2-file upgrade " + s(r["upgrade_small"]),
            ratio(r["switch_back"], r["upgrade_small"]), "<= 1.2x"),
        row("  without restart + settle", s(r["switch_back_without_restart"]),
            "the same of the 2-file upgrade " + s(r["upgrade_small_without_restart"]),
            ratio(r["switch_back_without_restart"], r["upgrade_small_without_restart"]), "-"),
        row("disk for v1+v2", f"{r['disk_v1_v2_kb'] / 1024:.0f} MiB",
            f"one payload {r['payload_kb'] / 1024:.0f} MiB",
            r["disk_v1_v2_kb"] / r["payload_kb"], "<= 1.05x"),
        row("peak RSS during install", f"{r['peak_rss_kb_install']['median'] / 1024:.1f} MiB",
            "-", None, "-"),
        row("restart pxhostd to ready", s(r["restart_big"]),
            "nothing installed " + s(r["restart_empty"]),
            ratio(r["restart_big"], r["restart_empty"]), "<= 1.2x"),
        row("idle RSS after", f"{r['idle_rss_kb'] / 1024:.1f} MiB", "target 40 MB",
            r["idle_rss_kb"] * 1024 / 40e6, "<= 1x"),
    ]
    if "peak_rss_kb_100k" in r:
        rows += [
            row("peak RSS, 100k-file install", f"{r['peak_rss_kb_100k'] / 1024:.1f} MiB",
                "target 60 MB", r["peak_rss_kb_100k"] * 1024 / 60e6, "<= 1x"),
            row("idle RSS after 100k", f"{r['idle_rss_kb_100k'] / 1024:.1f} MiB",
                "target 40 MB", r["idle_rss_kb_100k"] * 1024 / 40e6, "<= 1x"),
        ]
    during, quiet = r.get("status_during_install", {}), r["status_idle"]
    if during.get("n") and quiet.get("n"):
        rows.append(row("Status() p99 during install", f"{during['p99_ms']:.1f} ms "
                        f"(max {during['max_ms']:.1f})", f"idle p99 {quiet['p99_ms']:.1f} ms",
                        during["p99_ms"] / quiet["p99_ms"], "<= 5x, max <= 50 ms"))
    print_table(f"payload at real size: {r['files']} files, {r['payload_kb'] / 1024:.0f} MiB, "
                f"median of {r['reps']}", ["measurement", "pxhostd", "baseline", "ratio",
                                           "target"], rows)


def main() -> int:
    deb = pxhostd_deb()
    with booted_node(deb, disk_paths=DISK_PATHS) as node:
        result = measure(node)
    report(result)
    write_json(NAME, result)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
