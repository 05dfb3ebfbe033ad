"""The daemon as a process: --check, readiness, clean shutdown, no leaks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import link_exists, unique_name
from tests.e2e.daemon_fixture import ROOT, RunningDaemon


def vswitchd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vswitchd.daemon", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_check_accepts_the_default_config() -> None:
    r = vswitchd("--check", "--config", str(ROOT / "configs" / "vswitchd.toml"))
    assert r.returncode == 0, r.stderr
    assert "OK (4 ports)" in r.stdout


def test_check_rejects_bad_config_with_one_line_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[ports.vm1]\ntype = "tap"\nvlan = 5000\n')
    r = vswitchd("--check", "--config", str(bad))
    assert r.returncode == 1
    assert r.stderr == "vswitchd: ports.vm1.vlan: 5000 is not in 1-4094\n"


def test_missing_config_file_is_one_clear_line(tmp_path: Path) -> None:
    r = vswitchd("--check", "--config", str(tmp_path / "nope.toml"))
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "cannot read" in r.stderr


def test_sigterm_removes_taps_it_created_and_keeps_persistent_ones(
        tmp_path: Path, require_root: None) -> None:
    gone, kept = unique_name(), unique_name()
    d = RunningDaemon(tmp_path, {
        "gone": {"type": "tap", "ifname": gone},
        "kept": {"type": "tap", "ifname": kept, "persist": True},
    })
    try:
        d.start()
        assert link_exists(gone) and link_exists(kept)
        assert d.stop() == 0
        assert not link_exists(gone)
        assert link_exists(kept)
        assert not os.path.exists(d.socket)
    finally:
        d.stop()
        for name in (gone, kept):
            subprocess.run(["ip", "link", "del", name], capture_output=True)


def test_notify_socket_hears_ready_then_stopping(tmp_path: Path, require_root: None) -> None:
    name = unique_name()
    d = RunningDaemon(tmp_path, {"p": {"type": "tap", "ifname": name}})
    d.start()       # returns once READY=1 arrived on its NOTIFY_SOCKET
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify = tmp_path / "notify.sock"
    os.unlink(notify)
    listener.bind(str(notify))
    listener.settimeout(10)
    try:
        assert d.stop() == 0
        assert b"STOPPING=1" in listener.recv(4096)
    finally:
        listener.close()
        subprocess.run(["ip", "link", "del", name], capture_output=True)


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def test_port_churn_leaks_no_fds_or_threads(tmp_path: Path, require_root: None) -> None:
    base, extra = unique_name(), unique_name()
    d = RunningDaemon(tmp_path, {"a": {"type": "tap", "ifname": base}})
    try:
        d.start()
        assert d.proc is not None
        pid = d.proc.pid
        d.ctl("show")
        fds, threads = _fds(pid), _threads(pid)
        for i in range(20):
            d.ctl("port", "add", "x", "type=tap", f"ifname={extra}", f"queues={1 + i % 3}",
                  "mode=trunk", "vlans=1-10", "native_vlan=1")
            d.ctl("port", "set", "x", "mode=access", "vlan=7")
            d.ctl("port", "del", "x")
        assert _fds(pid) == fds
        assert _threads(pid) == threads
        assert not link_exists(extra)
    finally:
        assert d.stop() == 0
        for name in (base, extra):
            subprocess.run(["ip", "link", "del", name], capture_output=True)


@pytest.mark.parametrize("queues", [2, 4])
def test_multiqueue_tap_queues_are_spread_over_workers(
        tmp_path: Path, require_root: None, queues: int) -> None:
    name = unique_name()
    d = RunningDaemon(tmp_path, {"mq": {"type": "tap", "ifname": name, "queues": queues}},
                      switch={"workers": 2})
    try:
        d.start()
        workers = d.ctl("workers")
        owned = [len(w["rx_queues"]) for w in workers]
        assert sum(owned) == queues and min(owned) == queues // 2
        assert d.port("mq")["queues"] == queues
    finally:
        assert d.stop() == 0
        subprocess.run(["ip", "link", "del", name], capture_output=True)
