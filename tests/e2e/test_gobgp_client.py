"""vswitchd.gobgp against two real gobgpd, each in its own namespace (host).

The client talks to the gobgpd of its host over that namespace's loopback,
so every client call runs in a small Python process started inside the
namespace (`ip netns exec`).  EVPN type-2 and type-3 routes added on host A
arrive on host B over the iBGP session with their VNI, next hop, route
target and MAC mobility sequence, and disappear when withdrawn.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import sh
from tests.e2e.daemon_fixture import ROOT
from tests.e2e.nsnet import addr

A_IP, B_IP = "198.18.1.1", "198.18.1.2"
API = "127.0.0.1:50051"

GOBGPD_CONF = """\
[global.config]
  as = 65000
  router-id = "{me}"
  local-address-list = ["{me}"]

[[neighbors]]
  [neighbors.config]
    neighbor-address = "{peer}"
    peer-as = 65000
  [neighbors.transport.config]
    local-address = "{me}"
  [neighbors.timers.config]
    connect-retry = 1
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "l2vpn-evpn"
"""

# Runs inside a namespace: argv[1] is a JSON list of calls, prints JSON results.
PROBE = """
import dataclasses, json, sys
from vswitchd.gobgp import GobgpClient, ImetRoute, MacRoute
c = GobgpClient(sys.argv[2])
out = []
for op, arg in json.loads(sys.argv[1]):
    if op == "sessions":
        out.append([dataclasses.asdict(s) for s in c.sessions()])
    elif op == "router_id":
        out.append(c.router_id())
    elif op == "add_mac":
        out.append(c.add(MacRoute(**arg)).hex())
    elif op == "add_imet":
        out.append(c.add(ImetRoute(**arg)).hex())
    elif op == "delete":
        c.delete(bytes.fromhex(arg))
        out.append(None)
    elif op == "list":
        rows = []
        for r in c.list_evpn():
            d = dataclasses.asdict(r)
            d["type"] = type(r).__name__
            d["uuid"] = d["uuid"].hex()
            rows.append(d)
        out.append(rows)
print(json.dumps(out))
"""


def probe(ns: str, *calls: tuple[str, object]) -> list:
    r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", PROBE,
                        json.dumps(list(calls)), API], cwd=ROOT, capture_output=True,
                       text=True, timeout=30, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout_s} s")


@pytest.fixture
def gobgp_hosts(netns, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if not shutil.which("gobgpd"):
        if os.environ.get("CI") == "true":
            pytest.fail("gobgpd not installed (make deps)")
        pytest.skip("gobgpd not installed (make deps)")
    a, b = netns(), netns()
    ua, ub = f"vg{a[-8:]}", f"vg{b[-8:]}"
    sh("ip", "link", "add", ua, "netns", a, "type", "veth", "peer", "name", ub, "netns", b)
    addr(a, ua, f"{A_IP}/24")
    addr(b, ub, f"{B_IP}/24")
    procs = []
    try:
        for ns, me, peer in ((a, A_IP, B_IP), (b, B_IP, A_IP)):
            conf = tmp_path / f"gobgpd-{me}.toml"
            conf.write_text(GOBGPD_CONF.format(me=me, peer=peer))
            log = open(tmp_path / f"gobgpd-{me}.log", "wb")
            procs.append((subprocess.Popen(
                ["ip", "netns", "exec", ns, "gobgpd", "-f", str(conf), "--api-hosts", API,
                 "--pprof-disable"], stdout=log, stderr=subprocess.STDOUT), log))
        yield a, b
    finally:
        for proc, log in procs:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def test_evpn_routes_cross_an_ibgp_session_and_are_withdrawn(gobgp_hosts) -> None:
    a, b = gobgp_hosts
    wait_for("the iBGP session up", lambda: [s["state"] for s in probe(a, ("sessions", None))[0]]
             == ["established"])
    assert probe(a, ("router_id", None)) == [A_IP]
    mac = {"vni": 5010, "mac": "02:00:00:00:aa:01", "nexthop": A_IP, "rd": f"{A_IP}:2",
           "route_targets": ["65000:5010"], "seq": 3}
    imet = {"vni": 5010, "originator": A_IP, "nexthop": A_IP, "rd": f"{A_IP}:2",
            "route_targets": ["65000:5010"]}
    mac_uuid, imet_uuid = probe(a, ("add_mac", mac), ("add_imet", imet))

    def received() -> dict[str, dict]:
        return {r["type"]: r for r in probe(b, ("list", None))[0] if r["neighbor"] == A_IP}

    wait_for("both routes on B", lambda: len(received()) == 2)
    got = received()
    want_mac = {**mac, "route_targets": ["65000:5010"], "ip": None, "neighbor": A_IP}
    assert {k: got["MacRoute"][k] for k in want_mac} == want_mac
    want_imet = {**imet, "neighbor": A_IP}
    assert {k: got["ImetRoute"][k] for k in want_imet} == want_imet
    # A's own view: its two paths (ListPath does not return the uuids
    # AddPath gave: the caller keeps them).
    own = {r["type"] for r in probe(a, ("list", None))[0] if r["neighbor"] is None}
    assert own == {"MacRoute", "ImetRoute"}
    assert len(mac_uuid) == len(imet_uuid) == 32

    probe(a, ("delete", mac_uuid))
    wait_for("the type-2 route withdrawn on B", lambda: set(received()) == {"ImetRoute"})
    probe(a, ("delete", imet_uuid))
    wait_for("the type-3 route withdrawn on B", lambda: not received())
