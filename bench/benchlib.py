"""Shared helpers for the benchmarks in bench/ (not a benchmark itself).

Two halves in one file, so one copy serves both sides:

* host side (imported by bench/bench_*.py): boot a node, install the .deb, repeat a
  measurement, summarise (median and spread), print a table, write out/bench/<name>.json;
* node side (`python3 benchlib.py <tool> ...` inside a node, standard library only): the
  timing itself runs inside the node with its monotonic clock, so the cost of entering the
  node from the host never counts.

Machines are noisy: every number is reported as a median over repetitions together with
its minimum and maximum, and compared with a baseline measured on the same node in the
same run.  Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import itertools
import json
import os
import statistics
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nodeharness import Node

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = REPO_ROOT / "out" / "bench"
#: Where this file goes inside a node.
NODE_TOOL = "/var/lib/pxbench/benchlib.py"
#: The demo payload's builder, as the .deb installs it.
NODE_PAYLOAD_BUILDER = "/usr/share/pxhostd/demo-payload/build.py"


# ---------------------------------------------------------------------------------------
# host side
# ---------------------------------------------------------------------------------------


def reps(default: int) -> int:
    """Repetitions per measurement: $PXBENCH_REPS, else `default`."""
    value = os.environ.get("PXBENCH_REPS", "")
    return int(value) if value.isdigit() and int(value) > 0 else default


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and the raw values (in the unit they came in)."""
    if not values:
        return {"n": 0, "median": None, "min": None, "max": None, "values": []}
    return {
        "n": len(values),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": [round(v, 6) for v in values],
    }


def ratio(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    """Ratio of two summaries' medians (None when either is missing or b is zero)."""
    if a.get("median") is None or not b.get("median"):
        return None
    return float(a["median"]) / float(b["median"])


def fmt_ms(s: dict[str, Any]) -> str:
    """`median ms (min-max)` of a summary in seconds."""
    if s.get("median") is None:
        return "-"
    return f"{s['median'] * 1e3:.1f} ms ({s['min'] * 1e3:.1f}-{s['max'] * 1e3:.1f})"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    sys.stdout.flush()


def write_json(name: str, data: dict[str, Any]) -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{name}.json"
    data = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()},
        **data,
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nwrote {path.relative_to(REPO_ROOT)}")
    return path


def pxhostd_deb() -> Path:
    """$PXHOSTD_DEB, else the package `make deb` builds (as the node tests do)."""
    given = os.environ.get("PXHOSTD_DEB")
    if given:
        path = Path(given)
        if not path.is_file():
            raise SystemExit(f"PXHOSTD_DEB={given} is not a file")
        return path.resolve()
    proc = subprocess.run(["make", "--no-print-directory", "deb"], cwd=REPO_ROOT)
    if proc.returncode != 0:
        raise SystemExit("`make deb` failed (output above)")
    debs = sorted((REPO_ROOT / "out").glob("pxhostd_*.deb"), key=lambda p: p.stat().st_mtime)
    if not debs:
        raise SystemExit("`make deb` left no out/pxhostd_*.deb")
    return debs[-1]


@contextlib.contextmanager
def booted_node(deb: Path | None = None, *, disk_paths: Sequence[str] = ()) -> Iterator[Node]:
    """A fresh node with this file installed as its node tool (and the .deb, if given).

    `disk_paths`: node directories on the machine's own filesystem instead of the node's
    overlay root (a host keeps them on ext4 or XFS, never on an overlayfs)."""
    from nodeharness import Node, build_node_root

    with Node(build_node_root(), scratch_binds=disk_paths) as node:
        node.copy_in(Path(__file__), NODE_TOOL, mode=0o755)
        if deb is not None:
            node.install_deb(deb)
            node.wait_active("pxhostd", timeout=120)
        yield node


def tool(node: Node, *args: str, timeout: float = 300.0) -> Any:
    """Run a node-side tool of this file inside `node`; its JSON answer."""
    res = node.run(["python3", NODE_TOOL, *args], timeout=timeout)
    return json.loads(res.stdout)


