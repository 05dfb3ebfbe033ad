"""Two real QEMU guests on vhost-user ports and a namespace on a TAP port,
all in one VLAN (issue 12's real-VM acceptance).

The guests negotiate checksum and TSO offloads with the switch, so TCP
between them crosses the rings as partial-checksum super-frames, and TCP to
the namespace crosses from a vhost-user ring to a TAP: no side may see a bad
checksum (`nstat TcpInCsumErrors` stays 0 in both guests).  The switch runs
in interrupt mode, one worker: on two CPUs a busy-polling switch starves the
TCG guests.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import unique_name
from tests.e2e.nsnet import addr, run
from tests.vm.guest import Guest, vhost_user_nic

SWITCH = {"workers": 1, "busy_poll_us": 0}
GUEST_IPS = ("10.94.0.2", "10.94.0.3")
NS_IP = "10.94.0.1"
MACS = ("52:54:00:5e:20:02", "52:54:00:5e:20:03")
OFFLOADS = {"csum", "guest_csum", "guest_tso4", "host_tso4"}


@pytest.fixture
def sockdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="vmvh-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def wait_running(d, *names: str, timeout_s: float = 60.0) -> dict[str, dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ports = {p["name"]: p for p in d.ctl("show")["ports"]}
        if all(ports[n]["link"] == "up" for n in names):
            return ports
        time.sleep(0.2)
    raise AssertionError(f"vhost-user ports {names} not up: {d.ctl('show')}\n{d.log()}")


def start_iperf_server(g: Guest) -> None:
    # -D returns before the server listens: wait for the socket.
    g.check("iperf3 -s -D -1 && for i in $(seq 50); do netstat -ltn | grep -q :5201 "
            "&& break; sleep 0.1; done")


def iperf_between_guests(client: Guest, server: Guest, server_ip: str,
                         reverse: bool = False) -> None:
    start_iperf_server(server)
    r = client.run(f"iperf3 -c {server_ip} -t 2{' -R' if reverse else ''}", timeout_s=90)
    assert r.rc == 0, r.output
    assert re.search(r"\d+(\.\d+)? [KMG]?bits/sec.*receiver", r.output), r.output


def test_two_vhostuser_guests_and_a_tap_namespace_ping_and_run_tcp_both_ways(
        daemon, netns, guest, sockdir: Path) -> None:
    ns = netns()
    ns_tap = unique_name("vmvh")
    ports = {"ns": {"type": "tap", "ifname": ns_tap, "netns": ns, "vlan": 10}}
    for i in (1, 2):
        ports[f"vm{i}"] = {"type": "vhostuser", "socket": str(sockdir / f"vm{i}.sock"),
                           "socket_mode": "server", "vlan": 10}
    d = daemon(ports, switch=SWITCH)
    addr(ns, ns_tap, f"{NS_IP}/24")
    g1, g2 = (guest(vhost_user_nic(str(sockdir / f"vm{i + 1}.sock"), MACS[i]),
                    ip=f"{GUEST_IPS[i]}/24", shared_memory=True) for i in (0, 1))
    shown = wait_running(d, "vm1", "vm2")
    for name in ("vm1", "vm2"):
        assert OFFLOADS <= set(shown[name]["vhost"]["features"]), shown[name]

    for g, peer in ((g1, GUEST_IPS[1]), (g1, NS_IP), (g2, NS_IP)):
        r = g.run(f"ping -c 3 -W 2 {peer}", timeout_s=60)
        assert r.rc == 0, r.output

    # Guest 1 <-> guest 2, both directions, over the rings only.
    iperf_between_guests(g1, g2, GUEST_IPS[1])
    iperf_between_guests(g1, g2, GUEST_IPS[1], reverse=True)
    # Namespace <-> guest 1: vhost-user ring to TAP and back.
    for extra in ([], ["-R"]):
        start_iperf_server(g1)
        r = run(ns, "iperf3", "-c", GUEST_IPS[0], "-t", "2", "-J", *extra,
                check=False, timeout=90)
        assert r.returncode == 0, r.stdout + r.stderr
        assert json.loads(r.stdout)["end"]["sum_received"]["bytes"] > 0, r.stdout

    for g in (g1, g2):
        out = g.check("nstat -az TcpInCsumErrors")
        assert re.search(r"TcpInCsumErrors\s+0\s", out), out
    assert d.port("vm1")["rx_packets"] > 1000 and d.port("vm2")["rx_packets"] > 1000
