"""A stand-in for systemd's side of the notify protocol, for tests.

PID 1 here is not systemd, so this plays it: a NOTIFY_SOCKET that records
READY=1/STOPPING=1/WATCHDOG=1 and keeps an fd store (FDSTORE=1 with
SCM_RIGHTS, FDSTOREREMOVE=1), and a launcher that hands the stored fds to
the next daemon the way systemd does: at fd 3 onwards, with LISTEN_FDS,
LISTEN_FDNAMES and LISTEN_PID set to the daemon's own pid.
"""

from __future__ import annotations

import array
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.e2e.daemon_fixture import ROOT

# Runs in the child between fork and the daemon: moves the passed fds to
# 3.. and sets LISTEN_PID to its own pid, which exec keeps.
_LAUNCHER = """
import fcntl, os, sys
fds = [int(x) for x in os.environ.pop("VS_TEST_FDS", "").split(",") if x]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 1000) for fd in fds]
for fd in fds:
    os.close(fd)
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i, inheritable=True)
    os.close(fd)
if fds:
    os.environ["LISTEN_FDS"] = str(len(fds))
    os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.executable, [sys.executable] + sys.argv[1:])
"""


class FakeServiceManager:
    def __init__(self, tmp: Path) -> None:
        self.path = str(tmp / "sm-notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages: list[str] = []
        self.store: dict[str, list[int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        fd_size = array.array("i").itemsize
        while not self._stop.is_set():
            try:
                data, anc, _flags, _addr = self.sock.recvmsg(
                    4096, socket.CMSG_SPACE(253 * fd_size))
            except TimeoutError:
                continue
            fds: list[int] = []
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    a = array.array("i")
                    a.frombytes(raw[: len(raw) - len(raw) % fd_size])
                    fds.extend(a)
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append(data.decode())
            name = fields.get("FDNAME", "stored")
            if fields.get("FDSTOREREMOVE") == "1":
                for fd in self.store.pop(name, []):
                    os.close(fd)
            if fields.get("FDSTORE") == "1":
                self.store.setdefault(name, []).extend(fds)
            elif fds:
                for fd in fds:
                    os.close(fd)

    def wait_for(self, text: str, timeout_s: float = 20.0, after: int = 0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(text in m for m in self.messages[after:]):
                return True
            time.sleep(0.02)
        return False

    def launch(self, config: Path, log: Path,
               env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Starts vswitchd on ``config`` with the stored fds, as systemd would."""
        fds, names = [], []
        for name, stored in self.store.items():
            for fd in stored:
                fds.append(fd)
                names.append(name)
        env = dict(os.environ, **(env or {}), NOTIFY_SOCKET=self.path, PYTHONUNBUFFERED="1",
                   VS_TEST_FDS=",".join(map(str, fds)), LISTEN_FDNAMES=":".join(names))
        with open(log, "ab") as out:
            return subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER, "-m", "vswitchd.daemon", "--config",
                 str(config)], cwd=ROOT, env=env, pass_fds=fds, stdout=out,
                stderr=subprocess.STDOUT)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()
        for stored in self.store.values():
            for fd in stored:
                os.close(fd)
        self.store.clear()
