#!/usr/bin/env python3
"""The same job three ways on one node: pxhostd, ansible-core, and a plain shell script.

The job: put the demo payload in place, render its unit (Type=notify, an environment
variable, a bind mount), enable and run it, restart only when something changed.  Each
way manages its own unit and port on the same node, so all three run side by side:

| way     | unit                | how                                                       |
|---------|---------------------|-----------------------------------------------------------|
| pxhostd | portworx.service    | `pxhostctl install --spec FILE` (the whole CLI round trip) |
| ansible | pxansible.service   | `ansible-playbook -c local` inside the node: copy, template, |
|         |                     | systemd_service (daemon_reload when the unit changed), a    |
|         |                     | restart handler                                            |
| shell   | pxshell.service     | `cmp` + `install -C`, `systemctl daemon-reload` when the unit |
|         |                     | changed, `systemctl restart` only when anything changed     |

ansible-core comes from PyPI (`pip install --target`, cached under .cache/bench/) and is
copied into the node, which has no network; it runs on the node's own python3.

Measured, repetitions interleaved across the three ways, every time inside the node:
(a) no-op reconcile: the same state again;
(b) change-to-active: an environment change until the command returns with the service
    active again (each way waits for the restart job; the new InvocationID is checked);
(c) upgrade downtime: the payload v(k) -> v(k+1) while a poller GETs the service's
    /status every 5 ms; the longest stretch without an answer.  Against the payload's own
    stop+start: `systemctl restart` of the installed unit, measured the same way.
Targets (issue "idempotent install"): no-op at least 50x faster than Ansible; downtime
within 100 ms of the payload's own stop+start.  Reported, never asserted.
Environment: PXBENCH_REPS (default 5).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from benchlib import (
    NODE_PAYLOAD_BUILDER,
    REPO_ROOT,
    booted_node,
    fmt_ms,
    mono_props,
    print_table,
    pxhostd_deb,
    ratio,
    reps,
    summary,
    tool,
    write_json,
)
from nodeharness import Node, wait_for

NAME = "reconcile"
ANSIBLE_CORE = "2.17.14"
ANSIBLE_CACHE = REPO_ROOT / ".cache" / "bench" / f"ansible-core-{ANSIBLE_CORE}"
BENCH = "/var/lib/pxbench"
PAYLOADS = f"{BENCH}/payloads"
DATA = f"{BENCH}/data"
NODE_ANSIBLE = "/opt/pxbench/ansible-core"
WAYS = ("pxhostd", "ansible", "shell")
UNITS = {"pxhostd": "portworx.service", "ansible": "pxansible.service", "shell": "pxshell.service"}
PORTS = {"pxhostd": 9001, "ansible": 9002, "shell": 9003}
TARGET_NOOP_FACTOR = 50.0
TARGET_DOWNTIME_EXTRA = 0.100

# The unit the ansible and shell ways install: the same settings pxhostd renders.
UNIT_TEMPLATE = """\
[Unit]
Description=Benchmark: demo payload managed by {way}
After=network-online.target local-fs.target
Wants=network-online.target

[Service]
Type=notify
ExecStart=/opt/pxbench/{way}/pxdemo -c bench --port {port}
Environment=PX_BENCH={env}
BindPaths={data}:{data}
Restart=on-failure
RestartSec=5
TimeoutStartSec=600
TimeoutStopSec=300
KillMode=mixed

[Install]
WantedBy=multi-user.target
"""

SHELL_APPLY = r"""#!/bin/sh
# apply.sh PAYLOAD_DIR ENV_VALUE: the plain shell way.
set -eu
payload=$1
value=$2
dest=/opt/pxbench/shell
unit=/etc/systemd/system/pxshell.service
changed=0
mkdir -p "$dest"
for f in pxdemo VERSION; do
    if ! cmp -s "$payload/$f" "$dest/$f"; then
        install -C -m 0755 "$payload/$f" "$dest/$f"
        changed=1
    fi
done
tmp=$(mktemp)
cat >"$tmp" <<EOF
@UNIT@
EOF
if ! cmp -s "$tmp" "$unit"; then
    install -C -m 0644 "$tmp" "$unit"
    systemctl daemon-reload
    changed=1
