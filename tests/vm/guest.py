"""Real QEMU guests for tests: boot, drive over the serial console, kill.

`Guest` runs `qemu-system-x86_64` (TCG: this machine has no usable KVM) on
the image from tests/vm/image.py with its serial port on a unix socket, and
`Console` speaks the command runner of guest_init.sh on that socket:

    with Guest(image, tmp_path, nics=[tap_nic("vmt1234", MAC)], ip="10.9.0.2/24") as g:
        assert g.run("ping -c 3 10.9.0.1").rc == 0

NIC helpers return QEMU arguments: `tap_nic` (a tap QEMU creates and holds,
script=no so nothing on the host touches it) and `vhost_user_nic` (QEMU
connects to a vhost-user backend's socket; needs `shared_memory=True`, and
under TCG the NIC's MSI-X off, `vectors=0`).  `Console` also works on a
libvirt domain's `<serial type='unix'>` socket.

QEMU is stopped by its PID (SIGTERM, then SIGKILL), never by name.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.vm.image import GuestImage

QEMU = "qemu-system-x86_64"
BOOT_TIMEOUT_S = 90.0       # TCG on a busy 2-CPU machine: usually 4-8 s


@dataclass(frozen=True)
class Result:
    rc: int
    output: str


def tap_nic(ifname: str, mac: str, index: int = 0) -> list[str]:
    """A virtio NIC on a tap named `ifname` that QEMU creates (vhost off: no /dev/vhost-net)."""
    return ["-netdev", f"tap,id=n{index},ifname={ifname},script=no,downscript=no,vhost=off",
            "-device", f"virtio-net-pci,netdev=n{index},mac={mac}"]


def scripted_tap_nic(ifname: str, mac: str, ifup: str, ifdown: str, index: int = 0) -> list[str]:
    """A tap QEMU creates and hands to `ifup` (and `ifdown` when it closes it)."""
    return ["-netdev", f"tap,id=n{index},ifname={ifname},script={ifup},downscript={ifdown},"
            "vhost=off", "-device", f"virtio-net-pci,netdev=n{index},mac={mac}"]


def vhost_user_nic(socket_path: str, mac: str, index: int = 0, server: bool = False,
                   queues: int = 1) -> list[str]:
    """A virtio NIC on a vhost-user socket (QEMU is the client unless `server`)."""
    chardev = f"socket,id=c{index},path={socket_path}" + (",server=on" if server else "")
    mq = ",mq=on,vectors=0" if queues > 1 else ",vectors=0"
    return ["-chardev", chardev,
            "-netdev", f"vhost-user,id=n{index},chardev=c{index},queues={queues}",
            "-device", f"virtio-net-pci,netdev=n{index},mac={mac}{mq}"]


def kernel_cmdline(ip: str | None = None, extra: str = "", **ifaces: str) -> str:
    """console=ttyS0 plus our vs.* keys (see guest_init.sh): ip for eth0, eth1=CIDR..."""
    parts = ["console=ttyS0", "quiet", "loglevel=1", "panic=-1"]
    if ip:
        parts.append(f"vs.ip={ip}")
    parts += [f"vs.{k}={v}" for k, v in ifaces.items()]
    if extra:
        parts.append(extra)
    return " ".join(parts)


class Console:
    """The guest's command runner on a connected serial stream socket."""

    def __init__(self, path: str | Path, connect_timeout_s: float = 30.0,
                 gone: Callable[[], str | None] = lambda: None) -> None:
        """`gone()` says why the guest will never answer (its QEMU exited), or None."""
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.monotonic() + connect_timeout_s
        while True:
            try:
                self.sock.connect(self.path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                why = gone()
                if why is not None:
                    self.sock.close()
                    raise RuntimeError(why) from None
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)
        self.buf = b""
        self.transcript = b""       # everything the guest printed, for failure messages
        self._next_id = 1

    def close(self) -> None:
        self.sock.close()

    def _read(self, until: float) -> bool:
        self.sock.settimeout(max(0.01, until - time.monotonic()))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        if not data:
            raise ConnectionError(f"guest console {self.path} closed:\n{self.tail()}")
        self.buf += data
        self.transcript += data
        return True

    def tail(self, n: int = 3000) -> str:
        return self.transcript[-n:].decode(errors="replace")

    def wait_ready(self, timeout_s: float = BOOT_TIMEOUT_S) -> None:
        """Wait until the runner answers: probe with `true` until one comes back.

        Probes sent before the runner started sit in the tty and are answered
        later; each has its own id, so any answer proves the runner is up.
        """
        deadline = time.monotonic() + timeout_s
        ids: list[int] = []
        while time.monotonic() < deadline:
            ids.append(self._send("true"))
            probe_until = min(deadline, time.monotonic() + 2.0)
            while time.monotonic() < probe_until:
                self._read(probe_until)
                if any(re.search(rb"VSEND %d \d+" % i, self.buf) for i in ids):
                    self.buf = b""
                    return
        raise TimeoutError(f"guest not ready in {timeout_s} s:\n{self.tail()}")

    def _send(self, cmd: str) -> int:
        if "\n" in cmd:
            raise ValueError("one line per command")
        cid = self._next_id
        self._next_id += 1
        self.sock.sendall(f"{cid} {cmd}\n".encode())
        return cid

    def run(self, cmd: str, timeout_s: float = 30.0) -> Result:
        """Run `cmd` with the guest's sh; its exit code and output (stderr included)."""
        cid = self._send(cmd)
        end = re.compile(rb"VSBEGIN %d\n(.*?)VSEND %d (\d+)\n" % (cid, cid), re.DOTALL)
        deadline = time.monotonic() + timeout_s
        while True:
            m = end.search(self.buf)
            if m:
                self.buf = self.buf[m.end():]
                return Result(int(m.group(2)), m.group(1).decode(errors="replace"))
            if time.monotonic() >= deadline:
                raise TimeoutError(f"guest command {cmd!r} still running after "
                                   f"{timeout_s} s:\n{self.tail()}")
            self._read(deadline)

    def check(self, cmd: str, timeout_s: float = 30.0) -> str:
        r = self.run(cmd, timeout_s)
        if r.rc != 0:
            raise AssertionError(f"guest: {cmd!r} exited {r.rc}:\n{r.output}")
        return r.output


