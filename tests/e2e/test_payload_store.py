"""The release store on a real node, with a payload of a few thousand files.

Behaviour, not timings (those are in bench/bench_payload_scale.py): releases are hardlink
trees sharing one object per content, an upgrade imports only what changed, a switch back
to a release on disk reads no payload file, the oldest release and its objects go only
after the operation reported, a crash at each new step recovers, `pxhostctl verify` finds
damage, and the import cannot be fooled by a file swapped for a symlink or a FIFO or by a
payload that someone other than root could change.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from nodeharness import REPO_ROOT, Node, wait_for
from pxnode import (
    RELEASES,
    UNIT,
    assert_consistent,
    build_payload,
    current_release,
    install,
    invocation,
    payload_status,
    pxhostctl,
    releases,
    temp_files,
    wait_collected,
    wait_pxhostd,
)

GEN_DIR = "/var/lib/pxtest/gen"
PAYLOADS = "/var/lib/pxtest/big"
STORE = f"{RELEASES}/.store/objects"
#: A few thousand files (CI size) plus two 16 MiB files that make the import take a while.
FILES = 3000
GEN_ARGS = ("--files", str(FILES), "--max-size", "8192", "--large", "2",
            "--large-size", str(16 << 20))
LISTED = FILES + 2 + 2  # the generated tree plus pxdemo and VERSION


def generate(node: Node, name: str, version: str, *extra: str) -> str:
    """Generate a big payload inside the node (no copy of the bytes across)."""
    if not node.exists(f"{GEN_DIR}/bigpayload.py"):
        for script in ("bigpayload.py", "build.py", "pxdemo.py"):
            node.copy_in(REPO_ROOT / "container" / "demo-payload" / script,
                         f"{GEN_DIR}/{script}")
    path = f"{PAYLOADS}/{name}"
    node.run(["python3", f"{GEN_DIR}/bigpayload.py", path, "--version", version,
              *GEN_ARGS, *extra], timeout=300)
    return path


def spec(payload: str) -> dict[str, object]:
    # `-c NAME` makes pxdemo write /etc/pwx/config.json, as Portworx does.
    return {"payload": payload, "args": ["-c", "store-e2e"]}


def journal_lines(node: Node, needle: str) -> list[str]:
    return [ln for ln in node.journal("pxhostd.service").splitlines() if needle in ln]


def objects(node: Node) -> list[str]:
    return node.run(["find", STORE, "-type", "f"]).stdout.split()


def unreferenced(node: Node) -> list[str]:
    return node.run(["find", STORE, "-type", "f", "-links", "1"]).stdout.split()


def test_store_shares_files_imports_only_changes_and_switches_back_without_reading(
    installed_node: Node,
) -> None:
    node = installed_node
    wait_pxhostd(node)
    v1 = generate(node, "v1", "1.0.0")
    v2 = generate(node, "v2", "2.0.0", "--change", "small", "--link-from", v1)
    v3 = generate(node, "v3", "3.0.0", "--change", "large", "--link-from", v1)

    install(node, spec(v1))
    assert_consistent(node, "1.0.0")
    r1 = current_release(node)
    assert journal_lines(node, f"imported release {r1}: {LISTED} of {LISTED} files new")
    # Every release file is an object: one inode (store, release and, once the collection
    # after the reply made it, the spare copy), read-only, root's.
    facts = node.run(["find", f"{RELEASES}/{r1}", "-type", "f", "-printf",
                      "%n %m %U\\n"]).stdout.split("\n")
    assert {f for f in facts if f} <= {"3 444 0", "3 555 0"}, set(facts)
    assert len(objects(node)) == LISTED
    unit = node.read_file(f"/etc/systemd/system/{UNIT}")
    assert f"ReadOnlyPaths={RELEASES}\n" in unit
    pid = node.unit_property(UNIT, "MainPID")
    denied = node.run(["nsenter", "-t", pid, "-m", "sh", "-c",
                       f"echo x >> {RELEASES}/current/VERSION"], check=False)
    assert denied.returncode != 0, "the service must not be able to write its release"

    # v1 -> v2: only the changed files are read and written (pxdemo, VERSION, one file).
    install(node, spec(v2))
    assert_consistent(node, "2.0.0")
    r2 = current_release(node)
    assert journal_lines(node, f"imported release {r2}: 3 of {LISTED} files new")
    # ... into the spare copy of v1 the collection made: only those files were touched.
    assert journal_lines(node, f"built from the spare copy of release {r1}: "
                               f"{LISTED - 3} of {LISTED} files kept as they were")
    same = "rootfs/usr/lib/px/d001/f00100.bin"
    inodes = {node.run(["stat", "-c", "%i", f"{RELEASES}/{r}/{same}"]).stdout for r in (r1, r2)}
    assert len(inodes) == 1, "an unchanged file is one inode in both releases"
    store_kb = int(node.run(["du", "-sk", RELEASES]).stdout.split()[0])
    payload_kb = int(node.run(["du", "-sk", v1]).stdout.split()[0])
    assert store_kb <= payload_kb * 1.05 + 64, (store_kb, payload_kb)

    # Switch back to v1, still on disk, with its payload's files gone: nothing is read.
    node.run(f"find {v1} -type f ! -name payload.yaml -delete")
    install(node, spec(v1))
    assert_consistent(node, "1.0.0")
    assert current_release(node) == r1
    assert journal_lines(node, f"release {r1} is on disk: switching to it, nothing read")
    # The no-op with the same (file-less) payload reads nothing either.
    noop = install(node, spec(v1))
    assert "nothing to do" in noop.stdout
    assert "verified releases" in pxhostctl(node, "verify").stdout

    # v1 -> v3: the prune of v2's leftovers and the collection happen after the reply;
    # then no object is left that no release links, and both kept releases verify.
    install(node, spec(v3))
    assert_consistent(node, "3.0.0")
    r3 = current_release(node)
    assert journal_lines(node, f"imported release {r3}: 3 of {LISTED} files new")
    assert releases(node) == sorted([r1, r3])
    assert unreferenced(node) == []
    # The spare of v3, made after the reply, is v3's tree again: the same inodes.
    wait_collected(node)
    spare = f"{RELEASES}/.store/spare-{r3}"
    tree_of = ("cd {} && find . -type f -printf '%i %m %p\\n' | sort -k3"
               " && find . -type d -printf '%m %p\\n' | sort -k2")
    assert (node.run(["sh", "-c", tree_of.format(spare)]).stdout
            == node.run(["sh", "-c", tree_of.format(f"{RELEASES}/{r3}")]).stdout)
    assert node.run(["sh", "-c", f"ls -d {RELEASES}/.store/spare-*"]).stdout.split() == [spare]
    assert journal_lines(node, f"pruned releases {r2}")
    assert pxhostctl(node, "verify").returncode == 0

    # Damage one installed file: verify names it and fails.
    victim = f"{RELEASES}/{r3}/rootfs/usr/lib/px/d002/f00200.bin"
    node.run(f"chmod u+w {victim} && printf x >> {victim} && chmod 444 {victim}")
    bad = pxhostctl(node, "verify", check=False)
    assert bad.returncode != 0
    assert "rootfs/usr/lib/px/d002/f00200.bin does not match its sha256" in bad.stderr


def test_crash_at_each_new_step_recovers(installed_node: Node) -> None:
    node = installed_node
    wait_pxhostd(node)
    v1 = generate(node, "v1", "1.0.0")
    install(node, spec(v1))
    c2 = generate(node, "c2", "2.0.0", "--change", "small", "--link-from", v1)
    install(node, spec(c2))  # two releases on disk: the next upgrade prunes one
    version = "2.0.0"
    for n, failpoint in enumerate(["mid-stage", "mid-prune", "after-prune", "mid-spare"],
                                  start=3):
        payload = generate(node, f"c{n}", f"{n}.0.0", "--change", "large", "--link-from", v1)
        node.write_file("/var/lib/pxhostd/failpoints", failpoint + "\n", mode=0o600)
        node.systemctl("reset-failed", "pxhostd")
        node.systemctl("restart", "pxhostd")
        wait_pxhostd(node)
        pid = node.unit_property("pxhostd", "MainPID")
        result = install(node, spec(payload), check=False)
        if failpoint == "mid-stage":  # before the journal opens: nothing to undo
            assert result.returncode != 0
        else:  # pruning and collection come after the reply
            assert result.returncode == 0, result.stdout + result.stderr
            version = f"{n}.0.0"
        wait_for(lambda: node.unit_property("pxhostd", "MainPID"),
                 lambda p, old=pid: p not in ("0", old), timeout=60,
                 what=f"pxhostd to be restarted after {failpoint}")
        wait_pxhostd(node)
        assert_consistent(node, version)
        assert unreferenced(node) == [], failpoint
        assert len(releases(node)) <= 2, releases(node)
        assert pxhostctl(node, "verify").returncode == 0, failpoint
    # The interrupted import is simply done again by the next install.
    install(node, spec(f"{PAYLOADS}/c3"))
    assert_consistent(node, "3.0.0")
    assert unreferenced(node) == []


def _swap_during_import(node: Node, target: str, replace_with: str) -> None:
    """A watcher that swaps `target` the moment the import's temp tree appears."""
    script = (
        f"until ls -d {RELEASES}/.pxhostd-tmp-* >/dev/null 2>&1; do :; done; "
        f"rm -f {target}; {replace_with}"
    )
    node.run(["systemd-run", "--unit=pxtest-swapper", "--collect", "sh", "-c", script])


