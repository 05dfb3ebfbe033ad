"""Soak: traffic on every port while ports are added, removed and
reconfigured, the config reloaded and the MAC table flushed, in a loop.
Afterwards the daemon is alive and has leaked no fds, threads or memory.

Bounded: VS_SOAK_S seconds (default 45; `make soak` runs longer)."""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from pathlib import Path

from tests.e2e.daemon_fixture import RunningDaemon
from tests.e2e.nsnet import addr, ping, ping_loss, send_frames
from tests.frames import BROADCAST, eth

SOAK_S = float(os.environ.get("VS_SOAK_S", "45"))


def proc_figures(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS:")))
    return {"fds": len(os.listdir(f"/proc/{pid}/fd")),
            "threads": len(os.listdir(f"/proc/{pid}/task")), "rss_kb": rss_kb}


def tap(ns: str, **kw) -> dict:
    return {"type": "tap", "ifname": f"vt{ns[-8:]}", "netns": ns, **kw}


def test_soak_churn_under_traffic_leaks_nothing(tmp_path: Path, netns, ifname,
                                                require_root: None) -> None:
    a, b, c, x = (netns() for _ in range(4))
    ports = {"a": tap(a), "b": tap(b), "c": tap(c, mode="trunk", vlans="1-10",
                                                 native_vlan=1)}
    d = RunningDaemon(tmp_path, ports, switch={"workers": 2, "mac_table_size": 1024})
    d.start()
    stop = threading.Event()
    try:
        d.wait_ports_up("a", "b", "c")
        addr(a, f"vt{a[-8:]}", "10.83.0.1/24")
        addr(b, f"vt{b[-8:]}", "10.83.0.2/24")
        addr(c, f"vt{c[-8:]}", "10.83.0.3/24")
        assert ping_loss(ping(a, "10.83.0.2", count=1).stdout) == 0

        def flood_macs() -> None:       # a stream of random sources from c
            rng = random.Random(7)
            while not stop.is_set():
                frames = [eth(BROADCAST, bytes([2, 0, 0, rng.randrange(256),
                                                rng.randrange(256), rng.randrange(256)]),
                              vid=rng.choice([None, 2, 3]), ethertype=0x88B5,
                              payload=b"soak".ljust(46)) for _ in range(64)]
                send_frames(c, f"vt{c[-8:]}", frames)
                time.sleep(0.01)

        pingers = [subprocess.Popen(["ip", "netns", "exec", a, "ping", "-q", "-i", "0.01", dst],
                                    stdout=subprocess.DEVNULL) for dst in ("10.83.0.2",
                                                                           "10.83.0.3")]
        flooder = threading.Thread(target=flood_macs)
        flooder.start()
        time.sleep(2)
        assert d.proc is not None
        before = proc_figures(d.proc.pid)
        deadline = time.monotonic() + SOAK_S
        rounds = 0
        extra = ifname()
        while time.monotonic() < deadline:
            d.ctl("port", "add", "x", "type=tap", f"ifname={extra}", f"netns={x}",
                  f"queues={1 + rounds % 2}")
            d.ctl("port", "set", "x", "mode=trunk", "vlans=1-20", "native_vlan=1")
            d.ctl("port", "set", "a", f"offload.tso={'true' if rounds % 2 else 'false'}")
            d.ctl("fdb", "flush")
            d.ctl("port", "del", "x")
            if rounds % 5 == 0:
                d.reload()
            d.ctl("show")
            rounds += 1
        stop.set()
        flooder.join()
        for p in pingers:
            p.terminate()
            p.wait()
        time.sleep(1)
        after = proc_figures(d.proc.pid)
        print(f"soak {SOAK_S:.0f}s, {rounds} rounds: before {before}, after {after}")
        assert d.proc.poll() is None
        assert after["fds"] == before["fds"]
        assert after["threads"] == before["threads"]
        assert after["rss_kb"] - before["rss_kb"] < 16 * 1024
        assert ping_loss(ping(a, "10.83.0.2", count=3, interval=0.1).stdout) == 0
    finally:
        stop.set()
        assert d.stop() == 0