class Guest:
    """One QEMU process; a context manager that always stops it."""

    def __init__(self, image: GuestImage, workdir: Path, nics: list[str],
                 ip: str | None = None, name: str = "guest", memory_mb: int = 256,
                 shared_memory: bool = False, cmdline_extra: str = "",
                 extra_args: list[str] | None = None, env: dict[str, str] | None = None,
                 **ifaces: str) -> None:
        self.name = name
        self.workdir = Path(workdir)
        self.serial_path = self.workdir / f"{name}.serial"
        self.log_path = self.workdir / f"{name}.qemu.log"
        args = [QEMU, "-machine", "q35", "-accel", "tcg", "-m", str(memory_mb),
                "-nographic", "-nodefaults", "-no-user-config", "-no-reboot",
                "-kernel", str(image.kernel), "-initrd", str(image.initrd),
                "-append", kernel_cmdline(ip, cmdline_extra, **ifaces),
                "-chardev", f"socket,id=ser0,path={self.serial_path},server=on,wait=off",
                "-serial", "chardev:ser0", "-monitor", "none"]
        if shared_memory:      # vhost-user maps guest memory: it must be a shared memfd
            args += ["-object", f"memory-backend-memfd,id=mem,size={memory_mb}M,share=on",
                     "-numa", "node,memdev=mem"]
        self.args = args + nics + (extra_args or [])
        self.env = env              # QEMU's environment (its tap scripts see it); None: ours
        self.proc: subprocess.Popen[bytes] | None = None
        self.console: Console | None = None

    def start(self, wait: bool = True) -> Guest:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.serial_path.exists():
            self.serial_path.unlink()
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=self.env)
        try:
            deadline = time.monotonic() + 20
            while not self.serial_path.exists():
                if self.proc.poll() is not None:
                    raise RuntimeError(f"QEMU exited {self.proc.returncode}: {self.log()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"QEMU made no serial socket: {self.log()}")
                time.sleep(0.05)
            self.console = Console(self.serial_path, gone=self._exited)
            if wait:
                self.console.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _exited(self) -> str | None:
        if self.proc is not None and self.proc.poll() is not None:
            return f"QEMU exited {self.proc.returncode}: {self.log()}"
        return None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def run(self, cmd: str, timeout_s: float = 30.0) -> Result:
        assert self.console is not None, "guest not started"
        return self.console.run(cmd, timeout_s)

    def check(self, cmd: str, timeout_s: float = 30.0) -> str:
        assert self.console is not None, "guest not started"
        return self.console.check(cmd, timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.console is not None:
            self.console.close()
            self.console = None
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    os.kill(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()
            self.proc = None
            self._log.close()

    def __enter__(self) -> Guest:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
