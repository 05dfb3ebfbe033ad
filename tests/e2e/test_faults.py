"""Interfaces that vanish under the daemon: the port goes absent cleanly,
the daemon keeps running without spinning, and the port comes back when the
interface does."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tests.e2e.conftest import sh
from tests.e2e.daemon_fixture import RunningDaemon
from tests.e2e.nsnet import addr, ping, ping_loss


def cpu_seconds(pid: int) -> float:
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def wait_link(d: RunningDaemon, name: str, state: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if d.port(name)["link"] == state:
            return
        time.sleep(0.1)
    raise AssertionError(f"port {name} not {state}: {d.port(name)}")


def test_tap_whose_namespace_is_deleted_goes_absent_then_comes_back(
        tmp_path: Path, netns, require_root: None) -> None:
    a, b = netns(), netns()
    ia, ib = f"vt{a[-8:]}", f"vt{b[-8:]}"
    d = RunningDaemon(tmp_path, {"a": {"type": "tap", "ifname": ia, "netns": a},
                                 "b": {"type": "tap", "ifname": ib, "netns": b}},
                      switch={"workers": 2})
    d.start()
    try:
        d.wait_ports_up("a", "b")
        sh("ip", "netns", "del", b)
        wait_link(d, "b", "absent")
        assert d.proc is not None
        before = cpu_seconds(d.proc.pid)
        time.sleep(1.0)
        assert cpu_seconds(d.proc.pid) - before < 0.3, "the daemon spins on a dead queue"
        sh("ip", "netns", "add", b)
        wait_link(d, "b", "up")
        addr(a, ia, "10.82.0.1/24")
        addr(b, ib, "10.82.0.2/24")
        assert ping_loss(ping(a, "10.82.0.2", count=3, interval=0.1).stdout) == 0
    finally:
        assert d.stop() == 0


def test_netdev_port_whose_interface_is_deleted_comes_back_when_recreated(
        tmp_path: Path, netns, veth, require_root: None) -> None:
    a, b = netns(), netns()
    host, peer = veth(peer_netns=b)
    ia = f"vt{a[-8:]}"
    d = RunningDaemon(tmp_path, {"a": {"type": "tap", "ifname": ia, "netns": a},
                                 "v": {"type": "netdev", "ifname": host}})
    d.start()
    try:
        d.wait_ports_up("a", "v")
        sh("ip", "link", "del", host)
        wait_link(d, "v", "absent")
        sh("ip", "link", "add", host, "type", "veth", "peer", "name", peer, "netns", b)
        sh("ip", "link", "set", host, "up")
        sh("ip", "-n", b, "link", "set", peer, "up")
        wait_link(d, "v", "up")
        addr(a, ia, "10.82.1.1/24")
        subprocess.run(["ip", "-n", b, "addr", "add", "10.82.1.2/24", "dev", peer], check=True)
        assert ping_loss(ping(a, "10.82.1.2", count=3, interval=0.1).stdout) == 0
    finally:
        assert d.stop() == 0
