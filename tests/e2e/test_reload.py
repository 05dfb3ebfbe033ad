"""Live reconfiguration and the service manager protocol under traffic."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

from tests.e2e.daemon_fixture import RunningDaemon, render_config
from tests.e2e.nsnet import addr, ping, ping_loss
from tests.e2e.service_manager import FakeServiceManager


def tap(ns: str, **kw) -> dict:
    return {"type": "tap", "ifname": f"vt{ns[-8:]}", "netns": ns, **kw}


def test_sighup_reload_under_traffic_loses_nothing_on_unchanged_ports(
        tmp_path: Path, netns, require_root: None) -> None:
    a, b, c, d, e = (netns() for _ in range(5))
    before = {"a": tap(a), "b": tap(b), "d": tap(d, vlan=5), "e": tap(e)}
    after = {"a": tap(a), "b": tap(b), "c": tap(c, vlan=9),
             "d": tap(d, mode="trunk", vlans="5-6", native_vlan=5)}
    daemon = RunningDaemon(tmp_path, before)
    daemon.start()
    try:
        daemon.wait_ports_up("a", "b")
        addr(a, f"vt{a[-8:]}", "10.80.0.1/24")
        addr(b, f"vt{b[-8:]}", "10.80.0.2/24")
        assert ping_loss(ping(a, "10.80.0.2", count=1).stdout) == 0
        result: dict[str, subprocess.CompletedProcess[str]] = {}
        pinger = threading.Thread(target=lambda: result.setdefault(
            "r", ping(a, "10.80.0.2", count=300, interval=0.01, deadline=30)))
        pinger.start()
        for i in range(6):
            daemon.write_config(after if i % 2 == 0 else before)
            daemon.reload()                                  # SIGHUP
            time.sleep(0.3)
        pinger.join()
        r = result["r"]
        assert ping_loss(r.stdout) == 0, r.stdout
        ports = {p["name"]: p for p in daemon.ctl("show")["ports"]}
        assert set(ports) == set(before)
        assert daemon.log().count("config generation") >= 6
    finally:
        assert daemon.stop() == 0


def test_watchdog_pings_while_running_and_reload_reports_reloading(
        tmp_path: Path, netns, require_root: None) -> None:
    a = netns()
    config = tmp_path / "vswitchd.toml"
    config.write_text(render_config({"a": tap(a)}, str(tmp_path / "ctl.sock")))
    sm = FakeServiceManager(tmp_path)
    proc = sm.launch(config, tmp_path / "log", env={"WATCHDOG_USEC": "200000"})
    try:
        assert sm.wait_for("READY=1")
        seen = len(sm.messages)
        time.sleep(0.5)
        assert sum("WATCHDOG=1" in m for m in sm.messages[seen:]) >= 3
        seen = len(sm.messages)
        proc.send_signal(signal.SIGHUP)
        assert sm.wait_for("RELOADING=1", after=seen)
        assert sm.wait_for("READY=1", after=seen + 1)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert any("STOPPING=1" in m for m in sm.messages)
        sm.close()


def test_reload_without_changes_keeps_the_config_generation(
        tmp_path: Path, require_root: None) -> None:
    daemon = RunningDaemon(tmp_path, {})
    daemon.start()
    try:
        generation = daemon.ctl("show")["switch"]["config_generation"]
        for _ in range(3):
            assert daemon.ctl_raw("reload").returncode == 0
        assert daemon.ctl("show")["switch"]["config_generation"] == generation
        assert "config unchanged" in daemon.log()
    finally:
        assert daemon.stop() == 0


def test_reload_names_the_settings_that_wait_for_a_restart(
        tmp_path: Path, require_root: None) -> None:
    daemon = RunningDaemon(tmp_path, {}, switch={"mac_table_size": 4096})
    daemon.start()
    try:
        text = daemon.config_path.read_text()
        daemon.config_path.write_text(
            text.replace(daemon.socket, str(tmp_path / "elsewhere.sock"))
                .replace("mac_table_size = 4096", "mac_table_size = 2048"))
        r = daemon.ctl_raw("reload")
        assert r.returncode == 0, r.stderr
        assert ("switch.mac_table_size, management take effect at the next restart"
                in r.stdout)
        # Still served where it was, and the next reload says so again.
        r = daemon.ctl_raw("reload")
        assert "management take effect at the next restart" in r.stdout
        assert daemon.ctl("show")["switch"]["mac_table_size"] == 4096
        assert "management: change takes effect at the next restart" in daemon.log()
    finally:
        assert daemon.stop() == 0
