"""Port mirroring end to end: a tap port "ids" receives copies of vm1's
frames, as tcpdump in ids's namespace sees them; ids itself sends nowhere;
mirrors come and go by reload.  Issue 11's acceptance."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.e2e.daemon_fixture import RunningDaemon
from tests.e2e.nsnet import Capture, addr, mac_of, ping, ping_loss, run, send_frames
from tests.frames import BROADCAST, eth, parse_vlan
from tests.listeners import free_port

Factory = Callable[..., RunningDaemon]


def tap(ns: str, **kw) -> dict:
    return {"type": "tap", "ifname": f"vt{ns[-8:]}", "netns": ns, **kw}


def ifn(ns: str) -> str:
    return f"vt{ns[-8:]}"


def set_mirrors(d: RunningDaemon, text: str) -> None:
    d.write_config()
    with open(d.config_path, "a") as f:
        f.write(text)
    d.ctl("reload")


class Tcpdump:
    """tcpdump writing a pcap file inside namespace ``ns``, read back with -r."""

    def __init__(self, ns: str, ifname: str, path: Path) -> None:
        self.path = path
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, "tcpdump", "-i", ifname,
                                      # Immediate mode: a TPACKET_V3 block still
                                      # open at SIGTERM would be lost.
                                      "--immediate-mode", "-n", "-U", "-w", str(path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()       # "tcpdump: listening on ..."
        assert "listening" in line, line

    def stop(self) -> list[str]:
        time.sleep(0.3)
        self.proc.terminate()
        self.proc.wait(10)
        r = subprocess.run(["tcpdump", "-n", "-e", "-r", str(self.path)], capture_output=True,
                           text=True, check=True)
        return r.stdout.splitlines()


MIRROR = """
[mirrors.span1]
select_src_ports = ["vm1", "t"]
select_dst_ports = ["vm1"]
output_port = "ids"
snaplen = 0
"""


def test_mirror_copies_vm1_both_ways_to_ids_and_ids_sends_nowhere(
        daemon: Factory, netns, tmp_path) -> None:
    a, b, c, t = netns(), netns(), netns(), netns()
    d = daemon({"vm1": tap(a, vlan=10), "vm2": tap(b, vlan=10), "ids": tap(c, vlan=10),
                "t": tap(t, mode="trunk", vlans="1-100")}, metrics=f"127.0.0.1:{free_port()}")
    d.wait_ports_up("vm1", "vm2", "ids", "t")
    addr(a, ifn(a), "10.78.0.1/24")
    addr(b, ifn(b), "10.78.0.2/24")
    run(c, "ip", "link", "set", ifn(c), "up")
    run(t, "ip", "link", "set", ifn(t), "up")
    set_mirrors(d, MIRROR)
    shown = d.ctl("mirror", "show")
    assert [(m["name"], m["output_port"], m["active"]) for m in shown] == [
        ("span1", "ids", True)]

    dump = Tcpdump(c, ifn(c), tmp_path / "ids.pcap")
    r = ping(a, "10.78.0.2", count=3, interval=0.1)
    assert ping_loss(r.stdout) == 0, r.stdout
    lines = dump.stop()
    requests = [x for x in lines if "10.78.0.1 > 10.78.0.2: ICMP echo request" in x]
    replies = [x for x in lines if "10.78.0.2 > 10.78.0.1: ICMP echo reply" in x]
    assert len(requests) == 3 and len(replies) == 3, lines
    # vm1 is an access port: its frames are untagged on its wire, so are the copies.
    assert not [x for x in requests + replies if "vlan" in x], lines

    # A tagged broadcast from the trunk is copied tagged as it arrived on t,
    # then untagged as it leaves through vm1 (selected as a destination).
    with Capture(c, ifn(c)) as cap_c:
        cap_c.drain()
        src = bytes.fromhex("02000000aa01")
        send_frames(t, ifn(t), [eth(BROADCAST, src, vid=10, ethertype=0x88B5,
                                    payload=b"tagged-probe".ljust(46, b"."))])
        got = [f for f in cap_c.frames() if b"tagged-probe" in f]
        assert [parse_vlan(f) for f in got] == [10, None]

    # ids sends: nothing arrives anywhere, and it is counted.
    ids_mac = bytes.fromhex(mac_of(c, ifn(c)).replace(":", ""))
    with Capture(a, ifn(a)) as cap_a, Capture(b, ifn(b)) as cap_b:
        cap_a.drain()
        cap_b.drain()
        send_frames(c, ifn(c), [eth(BROADCAST, ids_mac, ethertype=0x88B5,
                                    payload=b"from-ids".ljust(46, b"."))] * 5)
        assert not [f for f in cap_a.frames(0.3) + cap_b.frames(0.1) if b"from-ids" in f]
    assert d.port("ids")["drops_by_reason"].get("mirror_output", 0) >= 5
    shown = d.ctl("mirror", "show")[0]
    assert shown["packets"] >= 7 and shown["dropped"] == 0
    scraped = d.scrape().decode()
    assert 'vswitchd_mirror_dropped_packets_total{mirror="span1"} 0.0' in scraped
    # The namespaces' own chatter may add copies between the two reads.
    [line] = [x for x in scraped.splitlines()
              if x.startswith('vswitchd_mirror_packets_total{mirror="span1"}')]
    assert float(line.split()[-1]) >= shown["packets"]

    # Removed by reload: ids sees nothing more.
    set_mirrors(d, "")
    assert d.ctl("mirror", "show") == []
    dump = Tcpdump(c, ifn(c), tmp_path / "ids2.pcap")
    r = ping(a, "10.78.0.2", count=3, interval=0.1)
    assert ping_loss(r.stdout) == 0, r.stdout
    assert not [x for x in dump.stop() if "10.78.0" in x]


def test_mirror_whose_output_port_is_selected_is_refused_by_reload(daemon: Factory,
                                                                   netns) -> None:
    a, c = netns(), netns()
    d = daemon({"vm1": tap(a, vlan=10), "ids": tap(c, vlan=10)})
    d.write_config()
    with open(d.config_path, "a") as f:
        f.write('[mirrors.bad]\nselect_src_ports = ["vm1", "ids"]\noutput_port = "ids"\n')
    r = d.ctl_raw("reload")
    assert r.returncode == 1
    assert 'mirrors.bad.select_src_ports: "ids" is the output port of mirror bad' in r.stderr
    assert d.ctl("mirror", "show") == []