fi
rm -f "$tmp"
systemctl is-enabled -q pxshell.service || systemctl enable -q pxshell.service
if [ "$changed" = 1 ]; then
    systemctl restart pxshell.service
else
    systemctl is-active -q pxshell.service || systemctl start pxshell.service
fi
"""

PLAYBOOK = """\
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: payload
      ansible.builtin.copy:
        src: "{{ payload }}/"
        dest: /opt/pxbench/ansible/
        mode: "0755"
      notify: restart
    - name: unit file
      ansible.builtin.template:
        src: pxansible.service.j2
        dest: /etc/systemd/system/pxansible.service
        mode: "0644"
      register: unit
      notify: restart
    - name: systemd sees the new unit
      ansible.builtin.systemd_service:
        daemon_reload: true
      when: unit.changed
    - name: enabled and running
      ansible.builtin.systemd_service:
        name: pxansible.service
        enabled: true
        state: started
  handlers:
    - name: restart
      ansible.builtin.systemd_service:
        name: pxansible.service
        state: restarted
"""


def ansible_tree() -> Path:
    """ansible-core and its dependencies in a plain directory (built once, cached)."""
    marker = ANSIBLE_CACHE / ".complete"
    if not marker.exists():
        tmp = ANSIBLE_CACHE.with_name(ANSIBLE_CACHE.name + ".tmp")
        subprocess.run(["rm", "-rf", str(tmp)], check=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--target", str(tmp), f"ansible-core=={ANSIBLE_CORE}"],
            check=True,
        )
        subprocess.run(["rm", "-rf", str(ANSIBLE_CACHE)], check=True)
        tmp.rename(ANSIBLE_CACHE)
        marker.touch()
    return ANSIBLE_CACHE


def apply_cmd(way: str, version: int, env: str) -> list[str]:
    payload = f"{PAYLOADS}/v{version}"
    if way == "pxhostd":
        spec = f"{BENCH}/specs/v{version}-{env}.yaml"
        return ["pxhostctl", "install", "--spec", spec]
    if way == "shell":
        return [f"{BENCH}/shell/apply.sh", payload, env]
    return [
        "env", f"PYTHONPATH={NODE_ANSIBLE}", "LC_ALL=C.UTF-8", "HOME=/root",
        "ANSIBLE_NOCOLOR=1", "ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3",
        "ANSIBLE_LOCALHOST_WARNING=0", "ANSIBLE_INVENTORY_UNPARSED_WARNING=0",
        "python3", "-m", "ansible.cli.playbook", "-i", "localhost,",
        "-e", f"payload={payload}", "-e", f"px_env={env}",
        f"{BENCH}/ansible/play.yml",
    ]


def version_name(k: int) -> str:
    return f"1.0.{k}"


def prepare(node: Node, n: int) -> None:
    """Payloads v0..vn, the specs pxhostd gets, the shell script, the playbook, ansible."""
    node.run(["mkdir", "-p", DATA, f"{BENCH}/specs", f"{BENCH}/shell", f"{BENCH}/ansible"])
    for k in range(n + 1):
        node.run(["python3", NODE_PAYLOAD_BUILDER, f"{PAYLOADS}/v{k}", "--version",
                  version_name(k)])
    unit = {
        way: UNIT_TEMPLATE.format(way=way, port=PORTS[way], env="{env}", data=DATA)
        for way in ("ansible", "shell")
    }
    node.write_file(
        f"{BENCH}/shell/apply.sh",
        SHELL_APPLY.replace("@UNIT@", unit["shell"].format(env="$value").rstrip("\n")),
        mode=0o755,
    )
    node.write_file(f"{BENCH}/ansible/play.yml", PLAYBOOK)
    node.write_file(
        f"{BENCH}/ansible/pxansible.service.j2", unit["ansible"].format(env="{{ px_env }}")
    )
    node.copy_in(ansible_tree(), NODE_ANSIBLE)


def write_spec(node: Node, version: int, env: str) -> None:
    spec = {
        "payload": f"{PAYLOADS}/v{version}",
        "args": ["-c", "bench"],
        "env": {"PX_BENCH": env},
        "mounts": [f"{DATA}:{DATA}"],
    }
    node.write_file(f"{BENCH}/specs/v{version}-{env}.yaml", yaml.safe_dump(spec))


def reset_start_limit(node: Node, way: str) -> None:
    """Back-to-back restarts would hit systemd's start rate limit (5 in 10 s by default)."""
    node.systemctl("reset-failed", UNITS[way], check=False)


