"""BGP EVPN between two vswitchd hosts, each running its own gobgpd (issue 9).

Data-plane learning is off on both vxlan ports (the default with [evpn])
and neither has static peers: the flood lists come from type-3 routes and
the remote MACs from type-2 routes only.  Then host A's gobgpd is killed:
forwarding on the installed entries goes on, vswitchd restarts it and the
session and routes come back.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import sh
from tests.e2e.daemon_fixture import RunningDaemon
from tests.e2e.nsnet import addr, mac_of, ping, ping_loss, run
from tests.e2e.test_vxlan import wait_ping

A_IP, B_IP = "198.18.2.1", "198.18.2.2"
VM_A, VM_B = "10.60.0.1", "10.60.0.2"


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout_s} s")


def session_up(d: RunningDaemon) -> bool:
    return [s["state"] for s in d.ctl("evpn", "show")["sessions"]] == ["established"]


def test_two_vswitchd_hosts_reach_each_other_through_evpn_routes_only(
        netns, tmp_path: Path) -> None:
    if not shutil.which("gobgpd"):
        if os.environ.get("CI") == "true":
            pytest.fail("gobgpd not installed (make deps)")
        pytest.skip("gobgpd not installed (make deps)")
    ha, hb, vma, vmb = netns(), netns(), netns(), netns()
    ua, ub = f"ve{ha[-8:]}", f"ve{hb[-8:]}"
    sh("ip", "link", "add", ua, "netns", ha, "type", "veth", "peer", "name", ub, "netns", hb)
    addr(ha, ua, f"{A_IP}/24")
    addr(hb, ub, f"{B_IP}/24")
    daemons: dict[str, RunningDaemon] = {}
    try:
        for name, host, vm, me, peer in (("a", ha, vma, A_IP, B_IP), ("b", hb, vmb, B_IP, A_IP)):
            (tmp_path / name).mkdir()
            vif = f"vt{vm[-8:]}"
            d = RunningDaemon(tmp_path / name, {
                "vm0": {"type": "tap", "ifname": vif, "netns": vm, "vlan": 10},
                "vx0": {"type": "vxlan", "local_ip": me, "vni_map": {"10": 5010}},
            }, netns=host, evpn={"asn": 65000, "router_id": me, "neighbors": [peer]},
                metrics="127.0.0.1:9477")     # the host's own loopback
            d.start()
            daemons[name] = d
            d.wait_ports_up("vm0", "vx0")
            run(vm, "ip", "link", "set", vif, "mtu", "1450")
            addr(vm, vif, f"{VM_A if name == 'a' else VM_B}/24")
        a, b = daemons["a"], daemons["b"]
        assert a.ctl("vxlan", "show")[0]["learning"] is False
        wait_for("the iBGP session up", lambda: session_up(a) and session_up(b))
        wait_for("B in A's flood list", lambda: a.ctl("evpn", "show")["flood_list"] == [B_IP])
        wait_ping(vma, VM_B, timeout_s=20)
        b_mac = mac_of(vmb, f"vt{vmb[-8:]}")

        def fdb_a() -> list[dict]:
            return [e for e in a.ctl("fdb", "show") if e["mac"] == b_mac]
        wait_for("B's VM at B's VTEP on A", lambda: [e.get("vtep") for e in fdb_a()] == [B_IP])
        # Installed from B's type-2 route: static, so it shows no age.
        assert [(e["static"], e["age_s"]) for e in fdb_a()] == [(True, None)]
        show = a.ctl("evpn", "show")
        assert show["routes"]["received"]["type3"] == 1
        assert show["routes"]["received"]["type2"] >= 1
        assert show["routes"]["sent"]["type3"] == 1 and show["routes"]["sent"]["type2"] >= 1
        r = ping(vma, VM_B, count=10, interval=0.05)
        assert ping_loss(r.stdout) == 0, r.stdout
        text = run(ha, "python3", "-c", "import urllib.request; print(urllib.request.urlopen("
                   "'http://127.0.0.1:9477/metrics', timeout=5).read().decode())").stdout
        assert f'vswitchd_evpn_session_up{{neighbor="{B_IP}"}} 1.0' in text
        assert 'vswitchd_evpn_routes{direction="received",type="type3"} 1.0' in text
        assert re.search(rf'vswitchd_vxlan_transmit_packets_total{{port="vx0",vtep="{B_IP}"}} '
                         r'[1-9]', text), text

        # Fault: host A's gobgpd dies.  Installed entries keep forwarding.
        os.kill(show["gobgpd_pid"], signal.SIGKILL)
        r = ping(vma, VM_B, count=10, interval=0.05)
        assert ping_loss(r.stdout) == 0, r.stdout
        a.wait_log("gobgpd exited", timeout_s=10)
        wait_for("gobgpd restarted", lambda: a.ctl("evpn", "show")["restarts"] == 1)
        wait_for("the session back", lambda: session_up(a), timeout_s=40)
        wait_for("A's routes re-advertised to B",
                 lambda: b.ctl("evpn", "show")["routes"]["received"]["type3"] == 1, 40)
        wait_ping(vma, VM_B)                # traffic resumes
        r = ping(vma, VM_B, count=5, interval=0.05)
        assert ping_loss(r.stdout) == 0, r.stdout

        # vswitchd restarts: its routes leave with it and come back with it.
        assert a.stop() == 0
        wait_for("A's routes gone from B", lambda: b.ctl("evpn", "show")["routes"]["received"]
                 == {"type2": 0, "type3": 0})
        (a.tmp / "notify.sock").unlink()    # the fixture's listener of the first start
        a.start()
        a.wait_ports_up("vm0", "vx0")
        run(vma, "ip", "link", "set", f"vt{vma[-8:]}", "mtu", "1450")
        addr(vma, f"vt{vma[-8:]}", f"{VM_A}/24")
        wait_for("A's routes back on B",
                 lambda: b.ctl("evpn", "show")["routes"]["received"]["type3"] == 1, 40)
        wait_ping(vma, VM_B)
    finally:
        for d in daemons.values():
            rc = d.stop()
            assert rc == 0, f"vswitchd exited {rc}:\n{d.log()}"
