"""Two real QEMU guests over vhost-user: TCP through the switch (issue 12's last target).

Each guest (TCG, the project's kernel + busybox image from tests/vm/image.py)
has one virtio-net NIC on one of the switch's two vhost-user sockets; QEMU
is the vhost-user client.  iperf3 runs from guest 1 to guest 2 for a few
seconds with the guests' offloads on.  Both guests run on the generator's
CPU, the switch on its own: TCG guests are the bottleneck here, so this row
says whether the switch gets in their way (the issue's target: TCP >= the
same guests through testpmd's net_vhost io forwarding).

The guest tooling lives in tests/vm (guest.py, image.py); it is imported from
the checkout when this row runs, so the rest of the benchmark does not need it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from types import ModuleType

from proc import BenchError

REPO = Path(__file__).resolve().parent.parent
GUEST_CPU = 0
IPS = ("10.77.0.1", "10.77.0.2")
MACS = ("52:54:00:77:00:01", "52:54:00:77:00:02")
RATE = re.compile(r"([\d.]+)\s+([KMG]?)bits/sec.*receiver")


def _vm_modules() -> tuple[ModuleType, ModuleType]:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    try:
        from tests.vm import guest, image
    except ImportError as e:
        raise BenchError(f"the guest rows need tests/vm (guest.py, image.py): {e}") from None
    return guest, image


def parse_receiver_gbps(output: str) -> float:
    """iperf3's text summary -> the receiver's rate in Gbit/s."""
    m = RATE.search(output)
    if not m:
        raise BenchError(f"no receiver rate in iperf3 output: {output[-300:]}")
    scale = {"": 1e-9, "K": 1e-6, "M": 1e-3, "G": 1.0}[m.group(2)]
    return float(m.group(1)) * scale


def tcp_between_guests(socks: list[Path], workdir: Path, seconds: int = 5) -> float:
    """Boot two guests on `socks`, iperf3 guest 1 -> guest 2; returns Gbit/s."""
    guest, image = _vm_modules()
    img = image.build_image()
    guests = []
    try:
        for i, sock in enumerate(socks):
            g = guest.Guest(img, workdir, guest.vhost_user_nic(str(sock), MACS[i]),
                            ip=f"{IPS[i]}/24", name=f"vsbg{i}", shared_memory=True)
            # Both guests on one CPU, away from the switch's.
            g.args = ["taskset", "-c", str(GUEST_CPU), *g.args]
            guests.append(g)
            g.start()
        a, b = guests
        ping = a.run(f"ping -c 3 -W 2 {IPS[1]}", timeout_s=60)
        if ping.rc != 0:
            raise BenchError(f"guest 1 cannot ping guest 2 through the switch: "
                             f"{ping.output[-300:]}")
        b.check("iperf3 -s -D -1")
        out = a.run(f"iperf3 -c {IPS[1]} -t {seconds}", timeout_s=seconds + 60)
        if out.rc != 0:
            raise BenchError(f"iperf3 between the guests failed: {out.output[-300:]}")
        return parse_receiver_gbps(out.output)
    finally:
        for g in guests:
            g.stop()
