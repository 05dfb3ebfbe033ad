"""MAC flooding from a hostile port: the table fills but known hosts keep
forwarding, new destinations are flooded, max_macs contains the attacker,
and the daemon's memory stays flat."""

from __future__ import annotations

import random
import time
from pathlib import Path

from tests.e2e.daemon_fixture import RunningDaemon
from tests.e2e.nsnet import Capture, addr, ping, ping_loss, send_frames
from tests.e2e.test_soak import proc_figures
from tests.frames import BROADCAST, eth


def tap(ns: str, **kw) -> dict:
    return {"type": "tap", "ifname": f"vt{ns[-8:]}", "netns": ns, **kw}


def flood(ns: str, count: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    for _ in range(count // 256):
        send_frames(ns, f"vt{ns[-8:]}", [
            eth(BROADCAST, bytes([2, rng.randrange(256), rng.randrange(256), rng.randrange(256),
                                  rng.randrange(256), rng.randrange(256)]),
                ethertype=0x88B5, payload=b"flood".ljust(46)) for _ in range(256)])


def test_mac_flood_fills_table_but_known_hosts_keep_forwarding(
        tmp_path: Path, netns, require_root: None) -> None:
    a, b, c, w = (netns() for _ in range(4))
    d = RunningDaemon(tmp_path, {"a": tap(a), "b": tap(b), "c": tap(c), "w": tap(w)},
                      switch={"mac_table_size": 256})
    d.start()
    try:
        d.wait_ports_up("a", "b", "c", "w")
        addr(a, f"vt{a[-8:]}", "10.84.0.1/24")
        addr(b, f"vt{b[-8:]}", "10.84.0.2/24")
        assert ping_loss(ping(a, "10.84.0.2", count=2, interval=0.1).stdout) == 0
        assert d.proc is not None
        before = proc_figures(d.proc.pid)
        flood(c, 20_000)
        time.sleep(0.5)
        show = d.ctl("show")["switch"]
        assert show["mac_entries"] <= 256
        assert d.ctl("stats")["mac_table"]["full"] > 0
        # Known hosts were learned before the flood: still unicast, no loss.
        assert ping_loss(ping(a, "10.84.0.2", count=20, interval=0.01).stdout) == 0
        # A destination never seen is flooded (the watcher port sees it).
        with Capture(w, f"vt{w[-8:]}") as cap:
            cap.drain()
            send_frames(a, f"vt{a[-8:]}", [eth(bytes.fromhex("02aabbccddee"),
                                               bytes.fromhex("020000000a01"), ethertype=0x88B5,
                                               payload=b"new-dest".ljust(46))])
            assert [f for f in cap.frames() if b"new-dest" in f]
        after = proc_figures(d.proc.pid)
        assert after["rss_kb"] - before["rss_kb"] < 8 * 1024
    finally:
        assert d.stop() == 0


def test_max_macs_contains_a_flooding_port(tmp_path: Path, netns, require_root: None) -> None:
    a, b, c = netns(), netns(), netns()
    d = RunningDaemon(tmp_path, {"a": tap(a), "b": tap(b), "c": tap(c, max_macs=20)})
    d.start()
    try:
        d.wait_ports_up("a", "b", "c")
        flood(c, 5_000, seed=2)
        time.sleep(0.3)
        on_c = [e for e in d.ctl("fdb", "show", "--port", "c")]
        assert 0 < len(on_c) <= 20
        drops = d.ctl("stats", "--port", "c")["ports"][0]["drops"]
        assert drops["max_macs"] > 4_000
        addr(a, f"vt{a[-8:]}", "10.84.1.1/24")
        addr(b, f"vt{b[-8:]}", "10.84.1.2/24")
        assert ping_loss(ping(a, "10.84.1.2", count=3, interval=0.1).stdout) == 0
    finally:
        assert d.stop() == 0
