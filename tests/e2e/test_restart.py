"""Restarts that VMs don't notice: persistent TAPs keep their carrier across
stop + start (their fds wait in the service manager's fd store), and the
forwarding gap is short enough that a 10 ms ping loses nothing."""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path

from tests.e2e.daemon_fixture import render_config
from tests.e2e.nsnet import addr, ping, ping_loss, run
from tests.e2e.service_manager import FakeServiceManager


def carrier_down_count(ns: str, ifname: str) -> int:
    return int(run(ns, "cat", f"/sys/class/net/{ifname}/carrier_down_count").stdout)


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(30)


def test_restart_keeps_persistent_taps_up_and_loses_no_ping(
        tmp_path: Path, netns, require_root: None) -> None:
    a, b = netns(), netns()
    ia, ib = f"vt{a[-8:]}", f"vt{b[-8:]}"
    config = tmp_path / "vswitchd.toml"
    config.write_text(render_config({
        "a": {"type": "tap", "ifname": ia, "netns": a, "persist": True},
        "b": {"type": "tap", "ifname": ib, "netns": b, "persist": True},
    }, str(tmp_path / "ctl.sock")))
    log = tmp_path / "vswitchd.log"
    sm = FakeServiceManager(tmp_path)
    proc = None
    try:
        proc = sm.launch(config, log)
        assert sm.wait_for("READY=1"), log.read_text()
        addr(a, ia, "10.79.0.1/24")
        addr(b, ib, "10.79.0.2/24")
        assert ping_loss(ping(a, "10.79.0.2", count=2, interval=0.1).stdout) == 0
        downs = (carrier_down_count(a, ia), carrier_down_count(b, ib))
        assert sorted(sm.store) == sorted([f"tap.{ia}", f"tap.{ib}"])

        result: dict[str, subprocess.CompletedProcess[str]] = {}
        pinger = threading.Thread(target=lambda: result.setdefault(
            "r", ping(a, "10.79.0.2", count=600, interval=0.01, deadline=40)))
        pinger.start()
        threading.Event().wait(0.5)
        seen = len(sm.messages)
        assert stop(proc) == 0
        proc = sm.launch(config, log)                     # the "upgrade"
        assert sm.wait_for("READY=1", after=seen), log.read_text()
        pinger.join()

        r = result["r"]
        # The longest round trip is the forwarding gap: frames waited in
        # the TAPs' queues while no daemon read them.
        print("ping across restart:", " / ".join(r.stdout.strip().splitlines()[-2:]))
        assert ping_loss(r.stdout) == 0, r.stdout
        assert (carrier_down_count(a, ia), carrier_down_count(b, ib)) == downs
        assert "adopt" in log.read_text() or "inherited" in log.read_text()
    finally:
        if proc is not None and proc.poll() is None:
            stop(proc)
        sm.close()
        for ns, ifname in ((a, ia), (b, ib)):
            run(ns, "ip", "link", "del", ifname, check=False)
