#!/usr/bin/env python3
"""The pod under podman: pod start to probe-ready on a fresh and on an unchanged node.

The image is the one `make image` builds (scripts/build-image), the pod the generated
DaemonSet's, translated into `podman run` exactly as tests/e2e/test_pod_podman.py does
(tests/e2e/podman_pod.py), inside a booted node with podman. Measured inside the node on its
monotonic clock (benchlib `timed`): from just before `podman run` to the end of the first
passing readiness probe (`podman exec NAME pxhostctl probe --pod`, the template's exec
probe, back to back).

- **fresh node** (PXBENCH_FRESH_REPS, default 3; a node each): pxhostd installed from the
  image, the payload placed, the spec submitted and applied, the service started;
- **unchanged node** (PXBENCH_REPS, default 7): the previous pod removed, a new one started;
  nothing to do on the host (the service's InvocationID is checked unchanged);
- **baseline, same node, same run**: the runtime's own cost, a container of the same image
  started the same way (privileged, hostPID, hostNetwork: `podman run -d ... sleep`)
  until `podman exec ... true` answers.

Also the image's size (the docker-archive, and podman's view of the loaded image). The
simulated pod's numbers (bench_pod_ready.py) are the other comparison in
docs/benchmarks.md. Reported, never asserted.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from benchlib import (
    NODE_TOOL,
    REPO_ROOT,
    fmt_ms,
    print_table,
    pxhostd_deb,
    ratio,
    reps,
    summary,
    timed,
    write_json,
)
from nodeharness import Node

sys.path.insert(0, str(REPO_ROOT / "tests" / "e2e"))
import podman_pod as pp
from test_pod_podman import PARAMS

NAME = "pod_podman"
UNIT = "portworx.service"


def start_script(node: Node, docs: list[dict[str, Any]], run: pp.PodRun) -> str:
    """A node-side script: start the pod, then probe back to back until it passes."""
    argv = pp.translate(docs, run, node)
    probe = pp.shell_words(pp.probe_argv(docs, run.name))
    path = f"{pp.POD_BASE}/start-{run.name}.sh"
    node.write_file(path, f"set -e\n{pp.shell_words(argv)} >/dev/null\n"
                          f"until {probe} >/dev/null 2>&1; do :; done\n", mode=0o755)
    return path


def baseline_script(node: Node, image: str, name: str) -> str:
    path = f"{pp.POD_BASE}/baseline-{name}.sh"
    node.write_file(path, f"set -e\npodman run -d --name {name} --pids-limit=0 "
                          "--privileged --pid=host --network=host "
                          f"--entrypoint sleep {image} infinity >/dev/null\n"
                          f"until podman exec {name} true >/dev/null 2>&1; do :; done\n",
                    mode=0o755)
    return path


def booted(root: Path, tar: Path) -> tuple[Node, str]:
    node = pp.podman_node(root).start()
    node.copy_in(Path(REPO_ROOT / "bench" / "benchlib.py"), NODE_TOOL, mode=0o755)
    pp.prepare_node(node)
    return node, pp.load_image(node, tar)


def main() -> int:
    n = reps(7)
    fresh_n = int(os.environ.get("PXBENCH_FRESH_REPS", "3"))
    deb = pxhostd_deb()
    version = deb.name.removeprefix("pxhostd_").removesuffix("_all.deb")
    tar = pp.build_image(deb, REPO_ROOT / "out" / f"pxhostd-pod_{version}.image.tar")
    root = pp.podman_node_root()
    docs = pp.generated_manifest(PARAMS)

    fresh: list[float] = []
    for i in range(fresh_n):
        node, image = booted(root, tar)
        try:
            fresh.append(timed(node, ["sh", start_script(node, docs, pp.PodRun(f"f{i}", image))]))
            assert node.run(["dpkg", "-s", "pxhostd"]).returncode == 0
        finally:
            node.stop()

    unchanged: list[float] = []
    baseline: list[float] = []
    node, image = booted(root, tar)
    try:
        timed(node, ["sh", start_script(node, docs, pp.PodRun("u0", image))])
        invocation = node.unit_property(UNIT, "InvocationID")
        previous = "u0"
        for i in range(1, n + 1):
            node.run(["podman", "rm", "--force", "--time", "2", previous], timeout=60)
            previous = f"u{i}"
            unchanged.append(timed(node, ["sh", start_script(node, docs,
                                                             pp.PodRun(previous, image))]))
            name = f"b{i}"
            baseline.append(timed(node, ["sh", baseline_script(node, image, name)]))
            node.run(["podman", "rm", "--force", "--time", "0", name], timeout=60)
        if node.unit_property(UNIT, "InvocationID") != invocation:
            raise SystemExit("a new pod on an unchanged node restarted the service")
        image_bytes = int(node.run(["podman", "image", "inspect", "--format", "{{.Size}}",
                                    image]).stdout.strip())
    finally:
        node.stop()

    results = {
        "fresh_s": summary(fresh),
        "unchanged_s": summary(unchanged),
        "baseline_container_s": summary(baseline),
        "archive_bytes": tar.stat().st_size,
        "image_bytes": image_bytes,
    }
    print_table(
        f"pod start -> probe-ready under podman, median (min-max); fresh of {fresh_n}, "
        f"others of {n}",
        ["measure", "time", "x baseline"],
        [
            ["fresh node (pxhostd + payload installed)", fmt_ms(results["fresh_s"]),
             f"{ratio(results['fresh_s'], results['baseline_container_s']) or 0:.1f}x"],
            ["unchanged node (nothing to do)", fmt_ms(results["unchanged_s"]),
             f"{ratio(results['unchanged_s'], results['baseline_container_s']) or 0:.1f}x"],
            ["baseline: same image, sleep, until exec answers",
             fmt_ms(results["baseline_container_s"]), "1.0x"],
        ],
    )
    print_table("image", ["what", "size"], [
        ["docker-archive (out/...image.tar)", f"{results['archive_bytes'] / 2**20:.1f} MiB"],
        ["loaded image (podman)", f"{results['image_bytes'] / 2**20:.1f} MiB"],
    ])
    write_json(NAME, {"deb": deb.name, "reps": n, "fresh_reps": fresh_n, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
