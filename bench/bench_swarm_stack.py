#!/usr/bin/env python3
"""Docker Swarm: `docker stack deploy` to a healthy task, `docker stack rm` to nothing left.

On one single-node Swarm inside a booted Docker node (tests/e2e/swarmkit.py: pxhostd from
the .deb, the pod image from scripts/build-image loaded with `docker load`), with the stack
file from `pxhostctl spec --platform swarm`:

1. one first deploy installs the payload (reported, not repeated);
2. then N times on the unchanged node: `docker stack deploy` until the stack's task is
   healthy (the pod submitted its spec, pxhostd found nothing to do, `pxhostctl probe
   --pod` passed), and `docker stack rm` until no container of the stack and no process of
   it (pod, shim, probe) is left on the node. The storage service keeps its InvocationID
   throughout (checked, reported).

Baseline in the same run, on the same node: a stack of the same image whose only work is
a shell that waits for SIGTERM, with the same healthcheck timing (`true` as the test),
stop grace, update settings and host network. The ratio shows what pxhostd's pod adds to
Swarm's own scheduling and health-check cadence. Timings are taken inside the node
(polling every 0.1 s). Reported, never asserted. Environment: PXBENCH_REPS (default 5).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import yaml
from benchlib import REPO_ROOT, fmt_ms, print_table, pxhostd_deb, ratio, reps, summary, write_json

sys.path.insert(0, str(REPO_ROOT / "tests" / "e2e"))
sys.path.insert(0, str(REPO_ROOT / "tests"))
from swarmkit import IMAGE, STACK_FILE, Swarm, build_images, stack_file, swarm_node

NAME = "swarm_stack"
BASE_FILE = "/root/baseline-stack.yml"
BASE_STACK = "pxbaseline"

#: Inside the node: deploy, then poll until the service's task is healthy; print seconds.
DEPLOY = """
set -eu
t0=$(date +%s.%N)
docker stack deploy --resolve-image never -c "$file" "$stack" >/dev/null
until docker ps -q --filter "label=com.docker.stack.namespace=$stack" --filter health=healthy \
    | grep -q .; do sleep 0.1; done
t1=$(date +%s.%N)
echo "$t0 $t1"
"""
#: Arguments come in the environment: a pgrep pattern on the command line would match the
#: polling shell itself.
#: Inside the node: remove, then poll until no container and no process of it is left.
REMOVE = """
set -eu
t0=$(date +%s.%N)
docker stack rm "$stack" >/dev/null
while docker ps -aq --filter "label=com.docker.stack.namespace=$stack" | grep -q . \
    || pgrep -f "$mark" >/dev/null || pgrep -f "[c]ontainerd-shim" >/dev/null; do sleep 0.1; done
t1=$(date +%s.%N)
echo "$t0 $t1"
"""


def baseline_file(stack_text: str) -> str:
    """The generated stack with the pod replaced by a shell that waits for SIGTERM."""
    doc: dict[str, Any] = yaml.safe_load(stack_text)
    svc = doc["services"]["portworx"]
    svc["entrypoint"] = ["/bin/sh", "-c"]
    svc["command"] = ["trap 'exit 0' TERM; echo pxbaseline-waiting; while :; do sleep 0.1; done"]
    svc["healthcheck"]["test"] = ["CMD", "true"]
    svc["volumes"] = []
    svc.pop("secrets", None)
    doc.pop("secrets", None)
    svc["environment"] = {}
    return yaml.safe_dump(doc, sort_keys=False).replace("$", "$$")


def interval(swarm: Swarm, script: str, **env: str) -> float:
    out = swarm.node.run(["sh", "-c", script], env=env, timeout=300).stdout.split()
    return float(out[1]) - float(out[0])


def measure(swarm: Swarm, n: int) -> dict[str, Any]:
    node = swarm.node
    text = stack_file(node, "-c", "bench-swarm")
    node.write_file(BASE_FILE, baseline_file(text))
    first = interval(swarm, DEPLOY, file=STACK_FILE, stack="portworx")
    invocation = node.unit_property("portworx.service", "InvocationID")
    first_rm = interval(swarm, REMOVE, stack="portworx", mark="pxhostd-pod")
    results: dict[str, list[float]] = {k: [] for k in
                                       ("deploy", "rm", "base_deploy", "base_rm")}
    for _ in range(n):  # interleaved: the load on the machine hits both alike
        results["deploy"].append(interval(swarm, DEPLOY, file=STACK_FILE, stack="portworx"))
        results["rm"].append(interval(swarm, REMOVE, stack="portworx", mark="pxhostd-pod"))
        results["base_deploy"].append(interval(swarm, DEPLOY, file=BASE_FILE, stack=BASE_STACK))
        results["base_rm"].append(
            interval(swarm, REMOVE, stack=BASE_STACK, mark="pxbaseline-waiting"))
        time.sleep(1)
    unchanged = node.unit_property("portworx.service", "InvocationID") == invocation
    return {
        "first_deploy_s": first,
        "first_rm_s": first_rm,
        "storage_invocation_unchanged": unchanged,
        **{f"{k}_s": summary(v) for k, v in results.items()},
    }


def main() -> int:
    n = reps(5)
    deb = pxhostd_deb()
    out = REPO_ROOT / "out" / "bench" / "images"
    out.mkdir(parents=True, exist_ok=True)
    tars = build_images(out)
    with swarm_node(deb, {IMAGE: tars[IMAGE]}) as swarm:
        results = measure(swarm, n)
    deploy_ratio = ratio(results["deploy_s"], results["base_deploy_s"])
    rm_ratio = ratio(results["rm_s"], results["base_rm_s"])
    print_table(
        f"docker stack deploy / rm on a single-node Swarm ({n} reps, unchanged node)",
        ["measurement", "pxhostd stack", "baseline stack", "ratio"],
        [
            ["deploy -> task healthy", fmt_ms(results["deploy_s"]),
             fmt_ms(results["base_deploy_s"]), f"{deploy_ratio:.2f}" if deploy_ratio else "-"],
            ["stack rm -> nothing left", fmt_ms(results["rm_s"]), fmt_ms(results["base_rm_s"]),
             f"{rm_ratio:.2f}" if rm_ratio else "-"],
        ],
    )
    print(f"first deploy (installs the payload): {results['first_deploy_s'] * 1e3:.0f} ms; "
          f"storage InvocationID unchanged over all runs: "
          f"{results['storage_invocation_unchanged']}")
    write_json(NAME, {"deb": deb.name, "reps": n, "results": results,
                      "ratios": {"deploy": deploy_ratio, "rm": rm_ratio}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