def timed(node: Node, cmd: Sequence[str] | str, *, timeout: float = 300.0) -> float:
    """Seconds `cmd` takes inside the node (it must succeed)."""
    argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
    answer = tool(node, "timed", "--", *argv, timeout=timeout)
    if answer["rc"] != 0:
        raise RuntimeError(f"{argv} failed ({answer['rc']}): {answer['stderr']}")
    return float(answer["seconds"])


def mono_props(node: Node, unit: str, *props: str) -> dict[str, float]:
    """Monotonic timestamps (`...TimestampMonotonic`) of a unit, in seconds."""
    names = [f"{p}TimestampMonotonic" for p in props]
    out = node.run(["systemctl", "show", unit, *(f"--property={n}" for n in names)]).stdout
    values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return {p: int(values[n]) / 1e6 for p, n in zip(props, names, strict=True)}


def is_active(node: Node, unit: str) -> bool:
    res = node.run(["systemctl", "is-active", unit], check=False)
    return res.stdout.strip() == "active"


# ---------------------------------------------------------------------------------------
# node side: `python3 benchlib.py <tool> ...`, standard library only
# ---------------------------------------------------------------------------------------


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.splitlines()[-lines:])


def node_timed(argv: Sequence[str]) -> dict[str, Any]:
    """Run argv once; its wall time on the monotonic clock, exit code and output tails."""
    start = time.monotonic()
    proc = subprocess.run(list(argv), capture_output=True, text=True)
    seconds = time.monotonic() - start
    return {
        "seconds": seconds,
        "start": start,
        "rc": proc.returncode,
        "stdout": _tail(proc.stdout),
        "stderr": _tail(proc.stderr),
    }


