"""Offloads end to end: GSO super-frames and partial checksums pass through
when the egress port takes them, and are segmented and checksummed in C
when it does not.  TCP completes under every combination; frames that reach
a port without offloads carry correct checksums and fit its MTU."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.daemon_fixture import RunningDaemon
from tests.e2e.nsnet import addr, run


def tap(ns: str, csum: bool, tso: bool, **kw) -> dict:
    return {"type": "tap", "ifname": f"vt{ns[-8:]}", "netns": ns,
            "offload": {"csum": csum, "tso": tso}, **kw}


def iperf(client_ns: str, server_ns: str, server_ip: str, seconds: int = 2,
          port: int = 5310) -> dict:
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-p",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.4)
        r = run(client_ns, "iperf3", "-c", server_ip, "-p", str(port), "-t", str(seconds), "-J",
                check=False, timeout=seconds + 20)
        assert r.returncode == 0, r.stdout[-1500:] + r.stderr
        return json.loads(r.stdout)
    finally:
        server.kill()
        server.wait()


def tcpdump(ns: str, ifname: str, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(["ip", "netns", "exec", ns, "timeout", "20", "tcpdump", "-n", "-vv",
                             "-e", "-i", ifname, "-c", str(count), "tcp"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


@pytest.mark.parametrize("a_off,b_off", [
    ((True, True), (True, True)),      # pass-through both ways
    ((True, True), (False, False)),    # a's super-frames segmented for b, b's plain frames to a
    ((True, False), (True, True)),     # checksum offload only on a
    ((False, False), (False, False)),  # no offloads at all
], ids=["tso-tso", "tso-none", "csum-tso", "none-none"])
def test_tcp_completes_under_offload_combination(tmp_path: Path, netns, require_root: None,
                                                  a_off, b_off) -> None:
    a, b = netns(), netns()
    d = RunningDaemon(tmp_path, {"a": tap(a, *a_off), "b": tap(b, *b_off)})
    d.start()
    try:
        d.wait_ports_up("a", "b")
        addr(a, f"vt{a[-8:]}", "10.81.0.1/24")
        addr(b, f"vt{b[-8:]}", "10.81.0.2/24")
        sniff = tcpdump(b, f"vt{b[-8:]}", 400) if not any(b_off) else None
        res = iperf(a, b, "10.81.0.2")
        received = res["end"]["sum_received"]["bytes"]
        assert received > 10_000_000
        stats = d.ctl("stats", "--port", "b")["ports"][0]
        if a_off[1] and not b_off[1]:
            assert stats["counters"]["segmented"] > 0      # done in C, not by the kernel
        assert stats["drops"]["tx_error"] == 0 and stats["drops"]["oversize"] == 0
        if sniff is not None:
            out = sniff.communicate(timeout=30)[0]
            lines = [ln for ln in out.splitlines() if "cksum" in ln]
            assert lines, "captured no TCP"
            assert not [ln for ln in lines if "incorrect" in ln], lines[:3]
            lengths = [int(ln.split("length ")[1].split(":")[0].split(",")[0])
                       for ln in out.splitlines() if "ethertype IPv4" in ln and "length " in ln]
            assert max(lengths) <= 1500 + 14, max(lengths)
    finally:
        assert d.stop() == 0


def test_offload_setting_applies_live_and_ethtool_follows(tmp_path: Path, netns,
                                                          require_root: None) -> None:
    a, b = netns(), netns()
    d = RunningDaemon(tmp_path, {"a": tap(a, True, True), "b": tap(b, True, True)})
    d.start()
    try:
        ifname = f"vt{b[-8:]}"

        def features() -> str:
            return run(b, "ethtool", "-k", ifname).stdout

        assert "tcp-segmentation-offload: on" in features()
        d.ctl("port", "set", "b", "offload.tso=false")
        assert "tcp-segmentation-offload: off" in features()
        assert "tx-checksumming: on" in features()
        d.ctl("port", "set", "b", "offload.csum=false")
        assert "tx-checksumming: off" in features()
        assert d.port("b")["offload"] == {"csum": False, "tso": False}
        addr(a, f"vt{a[-8:]}", "10.81.1.1/24")
        addr(b, ifname, "10.81.1.2/24")
        iperf(a, b, "10.81.1.2", seconds=1, port=5311)
        assert d.ctl("stats", "--port", "b")["ports"][0]["counters"]["segmented"] > 0
    finally:
        assert d.stop() == 0


def test_small_egress_mtu_gets_segments_that_fit(tmp_path: Path, netns,
                                                 require_root: None) -> None:
    a, b = netns(), netns()
    d = RunningDaemon(tmp_path, {"a": tap(a, True, True),
                                 "b": tap(b, False, False, mtu=1280)})
    d.start()
    try:
        d.wait_ports_up("a", "b")
        addr(a, f"vt{a[-8:]}", "10.81.2.1/24")
        addr(b, f"vt{b[-8:]}", "10.81.2.2/24")
        run(a, "ip", "link", "set", f"vt{a[-8:]}", "mtu", "1280")
        sniff = tcpdump(b, f"vt{b[-8:]}", 300)
        iperf(a, b, "10.81.2.2", seconds=1, port=5312)
        out = sniff.communicate(timeout=30)[0]
        lengths = [int(ln.split("length ")[1].split(":")[0].split(",")[0])
                   for ln in out.splitlines() if "ethertype IPv4" in ln and "length " in ln]
        assert lengths and max(lengths) <= 1280 + 14
        assert not [ln for ln in out.splitlines() if "incorrect" in ln]
    finally:
        assert d.stop() == 0