def run_apply(node: Node, way: str, version: int, env: str) -> dict[str, Any]:
    reset_start_limit(node, way)
    if way == "pxhostd":
        write_spec(node, version, env)
    answer: dict[str, Any] = tool(node, "timed", "--", *apply_cmd(way, version, env))
    if answer["rc"] != 0:
        raise RuntimeError(f"{way} apply failed: {answer['stdout']}\n{answer['stderr']}")
    return answer


def invocation(node: Node, way: str) -> str:
    return node.unit_property(UNITS[way], "InvocationID")


def last_transaction_seconds(node: Node) -> float:
    """Duration of pxhostd's latest transaction: its "started" to "finished" journal lines.

    A no-op leaves no history entry, so the journal's monotonic timestamps are used (both
    lines travel the same way, stderr to journald, so the transport delay mostly cancels).
    """
    out = node.run(["journalctl", "-u", "pxhostd", "-o", "json", "-n", "40",
                    "--output-fields=MESSAGE"]).stdout
    started: dict[str, float] = {}
    last: float | None = None
    for line in out.splitlines():
        entry = json.loads(line)
        message = entry.get("MESSAGE")
        if not isinstance(message, str) or "transaction " not in message:
            continue
        words = message.split()
        path = words[words.index("transaction") + 1]
        when = int(entry["__MONOTONIC_TIMESTAMP"]) / 1e6
        if " started: " in message:
            started[path] = when
        elif " finished: " in message and path in started:
            last = when - started[path]
    if last is None:
        raise RuntimeError("no finished transaction in pxhostd's journal")
    return last


def not_active_window(node: Node, way: str) -> float:
    """systemd's own view of the last restart: ActiveEnter - ActiveExit."""
    ts = mono_props(node, UNITS[way], "ActiveExit", "ActiveEnter")
    return ts["ActiveEnter"] - ts["ActiveExit"]


def gap(node: Node, way: str, cmd: list[str], expect: str | None) -> dict[str, Any]:
    reset_start_limit(node, way)
    args = ["gap", "--url", f"http://127.0.0.1:{PORTS[way]}/status"]
    if expect:
        args += ["--expect-version", expect]
    answer: dict[str, Any] = tool(node, *args, "--", *cmd)
    if answer.get("error") or answer["rc"] != 0 or not answer["recovered"]:
        raise RuntimeError(f"{way}: {answer}")
    return answer


def measure(node: Node, n: int) -> dict[str, Any]:
    raw: dict[str, dict[str, list[float]]] = {
        way: {"noop": [], "change": [], "change_active": [], "upgrade_gap": [],
              "upgrade_systemd": [], "upgrade_cmd": [], "own_gap": [], "own_systemd": []}
        for way in WAYS
    }
    noop_tx: list[float] = []
    cli_start: list[float] = []
    for way in WAYS:  # first install: v0
        run_apply(node, way, 0, "e0")
    for k in range(1, n + 1):
        for way in WAYS:
            # (a) no-op: the state is already the one asked for.
            inv = invocation(node, way)
            raw[way]["noop"].append(run_apply(node, way, k - 1, "e0")["seconds"])
            if invocation(node, way) != inv:
                raise RuntimeError(f"{way}: a no-op reconcile restarted the service")
            if way == "pxhostd":
                noop_tx.append(last_transaction_seconds(node))
                # Context: what the CLI's own start-up costs, with no D-Bus call at all.
                cli_start.append(tool(node, "timed", "--", "pxhostctl", "--version")["seconds"])
            # (b) change-to-active: an env change, then back (both count).
            for env in ("e1", "e0"):
                inv = invocation(node, way)
                done = run_apply(node, way, k - 1, env)
                raw[way]["change"].append(done["seconds"])
                active = mono_props(node, UNITS[way], "ActiveEnter")["ActiveEnter"]
                raw[way]["change_active"].append(active - done["start"])
                if invocation(node, way) == inv or node.run(
                    ["systemctl", "is-active", UNITS[way]], check=False
                ).stdout.strip() != "active":
                    raise RuntimeError(f"{way}: env change did not restart into active")
            # (c) upgrade v(k-1) -> v(k) under the poller ...
            if way == "pxhostd":
                write_spec(node, k, "e0")
            up = gap(node, way, apply_cmd(way, k, "e0"), version_name(k))
            raw[way]["upgrade_gap"].append(up["gap"])
            raw[way]["upgrade_cmd"].append(up["seconds"])
            raw[way]["upgrade_systemd"].append(not_active_window(node, way))
            # ... and the payload's own stop+start, measured the same way.
            own = gap(node, way, ["systemctl", "restart", UNITS[way]], version_name(k))
            raw[way]["own_gap"].append(own["gap"])
            raw[way]["own_systemd"].append(not_active_window(node, way))
        print(f"  round {k}/{n} done", flush=True)
    results: dict[str, Any] = {
        way: {key: summary(values) for key, values in raw[way].items()} for way in WAYS
    }
    results["pxhostd"]["noop_transaction"] = summary(noop_tx)
    results["pxhostd"]["cli_version_only"] = summary(cli_start)
    return results