class HttpPoller(threading.Thread):
    """GET a URL every `interval` s; remember each answer's time, success and version."""

    def __init__(self, url: str, interval: float) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.interval = interval
        self.samples: list[tuple[float, bool, str]] = []
        self.stop_event = threading.Event()
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def probe(self) -> tuple[bool, str]:
        try:
            with self.opener.open(self.url, timeout=0.5) as resp:
                body = resp.read()
            try:
                version = str(json.loads(body).get("version", ""))
            except ValueError:
                version = ""
            return True, version
        except (OSError, urllib.error.URLError):
            return False, ""

    def run(self) -> None:
        while not self.stop_event.is_set():
            ok, version = self.probe()
            self.samples.append((time.monotonic(), ok, version))
            time.sleep(self.interval)

    def wait_ok(self, timeout: float, after: float = 0.0, version: str | None = None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, ok, ver in reversed(self.samples[-50:]):
                if t > after and ok and (version is None or ver == version):
                    return True
            time.sleep(0.01)
        return False


def longest_gap(samples: Sequence[tuple[float, bool, str]]) -> dict[str, Any]:
    """The longest run of failed probes: from the last success before it to the first after.

    A failure run with no success after it counts up to the last sample (still down).
    """
    longest = 0.0
    failed = 0
    last_ok: float | None = None
    in_gap = False
    for t, ok, _ in samples:
        if ok:
            if in_gap and last_ok is not None:
                longest = max(longest, t - last_ok)
            in_gap = False
            last_ok = t
        else:
            failed += 1
            in_gap = True
    if in_gap and last_ok is not None and samples:
        longest = max(longest, samples[-1][0] - last_ok)
    return {"gap": longest, "failed_probes": failed, "probes": len(samples)}


def node_gap(url: str, interval: float, expect_version: str | None, argv: Sequence[str]
             ) -> dict[str, Any]:
    """Poll `url` while argv runs; the longest time the URL did not answer."""
    poller = HttpPoller(url, interval)
    poller.start()
    try:
        if not poller.wait_ok(30.0):
            return {"error": f"{url} never answered before the command"}
        before = poller.samples[-1][2]
        result = node_timed(argv)
        end = time.monotonic()
        recovered = poller.wait_ok(60.0, after=end, version=expect_version)
        time.sleep(0.2)  # a few more probes, so a late second dip would show
    finally:
        poller.stop_event.set()
        poller.join()
    gap = longest_gap(poller.samples)
    versions = [v for _, ok, v in poller.samples if ok]
    return {
        **result,
        **gap,
        "recovered": recovered,
        "version_before": before,
        "version_after": versions[-1] if versions else "",
        "interval": interval,
    }


def _thread_switches(pid: int) -> dict[str, int]:
    """Voluntary + involuntary context switches of each thread of pid."""
    counts: dict[str, int] = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            text = Path(f"/proc/{pid}/task/{task}/status").read_text()
        except OSError:
            continue
        total = 0
        for line in text.splitlines():
            if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                total += int(line.split()[1])
        counts[task] = total
    return counts


def node_wakeups(pids: Sequence[int], seconds: float, sample: float) -> dict[str, Any]:
    """Watch the threads of each pid for `seconds`: context switches and wake-up episodes.

    Reading /proc does not wake the target.  An episode is a run of consecutive samples
    in which some thread of the pid switched: one timer tick that wakes the event loop,
    hands a write to a worker thread and goes back to sleep is one episode of a few
    switches.  All pids are watched over the same window.
    """
    first = {pid: _thread_switches(pid) for pid in pids}
    prev = dict(first)
    episodes: dict[int, list[float]] = {pid: [] for pid in pids}
    in_episode = dict.fromkeys(pids, False)
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        time.sleep(sample)
        for pid in pids:
            now = _thread_switches(pid)
            changed = any(now.get(t, 0) != prev[pid].get(t, 0) for t in now)
            if changed and not in_episode[pid]:
                episodes[pid].append(time.monotonic() - start)
            in_episode[pid] = changed
            prev[pid] = now
    elapsed = time.monotonic() - start
    answer: dict[str, Any] = {"seconds": elapsed, "sample": sample, "pids": {}}
    for pid in pids:
        per_thread = {t: prev[pid].get(t, 0) - first[pid].get(t, 0) for t in prev[pid]}
        times = episodes[pid]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        answer["pids"][str(pid)] = {
            "switches": sum(per_thread.values()),
            "per_thread": per_thread,
            "threads": len(prev[pid]),
            "episodes": len(times),
            "episode_times": [round(e, 3) for e in times],
            "median_episode_gap": statistics.median(gaps) if gaps else None,
        }
    return answer


def node_rss(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of pid, in KiB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0])
    return out


# inotify through libc: the status file is replaced by rename, so watch its directory.
_IN_MOVED_TO = 0x00000080
_IN_CLOSE_WRITE = 0x00000008
_IN_CREATE = 0x00000100


