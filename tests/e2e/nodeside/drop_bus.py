#!/usr/bin/env python3
"""Cut one process's connection to the system bus, as a bus daemon dropping it would.

Finds the process's Unix socket whose peer is dbus-daemon's, takes a duplicate of it with
pidfd_getfd(2), and shuts the socket down both ways: the process reads end-of-file on its
bus connection (the same socket, not a copy of it), dbus-daemon sees it disconnect. Usage:
drop_bus.py PID. Needs root (ptrace rights over PID). Prints the fd it cut.
"""

import ctypes
import os
import re
import socket
import subprocess
import sys

SYS_PIDFD_GETFD = 438


def inode_of(pid: int, fd: str) -> int | None:
    try:
        link = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None
    m = re.fullmatch(r"socket:\[(\d+)\]", link)
    return int(m.group(1)) if m else None


def main() -> None:
    pid = int(sys.argv[1])
    bus_pid = subprocess.run(["systemctl", "show", "-p", "MainPID", "--value", "dbus"],
                             capture_output=True, text=True, check=True).stdout.strip()
    daemon_inodes = {inode_of(int(bus_pid), fd) for fd in os.listdir(f"/proc/{bus_pid}/fd")}
    # ss -x: local inode and peer inode of every Unix socket.
    peers = {}
    for line in subprocess.run(["ss", "-xanH"], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        f = line.split()
        if len(f) >= 8 and f[5].isdigit() and f[7].isdigit():
            peers[int(f[5])] = int(f[7])
    for fd in os.listdir(f"/proc/{pid}/fd"):
        inode = inode_of(pid, fd)
        if inode is not None and peers.get(inode) in daemon_inodes:
            break
    else:
        raise SystemExit(f"drop_bus: process {pid} has no connection to dbus-daemon")
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    dup = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(fd), 0)
    if dup < 0:
        raise SystemExit(f"drop_bus: pidfd_getfd: {os.strerror(ctypes.get_errno())}")
    sock = socket.socket(fileno=dup)
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    print(fd)


if __name__ == "__main__":
    main()
