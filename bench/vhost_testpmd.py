"""dpdk-testpmd for the vhost-user rows: the load generator and the ceiling switch.

Both run without hugepages (FACTS.md: `--no-huge -m 512 --no-pci`, a
32768-mbuf pool) under a file prefix of their own, so they share nothing
with any other DPDK process on the machine.  `--lcores 0@C,1@C` puts the
main lcore and the one forwarding lcore on CPU C: the main lcore only sleeps
(on the prompt or the stats timer), the forwarding one busy-polls.

The generator runs interactively so the benchmark reads exact counters at
the edges of its window (`show port stats all`); the ceiling switch runs
non-interactively and is stopped by PID.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from proc import BenchError, Managed

BINARY = "dpdk-testpmd"
BURST = 64
RING = 1024


def available() -> bool:
    return shutil.which(BINARY) is not None


def eal_args(prefix: str, cpu: int, vdevs: list[str]) -> list[str]:
    args = ["--no-huge", "-m", "512", "--no-pci", "--file-prefix", prefix,
            "--lcores", f"0@{cpu},1@{cpu}"]
    for v in vdevs:
        args += ["--vdev", v]
    return args


def app_args(fwd: str = "io") -> list[str]:
    return ["--total-num-mbufs", "32768", f"--forward-mode={fwd}", f"--burst={BURST}",
            f"--txd={RING}", f"--rxd={RING}"]


def vhost_switch(prefix: str, cpu: int, sockets: list[Path], log: Path) -> Managed:
    """The ceiling: testpmd with one net_vhost port (server) per socket, io forwarding
    between port pairs (0<->1), no switching logic at all."""
    vdevs = [f"net_vhost{i},iface={s}" for i, s in enumerate(sockets)]
    # --stats-period keeps it running without a prompt until we signal it.
    return Managed("testpmd-switch", [BINARY, *eal_args(prefix, cpu, vdevs), "--",
                                      *app_args("io"), "--stats-period", "3600"],
                   log_path=log)


class Generator:
    """testpmd with two virtio_user ports circulating frames through a switch.

    Port 0 sends to port 1's MAC and port 1 to port 0's (`--eth-peer`), so a
    learning switch forwards them as known unicast once each MAC was seen."""

    MACS = ("02:00:00:00:0a:01", "02:00:00:00:0a:02")

    def __init__(self, prefix: str, cpu: int, sockets: list[Path], log: Path,
                 server: bool = False) -> None:
        vdevs = [f"net_virtio_user{i},path={s},queue_size={RING},mac={self.MACS[i]}"
                 + (",server=1" if server else "") for i, s in enumerate(sockets)]
        peers = [f"--eth-peer={i},{self.MACS[1 - i]}" for i in range(2)]
        self.argv = ["stdbuf", "-o0", BINARY, *eal_args(prefix, cpu, vdevs), "--", "-i",
                     *app_args("io"), *peers]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: list[str] = []
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout_s: float = 30.0, wait: bool = True) -> None:
        """Launch; with `wait`, return at the prompt.  In server mode testpmd
        blocks while probing until a back end connects to each socket, so the
        caller starts the switch first and then calls `wait_prompt`."""
        # stdbuf: testpmd printf()s into a pipe, which would be block-buffered.
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read, name="testpmd-gen", daemon=True)
        self._reader.start()
        if wait:
            self.wait_prompt(timeout_s)

    def wait_prompt(self, timeout_s: float = 30.0) -> None:
        self._wait_for("testpmd> ", timeout_s, 0)

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while chunk := os.read(fd, 65536):     # raw reads: the prompt ends without newline
            with self._lock:
                self._out.append(chunk.decode(errors="replace"))

    def output(self) -> str:
        with self._lock:
            return "".join(self._out)

    def _wait_for(self, text: str, timeout_s: float, since: int) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            out = self.output()[since:]
            if text in out:
                return out
            if self.proc is not None and self.proc.poll() is not None:
                raise BenchError(f"testpmd generator exited {self.proc.returncode}: "
                                 f"{self.output()[-600:]}")
            time.sleep(0.05)
        raise BenchError(f"testpmd generator: no {text!r} after {timeout_s:g} s: "
                         f"{self.output()[-600:]}")

    def command(self, line: str, expect: str = "testpmd> ", timeout_s: float = 10.0) -> str:
        assert self.proc is not None and self.proc.stdin is not None
        mark = len(self.output())
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        return self._wait_for(expect, timeout_s, mark + len(line))

    def wait_links_up(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            out = "".join(self.command(f"show port info {i}") for i in range(2))
            if len(re.findall(r"Link status:\s+up", out)) == 2:
                return
            time.sleep(0.5)
        raise BenchError(f"generator links not up after {timeout_s:g} s")

    def start_circulating(self, bursts: int) -> None:
        """Each port first sends `bursts` bursts, then forwards what it receives."""
        self.command(f"start tx_first {bursts}", "packet forwarding")

    def rx_packets(self) -> int:
        """Frames received on both ports so far (each went through the switch once)."""
        out = self.command("show port stats all")
        return sum(int(n) for n in re.findall(r"RX-packets:\s+(\d+)", out))

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(b"stop\nquit\n")
                self.proc.stdin.flush()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(5)
        self.log.write_text(self.output())
        self.proc = None
