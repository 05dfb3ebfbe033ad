"""Traffic inside test namespaces: addresses, ping, raw frames.

Raw frames are sent and captured with AF_PACKET sockets created inside the
namespace (the calling thread enters it only while creating the socket; a
socket stays in the namespace it was made in).  The kernel moves an 802.1Q
tag out of received frames into metadata before packet sockets see them,
so the capture asks for PACKET_AUXDATA and puts the tag back: tests see
frames as they were on the wire.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import time

from vswitchd.ports.netns import in_netns

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
PACKET_OUTGOING = 4


def run(ns: str, *cmd: str, check: bool = True,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                          check=check, timeout=timeout)


def addr(ns: str, ifname: str, cidr: str) -> None:
    run(ns, "ip", "addr", "add", cidr, "dev", ifname)
    run(ns, "ip", "link", "set", ifname, "up")
    run(ns, "ip", "link", "set", "lo", "up")


def mac_of(ns: str, ifname: str) -> str:
    return run(ns, "cat", f"/sys/class/net/{ifname}/address").stdout.strip()


def ping(ns: str, dst: str, count: int = 3, interval: float = 0.2,
         deadline: int = 10) -> subprocess.CompletedProcess[str]:
    return run(ns, "ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", "1",
               "-w", str(deadline), dst, check=False, timeout=deadline + 10)


def ping_loss(output: str) -> float:
    for part in output.split(","):
        if "packet loss" in part:
            return float(part.strip().split("%")[0])
    raise ValueError(output)


class Capture:
    """An AF_PACKET socket on ``ifname`` inside ``ns``, frames as on the wire."""

    def __init__(self, ns: str, ifname: str) -> None:
        with in_netns(ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            self.sock.bind((ifname, ETH_P_ALL))
        self.sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        self.sock.setblocking(False)

    def frames(self, wait_s: float = 0.5, incoming_only: bool = True) -> list[bytes]:
        out: list[bytes] = []
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                data, anc, _flags, addr = self.sock.recvmsg(65536, socket.CMSG_SPACE(32))
            except BlockingIOError:
                time.sleep(0.01)
                continue
            if incoming_only and addr[2] == PACKET_OUTGOING:
                continue
            out.append(self._with_tag(data, anc))
        return out

    @staticmethod
    def _with_tag(data: bytes, anc: list[tuple[int, int, bytes]]) -> bytes:
        for level, kind, raw in anc:
            if level == SOL_PACKET and kind == PACKET_AUXDATA and len(raw) >= 20:
                status, _len, _snap, _mac, _net, tci, tpid = struct.unpack("IIIHHHH", raw[:20])
                if status & TP_STATUS_VLAN_VALID:
                    if not status & TP_STATUS_VLAN_TPID_VALID:
                        tpid = 0x8100
                    return data[:12] + struct.pack("!HH", tpid, tci) + data[12:]
        return data

    def drain(self) -> None:
        self.frames(0.05, incoming_only=False)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def send_frames(ns: str, ifname: str, frames: list[bytes]) -> None:
    with in_netns(ns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        s.bind((ifname, 0))
        for f in frames:
            s.send(f)
    finally:
        s.close()

