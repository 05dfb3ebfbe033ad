"""A switch over socketpairs: the real C fast path, driven without root.

Each port is one end of an AF_UNIX datagram socketpair; the test holds the
other end, as a VM holds its TAP.  Frames are forwarded by
``Switch.poll_once`` in the test's own thread, with a clock the test moves.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, replace

from vswitchd.fastpath import PortParams, Switch


@dataclass
class FakePort:
    id: int
    sock: socket.socket       # the switch's end
    peer: socket.socket       # the "VM"'s end
    params: PortParams

    def send(self, frame: bytes, vnet: bytes = b"") -> None:
        self.peer.send(vnet + frame)

    def received(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.peer.recv(70000))
            except BlockingIOError:
                return out


class Harness:
    def __init__(self, mac_capacity: int = 1024) -> None:
        self.switch = Switch(0, None, mac_capacity)
        self.ports: dict[int, FakePort] = {}
        self.now = 1000

    def add(self, port_id: int, **params: object) -> FakePort:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for s in (a, b):
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        pp = PortParams(id=port_id, fds=(a.fileno(),), **params)  # type: ignore[arg-type]
        self.ports[port_id] = FakePort(port_id, a, b, pp)
        self.publish()
        return self.ports[port_id]

    def set(self, port_id: int, **params: object) -> None:
        p = self.ports[port_id]
        p.params = replace(p.params, **params)  # type: ignore[arg-type]
        self.publish()

    def remove(self, port_id: int) -> None:
        p = self.ports.pop(port_id)
        self.publish()
        self.switch.macs.flush(port=port_id)
        p.sock.close()
        p.peer.close()

    def publish(self) -> None:
        self.switch.publish([p.params for p in self.ports.values()])

    def run(self) -> int:
        total = 0
        while True:
            n = self.switch.poll_once(self.now)
            total += n
            if not n:
                return total

    def inject(self, port_id: int, frame: bytes, vnet: bytes = b"") -> dict[int, list[bytes]]:
        """Sends ``frame`` from port ``port_id``, forwards, and returns what
        every port's peer received."""
        self.ports[port_id].send(frame, vnet)
        self.run()
        return {pid: p.received() for pid, p in self.ports.items()}

    def counters(self, port_id: int) -> dict[str, int]:
        return self.switch.port_counters(port_id)

    def close(self) -> None:
        self.switch.close()
        for p in self.ports.values():
            p.sock.close()
            p.peer.close()

    def __iter__(self) -> Iterator[FakePort]:
        return iter(self.ports.values())
