"""A real libvirtd for the tests: started, hooked and stopped by the test session.

PID 1 here is not systemd, so nothing starts libvirt: `Libvirt.start()`
runs `virtlogd -d` and `libvirtd -d` itself (the first start builds the
capabilities cache, ~9 s), and `stop()` ends them by the PIDs in their pid
files.  libvirtd reads /etc/libvirt/hooks/ only when it starts, so the hook
is installed first: a two-line wrapper that runs this checkout's
`vswitchd-libvirt-hook` against the socket of whichever test daemon wrote
its path into `socket_file` (each test starts its own vswitchd).  Whatever
hook was there before is put back afterwards.

Domains are defined with `define()` and always undefined (destroyed first)
by `undefine_all()`; their names carry the caller's unique prefix.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HOOK = Path("/etc/libvirt/hooks/qemu")
PIDFILES = {"libvirtd": Path("/run/libvirtd.pid"),
            "virtlogd": Path("/run/virtlogd.pid")}
URI = "qemu:///system"
QEMU_USER = "libvirt-qemu"


def pid_alive(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def virsh(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["virsh", "-c", URI, *args], capture_output=True, text=True,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"virsh {' '.join(args)} failed: {r.stderr.strip()}")
    return r


class Libvirt:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.socket_file = workdir / "vswitchd-socket"
        self.saved_hook: bytes | None = None
        self.hook_was_there = False
        self.pids: dict[str, int] = {}
        self.domains: list[str] = []

    # Lifecycle.

    def start(self) -> None:
        pid = pid_alive(PIDFILES["libvirtd"])
        if pid is not None:
            raise RuntimeError(f"libvirtd is already running (pid {pid}): the tests need "
                               "one they start themselves, with their hook installed")
        self._install_hook()
        self.workdir.mkdir(parents=True, exist_ok=True)
        # QEMU runs as libvirt-qemu and makes the guests' serial sockets here.
        os.chown(self.workdir, _uid(QEMU_USER), -1)
        os.chmod(self.workdir, 0o755)
        # A virtlogd left running is as good as ours (it only keeps QEMU's
        # logs); it is then left running, since we did not start it.
        if pid_alive(PIDFILES["virtlogd"]) is None:
            self._daemon("virtlogd")
        self.start_libvirtd()

    def start_libvirtd(self, timeout_s: float = 90.0) -> None:
        self._daemon("libvirtd")
        deadline = time.monotonic() + timeout_s
        while virsh("version", check=False, timeout=timeout_s).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"libvirtd not answering after {timeout_s} s")
            time.sleep(0.5)

    def stop_libvirtd(self) -> None:
        self._stop("libvirtd")

    def stop(self) -> None:
        try:
            self.undefine_all()
        finally:
            self._stop("libvirtd")
            self._stop("virtlogd")
            self._restore_hook()

    def _daemon(self, name: str) -> None:
        subprocess.run([name, "-d"], check=True, timeout=30)
        deadline = time.monotonic() + 30
        while (pid := pid_alive(PIDFILES[name])) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} -d wrote no pid file")
            time.sleep(0.1)
        self.pids[name] = pid

    def _stop(self, name: str, timeout_s: float = 30.0) -> None:
        pid = self.pids.pop(name, None)
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)

    # The hook.

    def _install_hook(self) -> None:
        self.hook_was_there = HOOK.exists()
        if self.hook_was_there:
            self.saved_hook = HOOK.read_bytes()
        HOOK.parent.mkdir(parents=True, exist_ok=True)
        hook = Path(sys.executable).parent / "vswitchd-libvirt-hook"
        HOOK.write_text("#!/bin/sh\n"
                        "# vswitchd tests (tests/vm/libvirt_env.py), removed after them\n"
                        f'VSWITCHD_SOCKET="$(cat {self.socket_file} 2>/dev/null)" '
                        f'exec {hook} "$@"\n')
        HOOK.chmod(0o755)

    def _restore_hook(self) -> None:
        if self.saved_hook is not None:
            HOOK.write_bytes(self.saved_hook)
        elif not self.hook_was_there and HOOK.exists():
            HOOK.unlink()

    def use_daemon(self, socket_path: str) -> None:
        """Point the hook at this vswitchd's management socket."""
        self.socket_file.write_text(socket_path)

    # Domains.

    def define(self, name: str, xml: str) -> None:
        path = self.workdir / f"{name}.xml"
        path.write_text(xml)
        self.domains.append(name)
        virsh("define", str(path))

    def undefine_all(self) -> None:
        for name in self.domains:
            virsh("destroy", name, check=False)
            virsh("undefine", name, check=False)
        self.domains.clear()


def _uid(user: str) -> int:
    import pwd
    return pwd.getpwnam(user).pw_uid
