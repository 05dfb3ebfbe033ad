"""The systemd notify protocol (sd_notify), without libsystemd.

A datagram of ``KEY=VALUE`` lines to the unix socket named by
$NOTIFY_SOCKET (an abstract socket when it starts with '@').  Without that
variable every call is a no-op, so the daemon runs the same in a terminal.
"""

from __future__ import annotations

import array
import os
import socket


def notify(*lines: str, fds: list[int] | None = None) -> bool:
    """Sends ``lines`` (e.g. "READY=1", "STATUS=...") to the service
    manager, with copies of ``fds`` attached (SCM_RIGHTS, for FDSTORE=1);
    returns False when there is none or it cannot be reached."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())] if fds else []
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendmsg(["\n".join(lines).encode()], anc, 0, path)
    except OSError:
        return False
    return True


def watchdog_interval_s() -> float | None:
    """Half of $WATCHDOG_USEC in seconds (how often to ping), when the
    service manager asked for pings and this is the process it watches."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        return None