def test_a_file_swapped_mid_import_is_refused_and_nothing_is_staged(
    installed_node: Node,
) -> None:
    node = installed_node
    wait_pxhostd(node)
    v1 = generate(node, "v1", "1.0.0")
    install(node, spec(v1))
    before_objects = sorted(objects(node))
    before_releases = releases(node)
    secret = node.read_bytes("/etc/shadow")
    foreign = hashlib.sha256(secret).hexdigest()
    # The last file in import order; the swap lands while the files before it are imported.
    small = "rootfs/usr/lib/px/d029/f02999.bin"
    for n, swap in enumerate(["ln -s /etc/shadow {t}", "mkfifo {t}"], start=2):
        # A different seed: every file is new, so the import takes a while.
        payload = generate(node, f"s{n}", f"{n}.0.0", "--seed", f"swap{n}")
        target = f"{payload}/{small}"
        _swap_during_import(node, target, swap.format(t=target))
        result = install(node, spec(payload), check=False)
        out = result.stdout + result.stderr
        assert result.returncode != 0, out
        assert "InvalidPayload" in out or "payload" in out
        assert small in out and ("symbolic link" in out or "FIFO" in out), out
        assert foreign not in out and foreign[:12] not in out
        wait_collected(node)
        assert releases(node) == before_releases
        assert sorted(objects(node)) == before_objects
        assert temp_files(node) == []
        assert payload_status(node)["version"] == "1.0.0"
        everything = (pxhostctl(node, "history", "--json").stdout
                      + pxhostctl(node, "status", "--json", check=False).stdout)
        assert foreign[:12] not in everything
    status = json.loads(pxhostctl(node, "status", "--json", check=False).stdout)
    assert status["state"] == "failed" and status["active_transaction"] == "/", status
    assert "FIFO" in status["last_error"], status  # named, and nothing hangs


