"""dpdk-testpmd as a virtio_user front end, driven through its interactive
stdin, for vhost-user tests.

testpmd busy-polls its forwarding core: keep each run a few seconds and
stop it with `close()` (quit, then SIGKILL by PID).  Every run gets its own
`--file-prefix` so concurrent runs on the machine do not share EAL state.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

TESTPMD = shutil.which("dpdk-testpmd") or "/usr/bin/dpdk-testpmd"
_STATS_RE = re.compile(
    r"NIC statistics for port (\d+).*?RX-packets:\s+(\d+).*?RX-bytes:\s+(\d+).*?"
    r"TX-packets:\s+(\d+).*?TX-bytes:\s+(\d+)", re.S)


@dataclass(frozen=True)
class PortStats:
    rx_packets: int
    rx_bytes: int
    tx_packets: int
    tx_bytes: int


def vdev(index: int, path: str, **args: object) -> str:
    """`--vdev` value of virtio_user port `index` on socket `path`."""
    extra = "".join(f",{k}={v}" for k, v in args.items())
    return f"net_virtio_user{index},path={path}{extra}"


class Testpmd:
    """One interactive testpmd process with the given virtio_user vdevs."""

    __test__ = False    # not a pytest test class

    def __init__(self, prefix: str, vdevs: list[str], cores: str = "0-1",
                 extra: tuple[str, ...] = (), log_path: str | None = None) -> None:
        # stdbuf: testpmd printf()s, and stdout is a pipe (block-buffered).
        cmd = ["stdbuf", "-o0", TESTPMD, "--no-huge", "-m", "512", "--no-pci",
               "--file-prefix", prefix, "-l", *cores.split(), "--log-level", "user1,7"]
        for v in vdevs:
            cmd += ["--vdev", v]
        cmd += ["--", "-i", "--total-num-mbufs", "32768", *extra]
        self._out: list[str] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.log_path = log_path

    def _read(self) -> None:
        # Chunks, not lines: the "testpmd> " prompt ends without a newline.
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return
            with self._lock:
                self._out.append(chunk.decode(errors="replace"))

    def output(self) -> str:
        with self._lock:
            return "".join(self._out)

    def wait_for(self, text: str, timeout_s: float = 20.0, after: int = 0) -> int:
        """Waits until `text` appears in the output past offset `after`;
        returns the offset just past it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            out = self.output()
            i = out.find(text, after)
            if i >= 0:
                return i + len(text)
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"testpmd: {text!r} not seen in {timeout_s} s:\n{self.output()}")

    def cmd(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def ready(self, timeout_s: float = 30.0) -> None:
        self.wait_for("testpmd> ", timeout_s)

    def stats(self, n_ports: int, timeout_s: float = 10.0) -> dict[int, PortStats]:
        """`show port stats all`, parsed."""
        mark = len(self.output())
        self.cmd("show port stats all")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = {int(m[0]): PortStats(int(m[1]), int(m[2]), int(m[3]), int(m[4]))
                     for m in _STATS_RE.findall(self.output()[mark:])}
            if len(found) >= n_ports:
                return found
            time.sleep(0.05)
        raise AssertionError(f"testpmd stats not printed:\n{self.output()[mark:]}")

    def close(self) -> None:
        if self.log_path:
            with open(self.log_path, "a") as f:
                f.write(self.output())
        if self.proc.poll() is None:
            try:
                self.cmd("quit")
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        shutil.rmtree(f"/var/run/dpdk/{self._prefix_of()}", ignore_errors=True)

    def kill(self) -> None:
        """Dies like a crashed VM: no goodbye on the socket."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def _prefix_of(self) -> str:
        args = self.proc.args
        assert isinstance(args, list)
        return str(args[args.index("--file-prefix") + 1])
