"""`pxhostd-pod`: PID 1 of the pxhostd DaemonSet pod.

In order, changing nothing until the checks pass:
0. the pod shares the host's PID namespace (hostPID);
1. the required host paths and the declared service mounts are real mounts (all missing
   ones named in one message);
2. /host_proc/1/ns/mnt is the host's mount namespace, and the host has a valid machine-id;
3. the legacy health endpoint (127.0.0.1:9015) starts answering from the status file;
4. the host's `/` is made a shared mount (as px-init did);
5. the host's pxhostd is installed or upgraded from the image's .deb when missing or older,
   and started;
6. the image's payload is placed on the host (unless --payload names one there);
7. the spec built from this pod's arguments, environment and mounts is submitted over
   D-Bus (with a drain around it when the upgrade is disruptive, pxhostd.kube); the
   transaction's progress goes to stdout, its result in one line, and the
   submission record (spec digest, release, result) that the readiness probe compares
   with the status file is written in the pod;
8. then it stays up (following its Node's px/service and px/enabled labels) until
   SIGTERM/SIGINT, and exits 0 within a second or two, leaving the
   storage service running: the only D-Bus action on the way out is closing the connection.

`pxhostd-pod --host-access=bus` (Docker Swarm, pxhostd.pod.busaccess) leaves out 0, 2, 4
and 5: only the bus socket, /opt/pwx and /run/pxhostd are needed, the host's pxhostd comes
from its package and must be at least as new as the pod, Docker secrets join the
environment, and the spec gets no mounts from the container.

`pxhostd-pod --uninstall [--wipe]` is the explicit uninstall (the old px/enabled=remove).
Exit codes: 0 done or stopped, 1 failed (the reason is the last line, also written to
/dev/termination-log), 2 bad options.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dbus_fast import BusType

from pxhostd import __version__
from pxhostd.bus.client import PxClient, raise_for_result
from pxhostd.errors import InvalidSpec, NotInstalled, PxError
from pxhostd.kube.errors import DrainTimeout, KubeApiError
from pxhostd.kube.podside import KubeSide
from pxhostd.log import setup_logging
from pxhostd.paths import Paths
from pxhostd.payload.manifest import MANIFEST_NAME, Manifest, parse_manifest_yaml
from pxhostd.pod import busaccess, hostinstall, hostpayload, hostprep, specbuild, submit
from pxhostd.pod.busaccess import HostAccess
from pxhostd.pod.dockersecrets import SECRETS_DIR
from pxhostd.pod.health import HealthServer, serve_health
from pxhostd.pod.hostenter import HOST_MNT_NS, Host
from pxhostd.pod.locking import host_locked
from pxhostd.pod.mounts import MOUNTINFO, REQUIRED_MOUNTS, read_mountinfo, require_mounts
from pxhostd.pod.signals import ignore_stop_signals, install_stop_handlers
from pxhostd.spec.digest import raw_spec_digest
from pxhostd.spec.validate import spec_from_dict
from pxhostd.status.submission import (
    POD_SUBMISSION,
    Submission,
    SubmissionResult,
    clear_submission,
    write_submission,
)

PROG = "pxhostd-pod"
#: The pod talks to pxhostd over the host's system bus socket, mounted at /run/dbus.
POD_REQUIRED_MOUNTS = (*REQUIRED_MOUNTS, "/run/dbus")
#: Time left for winding down after SIGTERM (the promise is 2 s; the rest is margin).
STOP_GRACE = 1.0
#: How long to retry binding the health endpoint (an old pod may still hold the port).
BIND_WAIT = 10.0
TERMINATION_LOG = Path("/dev/termination-log")

_log = logging.getLogger(PROG)


@dataclass(frozen=True)
class PodSettings:
    """Where the pod finds things; tests point these at scratch places."""

    required_mounts: tuple[str, ...] = POD_REQUIRED_MOUNTS
    mountinfo: Path = MOUNTINFO
    host_mountinfo: Path = Path("/proc/1/mountinfo")
    host_mnt_ns: Path = HOST_MNT_NS
    host_pid_ns: Path = hostprep.HOST_PID_NS
    own_pid_ns: Path = hostprep.OWN_PID_NS
    #: The pod's own record of its submission, read by `pxhostctl probe --pod`.
    submission: Path = POD_SUBMISSION
    status_file: Path = Paths().status_file
    lock_file: Path = Paths().lock_file
    image_packages: Path = hostinstall.IMAGE_PACKAGES
    image_payload: Path = hostpayload.IMAGE_PAYLOAD
    host_packages: Path = hostinstall.HOST_PACKAGES
    host_payloads: Path = hostpayload.HOST_PAYLOADS
    #: None: the system bus (DBUS_SYSTEM_BUS_ADDRESS, else /run/dbus/system_bus_socket).
    bus_address: str | None = None
    daemon_wait: float = submit.DAEMON_WAIT
    termination_log: Path = TERMINATION_LOG
    #: --host-access=bus: what must be mounted, where Docker secrets are, and the oldest
    #: host pxhostd this pod works with (its own version: the host is upgraded first).
    bus_required_mounts: tuple[str, ...] = busaccess.BUS_REQUIRED_MOUNTS
    secrets_dir: Path = SECRETS_DIR
    min_host_version: str = __version__


def say(line: str) -> None:
    """One plain line on stdout (kubectl logs); flushed at once, no TTY needed."""
    print(line, flush=True)


class Pod:
    def __init__(self, options: specbuild.PodOptions, settings: PodSettings) -> None:
        self.options = options
        self.settings = settings
        self.host = Host(settings.host_mnt_ns)
        self.health: HealthServer | None = None
        self.client: PxClient | None = None
        self.kube: KubeSide | None = None
        self.stop = asyncio.Event()

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        remove_handlers = install_stop_handlers(loop, self.stop)
        work = asyncio.create_task(self.work(), name="pod-work")
        stopped = asyncio.create_task(self.stop.wait(), name="pod-stop")
        try:
            await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not self.stop.is_set():
                return work.result()
            if not work.done():
                work.cancel()  # kills a running host command and reaps it
                await asyncio.wait({work}, timeout=STOP_GRACE)
            say(f"{PROG}: stopped; the storage service keeps running")
            return 0
        finally:
            stopped.cancel()
            await self.close()
            remove_handlers()
            if self.stop.is_set():
                ignore_stop_signals()

    async def close(self) -> None:
        if self.kube is not None:
            self.kube.close()
            self.kube = None
        if self.client is not None:
            self.client.close()  # no call: just the connection
            self.client = None
        if self.health is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.health.close(), STOP_GRACE / 2)
            self.health = None

    async def work(self) -> int:
        try:
            clear_submission(self.settings.submission)
            await self.check_host()
            if self.options.uninstall:
                return await self.uninstall()
            return await self.install()
        except PxError as exc:
            self.fail(f"{PROG}: error: {exc.name}: {exc}")
            return 1

    def fail(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)
        with contextlib.suppress(OSError):
            if self.settings.termination_log.exists():
                self.settings.termination_log.write_text(line + "\n")

    # -- steps -----------------------------------------------------------------------------

    @property
    def over_bus(self) -> bool:
        return self.options.host_access is HostAccess.BUS

    async def check_host(self) -> None:
        """Everything that must hold before the host is touched; changes nothing."""
        if self.over_bus:  # no host namespace to check: only the three mounts
            require_mounts(self.settings.bus_required_mounts, self.settings.mountinfo)
            say(f"{PROG} {__version__}: host access over the system bus")
            return
        hostprep.check_host_pid(self.settings.host_pid_ns, self.settings.own_pid_ns)
        declared = specbuild.declared_service_mounts(os.environ) or []
        required = [*self.settings.required_mounts,
                    *(p for p in declared if p not in self.settings.required_mounts)]
        require_mounts(required, self.settings.mountinfo)
        hostprep.check_host_namespace(self.settings.host_mnt_ns)
        machine_id = await hostprep.host_machine_id(self.host)
        say(f"{PROG} {__version__}: host machine-id {machine_id}")

    async def install(self) -> int:
        for ignored in self.options.ignored:
            say(f"{PROG}: ignoring old option {ignored} (not needed with pxhostd)")
        self.health = await self.start_health()
        if self.over_bus:
            self.client = await busaccess.connect_host_daemon(
                self.connect_once, say, self.settings.min_host_version,
                min(self.settings.daemon_wait, busaccess.BUS_DAEMON_WAIT))
        else:
            await self.prepare_host()
        payload = self.options.payload or await self.place_payload()
        spec = self.build_spec(payload)
        digest = raw_spec_digest(spec)
        txid = self.txid()
        if self.client is None:
            self.client = await self.connect()
        # Drains and node labels are Kubernetes' (and read the payload through the host);
        # a Swarm task has neither.
        self.kube = None if self.over_bus else KubeSide.create(
            os.environ.get("PXHOSTD_NODE_NAME"), say, drain_all=self.options.drain_all,
            drain_timeout=self.options.drain_timeout,
        )
        code = await self.drained_submit(spec, payload, digest, txid)
        if code:
            return code
        if self.client is not None:
            self.client.close()
            self.client = None
        say(f"{PROG}: serving {self.options.endpoint[0]}:{self.options.endpoint[1]}/health;"
            " readiness comes from the status file")
        if self.kube is None:
            await self.stop.wait()
            return 0
        labels = asyncio.create_task(self.kube.serve_labels(self.connect), name="labels")
        try:
            await self.stop.wait()
        finally:
            labels.cancel()
        return 0

    async def drained_submit(self, spec: dict[str, object], payload: str, digest: str,
                             txid: str) -> int:
        """`submit_spec`, with the node drained around it when the upgrade is disruptive
        (pxhostd.kube); a drain that fails submits nothing and leaves the service as it was."""
        assert self.client is not None
        if self.kube is None:
            return await self.submit_spec(spec, digest, txid)
        try:
            drained = await self.kube.before_install(
                self.client, await self.payload_manifest(payload))
        except (DrainTimeout, KubeApiError) as exc:
            line = submit.error_line("install", exc)
            say(line)
            self.record(SubmissionResult.FAILED, digest, txid, line)
            return 0
        try:
            return await self.submit_spec(spec, digest, txid)
        finally:
            await self.kube.after_install(drained)

    async def payload_manifest(self, payload: str) -> Manifest:
        """The manifest of the payload about to be submitted, read on the host."""
        out = await self.host.run(["cat", f"{payload.rstrip('/')}/{MANIFEST_NAME}"])
        return parse_manifest_yaml(out.stdout)

    async def submit_spec(self, spec: dict[str, object], digest: str, txid: str) -> int:
        """Submit and report; 1 only when the spec itself is refused."""
        assert self.client is not None
        try:
            result = await submit.install(self.client, spec, txid, say)
        except InvalidSpec as exc:
            self.record(SubmissionResult.FAILED, digest, txid, f"{exc.name}: {exc}")
            raise  # refused at once: exit non-zero with the named error
        except PxError as exc:
            say(submit.error_line("install", exc))
            self.record(SubmissionResult.FAILED, digest, txid, submit.error_line("install", exc))
        else:
            line = submit.result_line("install", result)
            say(line)
            try:
                raise_for_result(result)
            except InvalidSpec:
                # The daemon refused the spec: a CrashLoop shows why; a restart won't help
                # until the DaemonSet changes.
                self.record(SubmissionResult.FAILED, digest, txid, line)
                self.fail(f"{PROG}: error: {line}")
                return 1
            except PxError:
                # RolledBack, Timeout, ...: reported; this pod stays unready.
                self.record(SubmissionResult.FAILED, digest, txid, line)
            else:
                details = result.get("details") or {}
                release = str(details.get("release") or "") if isinstance(details, dict) else ""
                self.record(SubmissionResult.DONE, digest, txid, line, release)
        return 0

    async def prepare_host(self) -> None:
        """nsenter mode: shared `/`, and the host daemon installed from the image's .deb."""
        async with host_locked(self.settings.lock_file):
            if await hostprep.ensure_shared_root(self.host):
                say("host: made / a shared mount")
        await hostinstall.ensure_host_daemon(
            self.host,
            __version__,
            say,
            package_dir=self.settings.image_packages,
            host_packages=self.settings.host_packages,
            lock_path=self.settings.lock_file,
        )

    def record(
        self, result: SubmissionResult, digest: str, txid: str, message: str, release: str = ""
    ) -> None:
        """The pod's submission record for its readiness probe (in the pod, not the host)."""
        try:
            write_submission(self.settings.submission,
                             Submission(result, digest, release, txid, message))
        except PxError as exc:
            # Without the record the probe says "not ready", which is then the truth.
            _log.error("cannot write the submission record: %s", exc)

    async def uninstall(self) -> int:
        self.client = await self.connect()
        result = await submit.uninstall(self.client, self.options.wipe, self.txid(), say)
        say(submit.result_line("uninstall", result))
        try:
            raise_for_result(result)
        except NotInstalled:
            return 0
        except PxError as exc:
            self.fail(f"{PROG}: error: {exc.name}: {exc}")
            return 1
        return 0

    async def start_health(self) -> HealthServer:
        addr, port = self.options.endpoint
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BIND_WAIT
        while True:
            try:
                return await serve_health(addr, port, self.settings.status_file)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or loop.time() >= deadline:
                    raise PxError(f"cannot serve the health endpoint on {addr}:{port}: "
                                  f"{exc.strerror or exc}") from exc
            await asyncio.sleep(0.5)

    async def place_payload(self) -> str:
        async with host_locked(self.settings.lock_file):
            placed = await asyncio.to_thread(
                hostpayload.place_payload, self.settings.image_payload, self.settings.host_payloads
            )
        state = "copied" if placed.changed else "already there"
        say(f"payload: {placed.manifest.name} {placed.manifest.version} at {placed.path} "
            f"({state})")
        return str(placed.path)

    def build_spec(self, payload: str) -> dict[str, object]:
        if self.over_bus:
            # A Swarm task's mounts are its own (the three host paths, and what Docker
            # injects): none is the service's. Secrets come as files under /run/secrets.
            mounts: list[str] = []
            environ = busaccess.pod_environment(os.environ, self.settings.secrets_dir)
        else:
            mounts = self.pod_spec_mounts()
            environ = dict(os.environ)
        spec = specbuild.build_spec(self.options, payload, specbuild.spec_env(environ), mounts)
        spec_from_dict(spec)  # InvalidSpec here: named error, nothing submitted
        for line in specbuild.describe_spec(spec):
            say(line)
        return spec

    def pod_spec_mounts(self) -> list[str]:
        try:
            host_entries = read_mountinfo(self.settings.host_mountinfo)
        except (OSError, ValueError) as exc:
            _log.warning("cannot read the host's mounts (%s); assuming host paths", exc)
            host_entries = None
        return specbuild.spec_mounts(read_mountinfo(self.settings.mountinfo), host_entries,
                                     specbuild.declared_service_mounts(os.environ))

    async def connect_once(self) -> PxClient:
        return await PxClient.connect(bus_address=self.settings.bus_address,
                                      bus_type=BusType.SYSTEM)

    async def connect(self) -> PxClient:
        return await submit.wait_for_daemon(self.connect_once, say, self.settings.daemon_wait)

    @staticmethod
    def txid() -> str:
        node = os.environ.get("PXHOSTD_NODE_NAME") or socket.gethostname()
        return f"pod:{node[:64]}:{uuid.uuid4().hex[:12]}"


def main(argv: Sequence[str] | None = None, settings: PodSettings | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--help"], ["-h"]):
        print(specbuild.argparse_help(), end="")
        return 0
    if args == ["--version"]:
        print(f"{PROG} {__version__}")
        return 0
    try:
        options = specbuild.parse_pod_args(args)
    except specbuild.UsageError as exc:
        print(f"{PROG}: {exc} (see {PROG} --help)", file=sys.stderr)
        return 2
    setup_logging(options.debug)
    pod = Pod(options, settings or PodSettings())
    try:
        return asyncio.run(pod.run())
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
