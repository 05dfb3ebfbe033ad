"""The kernel floor rows: `wire.c`, a bare forwarding loop between two ports.

It forwards every frame from one port to the other with the I/O vswitchd's
worker uses by default (TAPs: epoll, bursts of reads, one write per frame;
veths: AF_PACKET with recvmmsg/sendmmsg; virtio-net headers and the same
offloads) and nothing else, so its CPU per forwarded frame is what the
kernel charges any userspace switch on those fds.  Built with the system's
C compiler into the row's private directory.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from proc import BenchError, Managed, run, wait_until

SOURCE = Path(__file__).resolve().parent / "wire.c"
START_TIMEOUT_S = 10.0


def build(dest_dir: Path) -> Path:
    """Compile wire.c into `dest_dir` (once per directory)."""
    binary = dest_dir / "wire"
    if not binary.exists():
        cc = shutil.which("cc") or shutil.which("gcc")
        if not cc:
            raise BenchError("no C compiler (cc/gcc) to build bench/wire.c")
        dest_dir.mkdir(parents=True, exist_ok=True)
        run([cc, "-O2", "-Wall", "-o", str(binary), str(SOURCE)], 60)
    return binary


class WireInstance:
    """wire between `if_a` and `if_b`; start()/stop() are symmetric.

    mode "tap": it creates the two TAPs; mode "packet": they are existing
    interfaces (the host ends of veths) it binds packet sockets to."""

    def __init__(self, workdir: Path, mode: str, if_a: str, if_b: str,
                 offload: bool = True) -> None:
        self.dir = workdir
        self.mode = mode
        self.ifs = (if_a, if_b)
        self.offload = offload
        self.proc: Managed | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def log_path(self) -> Path:
        return self.dir / "wire.log"

    def start(self) -> None:
        binary = build(self.dir)
        cmd = [str(binary), self.mode, *([] if self.offload else ["--no-offload"]), *self.ifs]
        proc = self.proc = Managed("wire", cmd, log_path=self.log_path)

        def ready() -> bool:
            if not proc.alive():
                raise BenchError(f"wire exited with {proc.popen.returncode}:\n"
                                 f"{proc.log_tail()}")
            return "ready" in self.log_path.read_text(errors="replace")

        wait_until(ready, START_TIMEOUT_S, interval_s=0.05, what="wire to be ready")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(grace_s=5)
            self.proc = None