def test_a_payload_root_does_not_own_is_refused(installed_node: Node) -> None:
    node = installed_node
    wait_pxhostd(node)
    payload = generate(node, "owned", "1.0.0")
    node.run(["chown", "pxuser", payload])
    result = install(node, spec(payload), check=False)
    assert result.returncode != 0
    assert "not by root" in result.stderr and "chown -R root:root" in result.stderr
    node.run(["chown", "root", payload])
    node.run(["chmod", "g+w", f"{payload}/rootfs"])
    result = install(node, spec(payload), check=False)
    assert "writable by group or others" in result.stderr and "chmod -R go-w" in result.stderr
    assert releases(node) == []
    assert not node.exists(f"/etc/systemd/system/{UNIT}")


def test_a_unit_change_from_a_pxhostd_upgrade_waits_for_the_next_restart(
    installed_node: Node, tmp_path: Path
) -> None:
    node = installed_node
    wait_pxhostd(node)
    payload = build_payload(node, tmp_path, "d1", "1.0.0")
    install(node, spec(payload))
    before = invocation(node)
    # What a new pxhostd package does: a template that renders one more setting.
    template = "/usr/share/pxhostd/templates/portworx.service.j2"
    text = node.read_file(template)
    node.write_file(template, text.replace("Restart=on-failure\n",
                                           "Restart=on-failure\nLimitCORE=infinity\n"))
    again = install(node, spec(payload))
    assert "takes effect at the next restart" in again.stdout, again.stdout
    assert invocation(node) == before, "storage must not restart for a pxhostd upgrade"
    assert "LimitCORE=infinity" in node.read_file(f"/etc/systemd/system/{UNIT}")
    status = json.loads(pxhostctl(node, "status", "--json", check=False).stdout)
    assert status["unit_change_pending"].startswith("unit change from the pxhostd upgrade")
    assert "pending:" in pxhostctl(node, "status").stdout
    node.systemctl("restart", UNIT)
    pxhostctl(node, "reconcile")  # any operation refreshes the status
    status = json.loads(pxhostctl(node, "status", "--json", check=False).stdout)
    assert status.get("unit_change_pending", "") == "", status
    assert "nothing to do" in install(node, spec(payload)).stdout
