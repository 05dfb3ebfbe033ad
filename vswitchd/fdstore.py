"""Keeping TAP queue fds alive across a daemon restart (systemd's fd store).

Closing the last fd of a TAP drops its carrier, even for a persistent one:
the VM or container behind it sees its link go down.  So vswitchd hands a
copy of every persistent TAP's queue fds to the service manager
(``FDSTORE=1`` over $NOTIFY_SOCKET, with SCM_RIGHTS), and a restarted
vswitchd gets them back (``LISTEN_FDS``/``LISTEN_FDNAMES``, as
sd_listen_fds_with_names() reads them) and adopts the TAP without ever
closing it.  The unit sets ``FileDescriptorStoreMax=`` and
``FileDescriptorStorePreserve=yes`` so the store outlives a stop.

Names are ``tap.<ifname>``; a TAP's queues are stored under one name, in
queue order.  Without $NOTIFY_SOCKET storing is a no-op, and without
LISTEN_FDS nothing is inherited: the daemon then opens TAPs afresh.
"""

from __future__ import annotations

import fcntl
import logging
import os

from vswitchd import sdnotify

log = logging.getLogger(__name__)

SD_LISTEN_FDS_START = 3


def tap_name(ifname: str) -> str:
    return f"tap.{ifname}"


def inherited() -> dict[str, list[int]]:
    """The fds the service manager passed us, by name; clears the
    LISTEN_* variables so children don't inherit them."""
    try:
        pid = int(os.environ.get("LISTEN_PID", "0"))
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return {}
    names = os.environ.get("LISTEN_FDNAMES", "").split(":")
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(var, None)
    if pid != os.getpid() or count <= 0:
        return {}
    out: dict[str, list[int]] = {}
    for i in range(count):
        fd = SD_LISTEN_FDS_START + i
        flags = fcntl.fcntl(fd, fcntl.F_GETFD)
        fcntl.fcntl(fd, fcntl.F_SETFD, flags | fcntl.FD_CLOEXEC)
        name = names[i] if i < len(names) and names[i] else "unknown"
        out.setdefault(name, []).append(fd)
    log.info("inherited %d fds from the service manager: %s", count, ", ".join(sorted(out)))
    return out


def _send(message: str, fds: list[int] | None = None) -> bool:
    sent = sdnotify.notify(message, fds=fds)
    if not sent and os.environ.get("NOTIFY_SOCKET"):
        log.warning("cannot reach the service manager's fd store")
    return sent


def store(name: str, fds: list[int]) -> bool:
    """Hands copies of ``fds`` to the service manager under ``name``
    (replacing what was stored under it)."""
    remove(name)
    return _send(f"FDSTORE=1\nFDNAME={name}", fds)


def remove(name: str) -> bool:
    """Asks the service manager to close what it stores under ``name``."""
    return _send(f"FDSTOREREMOVE=1\nFDNAME={name}")