def _read_fields(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


class StatusWatcher(threading.Thread):
    """Every new version of the status file, with the monotonic time it appeared.

    The file is replaced by atomic renames, so its directory is watched with inotify
    (through libc): the time is that of the rename, not of a polling tick.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.timeline: list[dict[str, Any]] = []
        self.stop_event = threading.Event()
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        mask = _IN_MOVED_TO | _IN_CLOSE_WRITE | _IN_CREATE
        if libc.inotify_add_watch(self.fd, str(path.parent).encode(), mask) < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {path.parent}")

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                try:
                    buf = os.read(self.fd, 4096)
                except BlockingIOError:
                    time.sleep(0.0005)
                    continue
                now = time.monotonic()
                offset = 0
                hit = False
                while offset < len(buf):
                    length = struct.unpack_from("iIII", buf, offset)[3]
                    name = buf[offset + 16 : offset + 16 + length].rstrip(b"\0").decode()
                    offset += 16 + length
                    hit = hit or name == self.path.name
                if hit:
                    fields = _read_fields(self.path)
                    self.timeline.append({
                        "t": now,
                        "READY": fields.get("READY"),
                        "GENERATION": fields.get("GENERATION"),
                        "SERVICE_STATE": fields.get("SERVICE_STATE"),
                    })
        finally:
            os.close(self.fd)


def node_status_timeline(path: Path, argv: Sequence[str], linger: float) -> dict[str, Any]:
    """Run argv while watching the status file; every version seen until `linger` s after.

    Stops early once READY=1 is seen after the command returned.
    """
    watcher = StatusWatcher(path)
    watcher.start()
    try:
        result = node_timed(argv)
        deadline = time.monotonic() + linger
        while time.monotonic() < deadline:
            if any(e["READY"] == "1" for e in watcher.timeline):
                last = watcher.timeline[-1]
                if last["READY"] == "1":
                    break
            time.sleep(0.01)
        time.sleep(0.05)
    finally:
        watcher.stop_event.set()
        watcher.join()
    return {**result, "timeline": watcher.timeline}


def _main_pid(unit: str) -> int:
    out = subprocess.run(["systemctl", "show", "-P", "MainPID", unit],
                         capture_output=True, text=True).stdout.strip()
    return int(out) if out.isdigit() else 0


def node_probe_loop(unit: str, timeout: float, probe: Sequence[str]) -> dict[str, Any]:
    """Probe back to back inside unit's mount namespace and root until the probe passes.

    Started before the unit exists; waits for its main process.  Each attempt is a whole
    exec probe (as the kubelet runs it), so the first pass is known when it returns.
    """
    attempts: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = _main_pid(unit)
        if not pid:
            time.sleep(0.005)
            continue
        t0 = time.monotonic()
        proc = subprocess.run(["nsenter", "-t", str(pid), "-m", "-r", "--", *probe],
                              capture_output=True, text=True)
        t1 = time.monotonic()
        attempts.append({"start": t0, "end": t1, "rc": proc.returncode,
                         "out": proc.stdout.strip()[-200:]})
        if proc.returncode == 0:
            return {"ready": True, "attempts": attempts}
    return {"ready": False, "attempts": attempts}


def _node_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="benchlib.py", description=__doc__)
    sub = parser.add_subparsers(dest="tool", required=True)
    p = sub.add_parser("timed")
    p.add_argument("cmd", nargs="+")
    p = sub.add_parser("gap")
    p.add_argument("--url", required=True)
    p.add_argument("--interval", type=float, default=0.005)
    p.add_argument("--expect-version")
    p.add_argument("cmd", nargs="+")
    p = sub.add_parser("wakeups")
    p.add_argument("--pid", type=int, action="append", required=True)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--sample", type=float, default=0.01)
    p = sub.add_parser("rss")
    p.add_argument("--pid", type=int, required=True)
    p = sub.add_parser("probe-loop")
    p.add_argument("--unit", required=True)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("probe", nargs="+")
    p = sub.add_parser("status-timeline")
    p.add_argument("--file", type=Path, default=Path("/run/pxhostd/status"))
    p.add_argument("--linger", type=float, default=10.0)
    p.add_argument("cmd", nargs="+")
    args = parser.parse_args(argv)
    if args.tool == "timed":
        answer: Any = node_timed(args.cmd)
    elif args.tool == "gap":
        answer = node_gap(args.url, args.interval, args.expect_version, args.cmd)
    elif args.tool == "wakeups":
        answer = node_wakeups(args.pid, args.seconds, args.sample)
    elif args.tool == "rss":
        answer = node_rss(args.pid)
    elif args.tool == "probe-loop":
        answer = node_probe_loop(args.unit, args.timeout, args.probe)
    else:
        answer = node_status_timeline(args.file, args.cmd, args.linger)
    json.dump(answer, sys.stdout)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 1:
        # `make bench` runs every bench/*.py; this one only serves the others.
        print("benchlib.py: helpers for bench/bench_*.py; nothing to measure on its own")
        sys.exit(0)
    sys.exit(_node_main(sys.argv[1:]))
