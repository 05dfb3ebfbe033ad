"""dpdk-testpmd as a real vhost-user back end (net_vhost) for the front end's tests.

testpmd runs interactively (`-i`) with its prompt on a pipe, so a test can
`start`, read exact port counters with `show port stats`, and `quit`.  It
runs without hugepages (FACTS.md) on two lcores: the main one sleeps on
the prompt, the forwarding one busy-polls -- so runs stay short, and the
process is always ended by its own PID.
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

BINARY = "dpdk-testpmd"
PROMPT = "testpmd> "


def available() -> bool:
    return shutil.which(BINARY) is not None


class Testpmd:
    """One testpmd process with one net_vhost port on `socket_path`."""

    def __init__(self, socket_path: str, prefix: str, fwd: str = "rxonly",
                 client: bool = False, lcores: str = "0,1", extra: tuple[str, ...] = (),
                 log: Path | None = None) -> None:
        vdev = f"net_vhost0,iface={socket_path}" + (",client=1" if client else "")
        # stdbuf: testpmd printf()s into a pipe, which the C library would block-buffer.
        self.argv = ["stdbuf", "-o0", BINARY, "--no-huge", "-m", "512", "--no-pci",
                     "--file-prefix", prefix, "-l", lcores, "--vdev", vdev,
                     "--log-level", "lib.vhost.config:info",
                     "--", "-i", "--total-num-mbufs", "32768", f"--forward-mode={fwd}",
                     *extra]
        self.socket_path = socket_path
        self.log = log
        self.proc: subprocess.Popen[str] | None = None
        self._out: list[str] = []
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None

    def start(self, timeout_s: float = 20.0) -> None:
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._read, name="testpmd-stdout", daemon=True)
        self._reader.start()
        self._wait_for(PROMPT, timeout_s)

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        # Raw reads, not readline(): the prompt has no newline after it.
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

    def _wait_for(self, text: str, timeout_s: float, since: int = 0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            out = self.output()
            if text in out[since:]:
                return out[since:]
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"testpmd exited {self.proc.returncode}:\n{out[-3000:]}")
            time.sleep(0.05)
        raise TimeoutError(f"testpmd: no {text!r} within {timeout_s} s:\n{self.output()[-3000:]}")

    def command(self, line: str, expect: str, timeout_s: float = 5.0) -> str:
        """Send one prompt command; return the output from it up to `expect`."""
        assert self.proc is not None and self.proc.stdin is not None
        mark = len(self.output())
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self._wait_for(expect, timeout_s, mark)

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Until the vhost library says the device is ready (the front end finished setup)."""
        self._wait_for("virtio is now ready for processing", timeout_s)

    def start_forwarding(self) -> None:
        self.command("start", "packet forwarding", 10.0)

    def stats(self, port: int = 0) -> dict[str, int]:
        """Exact counters of one port: rx_packets, rx_bytes, tx_packets, ..."""
        out = self.command(f"show port stats {port}", "Tx-bps", 5.0)
        found = {}
        for key in ("RX-packets", "RX-missed", "RX-bytes", "RX-errors", "TX-packets",
                    "TX-errors", "TX-bytes"):
            m = re.search(rf"{key}:\s+(\d+)", out)
            if m:
                found[key.lower().replace("-", "_")] = int(m.group(1))
        return found

    def wait_rx(self, count: int, timeout_s: float = 10.0, port: int = 0) -> int:
        """Poll the rx counter until it reaches `count`; returns the last value."""
        deadline = time.monotonic() + timeout_s
        rx = 0
        while time.monotonic() < deadline:
            rx = self.stats(port).get("rx_packets", 0)
            if rx >= count:
                break
            time.sleep(0.2)
        return rx

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("stop\nquit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout_s)
            except (OSError, subprocess.TimeoutExpired):
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout_s)
        if self._reader is not None:
            self._reader.join(timeout_s)
        if self.log is not None:
            self.log.write_text(self.output())
        self.proc = None

    def __enter__(self) -> Testpmd:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