def report(results: dict[str, Any], n: int) -> dict[str, Any]:
    rows = []
    for way in WAYS:
        r = results[way]
        extra = [g - o for g, o in zip(r["upgrade_gap"]["values"], r["own_gap"]["values"],
                                       strict=True)]
        r["downtime_extra"] = summary(extra)
        rows.append([
            way,
            fmt_ms(r["noop"]),
            fmt_ms(r["change_active"]),
            fmt_ms(r["change"]),
            fmt_ms(r["upgrade_cmd"]),
            fmt_ms(r["upgrade_gap"]),
            fmt_ms(r["own_gap"]),
            fmt_ms(r["downtime_extra"]),
            fmt_ms(r["upgrade_systemd"]),
            fmt_ms(r["own_systemd"]),
        ])
    print_table(
        f"reconcile, median (min-max) of {n} (change: {2 * n})",
        ["way", "no-op", "change-to-active", "change cmd returns", "upgrade cmd",
         "upgrade downtime (HTTP)", "own stop+start (HTTP)", "downtime - own",
         "upgrade not-active (systemd)", "own not-active (systemd)"],
        rows,
    )
    px, ans = results["pxhostd"], results["ansible"]
    factor = ratio(ans["noop"], px["noop"]) or 0.0
    factor_tx = ratio(ans["noop"], px["noop_transaction"])
    extra = px["downtime_extra"]["median"]
    targets = {
        "noop_50x_faster_than_ansible": {
            "factor_cli": factor,
            "factor_transaction_only": factor_tx,
            "met": factor >= TARGET_NOOP_FACTOR,
        },
        "downtime_within_100ms_of_own_restart": {
            "extra_s_median": extra,
            "extra_s_max": px["downtime_extra"]["max"],
            "met": extra is not None and extra <= TARGET_DOWNTIME_EXTRA,
        },
    }
    print_table(
        "targets",
        ["target", "measured", "met"],
        [
            ["pxhostd no-op >= 50x faster than ansible (CLI round trip)", f"{factor:.1f}x",
             str(targets["noop_50x_faster_than_ansible"]["met"])],
            ["  same, transaction time alone (" + fmt_ms(px["noop_transaction"]) + ")",
             f"{factor_tx:.0f}x" if factor_tx else "-", "-"],
            ["  (context: `pxhostctl --version` alone " + fmt_ms(px["cli_version_only"]) + ")",
             "", "-"],
            ["pxhostd upgrade downtime <= own stop+start + 100 ms",
             f"{extra * 1e3:+.1f} ms" if extra is not None else "-",
             str(targets["downtime_within_100ms_of_own_restart"]["met"])],
        ],
    )
    return targets


def main() -> int:
    n = reps(5)
    deb = pxhostd_deb()
    ansible_tree()
    with booted_node(deb) as node:
        wait_for(
            lambda: node.run(["pxhostctl", "status", "--json"], check=False),
            lambda r: r.returncode == 0 and json.loads(r.stdout)["state"] == "idle",
            timeout=120,
            what="pxhostd to be idle",
        )
        prepare(node, n)
        results = measure(node, n)
    targets = report(results, n)
    write_json(NAME, {"deb": deb.name, "reps": n, "ansible_core": ANSIBLE_CORE,
                      "results": results, "targets": targets})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
